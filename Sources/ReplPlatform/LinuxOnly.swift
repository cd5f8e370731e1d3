// Everything that exists only on Linux, in one place: namespaces (`unshare`, `mount`,
// `sethostname`), `/proc` and Glibc's spellings. The portability check in `.ci/run`
// (`scaffold/scripts/check-portability.sh`) refuses these anywhere else.
#if os(Linux)
    import Foundation
    import Glibc

    enum LinuxOnly {
        static let unshare = "/usr/bin/unshare"

        static func executablePath() -> String? {
            try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        }

        /// Why machine commands cannot have a private namespace here; nil when they can
        /// (root, with util-linux's `unshare`, and not turned off).
        static var namespacesRefusal: String? {
            if ProcessInfo.processInfo.environment["ORBSIM_NAMESPACES"] == "0" {
                return Platform.namespacesTurnedOff
            }
            for tool in [unshare, MachineNamespace.enterProgram, MachineNamespace.detachProgram, "/usr/bin/setpriv"]
            where !FileManager.default.isExecutableFile(atPath: tool) {
                return "orbctl-sim runs machine commands in a private namespace and needs \(tool) (apt-get install util-linux)"
            }
            if getuid() != 0 {
                return "orbctl-sim runs machine commands in a private namespace, which needs root; run it as root (as in a container or CI)"
            }
            return nil
        }

        static func processes(withEnvironmentEntry entry: String) -> [Int32] {
            let mark = Array(entry.utf8)
            let me = getpid()
            var found: [Int32] = []
            guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
            for entry in entries {
                guard let pid = Int32(entry), pid != me,
                    let environ = Platform.readWholeFile("/proc/\(entry)/environ")
                else { continue }
                if environ.split(separator: 0).contains(where: { Array($0) == mark }) { found.append(pid) }
            }
            return found
        }

        /// The boot id, this process's PID namespace, and the process's start time (field 22 of
        /// its stat, in clock ticks since boot).
        static func identity(of pid: Int32) -> Platform.ProcessIdentity? {
            guard let bootData = Platform.readWholeFile("/proc/sys/kernel/random/boot_id"),
                let namespace = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/pid"),
                let fields = statFields(pid), fields.count > 19
            else { return nil }
            let boot = String(decoding: bootData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return Platform.ProcessIdentity(boot: boot, namespace: namespace, start: String(fields[19]))
        }

        static func isZombie(_ pid: Int32) -> Bool { statFields(pid)?.first?.hasPrefix("Z") == true }

        /// A process's stat fields after "pid (comm)" (a name may hold spaces and parentheses):
        /// element 0 is field 3 of proc(5), the state; starttime (22) is element 19.
        static func statFields(_ pid: Int32) -> [Substring]? {
            guard let raw = Platform.readWholeFile("/proc/\(pid)/stat") else { return nil }
            let stat = String(decoding: raw, as: UTF8.self)
            guard let close = stat.lastIndex(of: ")") else { return nil }
            return stat[stat.index(after: close)...].split(separator: " ")
        }

        static func swiftRuntimeDirectory() -> String? {
            guard let data = Platform.readWholeFile("/proc/self/maps") else { return nil }
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasSuffix("/libswiftCore.so") {
                if let path = line.split(separator: " ", omittingEmptySubsequences: true).last {
                    return (String(path) as NSString).deletingLastPathComponent
                }
            }
            return nil
        }

        static func childrenPeakResidentKilobytes() -> Int {
            var usage = rusage()
            getrusage(RUSAGE_CHILDREN.rawValue, &usage)
            return Int(usage.ru_maxrss)  // kilobytes on Linux
        }

        static func peakResidentMegabytes() -> Int {
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            return Int(usage.ru_maxrss) / 1024  // kilobytes on Linux
        }
    }

    /// An emulated machine's world, made by its init process: fresh mount, UTS and PID
    /// namespaces (`unshare --mount --uts --pid --fork`), so the machine has its own process
    /// table and `/proc`, its own directories bound over the host's, its own hostname, the
    /// guarded programs covered by shims, `/mnt/mac` (the host's `/`) unless isolated, and
    /// nothing of the host's `/run`. Commands enter it with `nsenter`.
    public enum MachineNamespace {
        /// The program that starts a machine's init in fresh namespaces, and its arguments
        /// before the init's own command line. The init is PID 1 of the new PID
        /// namespace; when it ends, the kernel ends every process of the machine.
        public static let bootProgram = LinuxOnly.unshare
        public static func bootArguments(isolated: Bool) -> [String] {
            ["--mount", "--uts", "--ipc", "--pid", "--fork", "--kill-child", "--propagation", "private"] + (isolated ? ["--net"] : [])
        }
        /// The program that detaches a boot from its caller's session, and its arguments before
        /// the program it detaches.
        public static let detachProgram = "/usr/bin/setsid"
        public static let detachArguments = ["--fork"]
        /// The program that runs a command inside a machine's namespaces, and its arguments
        /// before the command.
        public static let enterProgram = "/usr/bin/nsenter"
        public static func enterArguments(initPID: Int32, isolated: Bool) -> [String] {
            ["--target", String(initPID), "--mount", "--uts", "--ipc", "--pid"] + (isolated ? ["--net"] : [])
        }

        /// Top-level directories that are the distro's, not the host user's: an isolated
        /// machine keeps these and sees nothing else of the host.
        static let systemDirectories: Set<String> = [
            "bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32",
            "media", "mnt", "opt", "proc", "root", "run", "sbin", "srv", "sys",
            "tmp", "usr", "var",
        ]

        /// Makes the machine's world, in its init (PID 1 of a fresh PID namespace, in fresh
        /// mount and UTS namespaces, with the host's `/proc` still mounted). Returns the init's
        /// process id on the host.
        public static func setUp(_ layout: Layout) throws -> Int32 {
            let fm = FileManager.default
            // The host's /proc still answers with host ids: this process's id out there.
            guard let me = try? fm.destinationOfSymbolicLink(atPath: "/proc/self"), let hostPID = Int32(me) else {
                throw SetUpError(description: "cannot read the host's /proc/self")
            }
            // The host's mounts, as this namespace got them: all but the machine's own end read-only.
            let hostMounts = mounts()
            // What the emulator needs from the host, bound before anything is covered: its binary,
            // runtime and shims (read-only) and the machine's own directory. Not its home: the state
            // and its lock stay out of every machine's reach (the init writes the state through a
            // descriptor it was given on the host).
            try mountTmpfs("/run", mode: "0755")
            for path in layout.readOnlyHostPaths + [layout.ownHostPath] {
                let target = layout.hostView + path
                try fm.createDirectory(atPath: target, withIntermediateDirectories: true)
                try bind(path, target)
                if path != layout.ownHostPath { try remountReadOnly(target, options: []) }
            }
            // The host's dynamic loader cache, kept aside before the machine's /etc covers it.
            let loaderCache = layout.hostView + "/ld.so.cache"
            if fm.fileExists(atPath: "/etc/ld.so.cache") {
                fm.createFile(atPath: loaderCache, contents: nil)
                try bind("/etc/ld.so.cache", loaderCache)
                try remountReadOnly(loaderCache, options: [])
            }
            // The Mac's file system (the host's `/`, writable as OrbStack's is), without the host's
            // kernel views or sockets (`/run`, a mount or not).
            try mountTmpfs("/mnt", mode: "0755")
            if !layout.isolated {
                try fm.createDirectory(atPath: "/mnt/mac", withIntermediateDirectories: true)
                try bind("/", "/mnt/mac", recursive: true)
                for sub in ["proc", "sys", "dev", "run", "mnt"] {
                    _ = umount2("/mnt/mac/" + sub, Int32(MNT_DETACH))
                    if fm.fileExists(atPath: "/mnt/mac/" + sub) { try mountTmpfs("/mnt/mac/" + sub, mode: "0555") }
                }
                // Nor the emulator's own home: other machines' disks and the emulator's state.
                for path in layout.concealed where fm.fileExists(atPath: "/mnt/mac" + path) {
                    try mountTmpfs("/mnt/mac" + path, mode: "0555")
                }
            }
            for dir in layout.directories {
                let target = "/" + dir
                if !fm.fileExists(atPath: target) { try fm.createDirectory(atPath: target, withIntermediateDirectories: true) }
                let own = layout.hostView + layout.machineRoot + "/" + dir
                if layout.overlaid.contains(dir) {
                    // The host's directory below (still the host's here: nothing covers it yet), the
                    // machine's changes above.
                    try overlay(lower: target, upper: own, work: layout.hostView + layout.machineRoot + "/." + dir + "-work", on: target)
                } else {
                    try bind(own, target)
                }
            }
            if layout.isolated {
                let entries = (try? fm.contentsOfDirectory(atPath: "/")) ?? []
                for entry in entries where !systemDirectories.contains(entry) {
                    var isDirectory: ObjCBool = false
                    let path = "/" + entry
                    guard (try? fm.destinationOfSymbolicLink(atPath: path)) == nil,
                        fm.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue
                    else { continue }
                    try mountTmpfs(path, mode: "0755")
                }
            }
            try ownDevices()
            try mountTmpfs("/dev/shm", mode: "1777")
            // The rest of the host's tree (its `/`, `/usr`, `/sys`, …) is the machine's distro:
            // read-only, so that nothing a machine's command writes lands on the host.
            let own = ["/proc", "/dev", "/run", "/mnt"] + layout.directories.map { "/" + $0 }
            for mount in hostMounts.sorted(by: { $0.path.count < $1.path.count })
            where !own.contains(where: { mount.path == $0 || mount.path.hasPrefix($0 + "/") }) {
                do {
                    try remountReadOnly(mount.path, options: mount.options)
                } catch  where mount.path != "/" {
                    continue  // a mount the host itself hides (over-mounted): nothing reaches it
                }
            }
            // The machine's own process table, with the kernel's knobs out of reach.
            _ = umount2("/proc", Int32(MNT_DETACH))
            guard mount("proc", "/proc", "proc", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), nil) == 0 else {
                throw SetUpError(description: "mount /proc: \(String(cString: strerror(errno)))")
            }
            for knob in ["/proc/sys", "/proc/sysrq-trigger"] where fm.fileExists(atPath: knob) {
                try bind(knob, knob)
                try remountReadOnly(knob, options: [])
            }
            // Linux host names are at most 64 bytes. **uncertain**: what OrbStack does with longer names.
            let hostname = String(decoding: Array(layout.hostname.utf8.prefix(64)), as: UTF8.self)
            guard sethostname(hostname, hostname.utf8.count) == 0 else {
                throw SetUpError(description: "sethostname: \(String(cString: strerror(errno)))")
            }
            // The dynamic loader's configuration is the distro's, read-only: the first programs of
            // every session (a shell, setpriv) run as root with every capability until setpriv drops
            // them, and a preload or cache the machine's root wrote would run code in them (found by
            // attacking: a preload reached CAP_SYS_ADMIN on the host's kernel). Nothing in a machine
            // can unmount these (no CAP_SYS_ADMIN), and a mount point cannot be removed or renamed.
            if !fm.fileExists(atPath: "/etc/ld.so.preload") { fm.createFile(atPath: "/etc/ld.so.preload", contents: nil) }
            try bind("/dev/null", "/etc/ld.so.preload")
            try remountReadOnly("/etc/ld.so.preload", options: [])
            if fm.fileExists(atPath: loaderCache) {
                if !fm.fileExists(atPath: "/etc/ld.so.cache") { fm.createFile(atPath: "/etc/ld.so.cache", contents: nil) }
                try bind(loaderCache, "/etc/ld.so.cache")
                try remountReadOnly("/etc/ld.so.cache", options: [])
            }
            // The init keeps no directory of the host's as its working directory: `/proc/1/cwd`
            // would show an isolated machine the directory its first command was run from.
            guard chdir("/") == 0 else { throw SetUpError(description: "chdir /: \(String(cString: strerror(errno)))") }
            var covered = Set<String>()
            for tool in layout.guarded {
                for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/local/bin", "/lib/systemd"] {
                    let path = dir + "/" + tool
                    guard fm.fileExists(atPath: path) else { continue }
                    let real = (path as NSString).resolvingSymlinksInPath
                    guard !covered.contains(real) else { continue }
                    try bind(layout.hostView + layout.shims + "/" + tool, real)
                    covered.insert(real)
                }
            }
            return hostPID
        }

        /// In a machine's init, first of all: SIGTERM is its `poweroff` (from a shim, its root or the
        /// host), and SIGINT and SIGHUP a `reboot(2)` in it; all are held for
        /// ``awaitPoweroff(milliseconds:)``. Blocked before any thread starts, so no thread takes
        /// them; handled, because a namespace's init receives from inside only the signals it handles.
        public static func holdPoweroff() {
            for sig in poweroffSignalNumbers { signal(sig) { _ in } }
            var set = poweroffSignals
            sigprocmask(SIG_BLOCK, &set, nil)
        }

        /// Waits up to `milliseconds` for a held signal: whether one came.
        public static func awaitPoweroff(milliseconds: Int) -> Bool {
            var set = poweroffSignals
            var timeout = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
            return poweroffSignalNumbers.contains(sigtimedwait(&set, nil, &timeout))
        }

        /// SIGTERM: a shim's or the host's poweroff. SIGINT and SIGHUP: what the kernel sends a PID
        /// namespace's init when a process in it calls `reboot(2)` to power off or to restart (the
        /// emulator stops the machine for both, as for the `reboot` shim).
        private static let poweroffSignalNumbers: [Int32] = [SIGTERM, SIGINT, SIGHUP]

        private static var poweroffSignals: sigset_t {
            var set = sigset_t()  // portability: allowed, glibc's sigset_t is a struct of words (Linux only)
            sigemptyset(&set)
            for sig in poweroffSignalNumbers { sigaddset(&set, sig) }
            return set
        }

        /// A path that reaches what descriptor `fd` of this process is open on, as it was opened
        /// (another mount namespace's view included).
        public static func path(ofDescriptor fd: Int32) -> String { "/proc/self/fd/\(fd)" }

        /// The processes of the machine whose init is `initPID` (host ids), the init left out.
        public static func processes(ofInit initPID: Int32) -> [Int32] {
            guard let namespace = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(initPID)/ns/pid"),
                isMachineInit(initPID)
            else { return [] }
            return allProcesses().filter { pid in
                pid != initPID && (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/pid")) == namespace
            }
        }

        /// From inside a machine: every process of it but its init and this one.
        public static func processesInside() -> [Int32] {
            allProcesses().filter { $0 != 1 && $0 != getpid() }
        }

        /// The processes of the machine whose init is `initPID` that belong to session `session`
        /// (host ids): what a run's command left behind. One that detached (`setsid`) is of
        /// another session and is left out.
        public static func processes(inSession session: Int32, ofInit initPID: Int32) -> [Int32] {
            // The session is field 6, element 3 after the name.
            processes(ofInit: initPID).filter { pid in
                guard let fields = LinuxOnly.statFields(pid), fields.count > 3 else { return false }
                return Int32(fields[3]) == session
            }
        }

        /// The children of `pid` (its main thread's), from `/proc`.
        public static func children(of pid: Int32) -> [Int32] {
            guard let raw = Platform.readWholeFile("/proc/\(pid)/task/\(pid)/children") else { return [] }
            return String(decoding: raw, as: UTF8.self).split(separator: " ").compactMap { Int32($0) }
        }

        /// Whether `pid` is stopped (state `T`).
        public static func isStopped(_ pid: Int32) -> Bool { LinuxOnly.statFields(pid)?.first == "T" }

        /// Whether `pid` is PID 1 of a PID namespace other than this process's: a machine's init,
        /// never a process of the host (a forged record must not turn a stop into a kill of the host).
        public static func isMachineInit(_ pid: Int32) -> Bool {
            guard pid > 1, let own = ownPIDNamespace(),
                let theirs = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/pid"),
                theirs != own, let raw = Platform.readWholeFile("/proc/\(pid)/status")
            else { return false }
            // NSpid lists its id in each namespace, outermost first: an init is 1 in its own.
            let line = String(decoding: raw, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix("NSpid:") }
            return line?.split(whereSeparator: { $0 == "\t" || $0 == " " }).last == "1"
        }

        /// The machine inits running now (host ids) whose command line names `key`.
        public static func inits(key: String) -> [Int32] {
            allProcesses().filter { isRunning($0, with: ["__init", key]) }
        }

        /// This process's PID namespace (`pid:[…]`).
        public static func ownPIDNamespace() -> String? {
            try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/pid")
        }

        /// Whether `pid` is alive and runs a command line holding every one of `words`.
        /// Whether this process's PID 1 is a machine's init of the emulator (`… __init KEY …`): a
        /// command line anyone may read and nothing in the machine can rewrite.
        public static func pidOneIsAMachineInit() -> Bool {
            guard let raw = Platform.readWholeFile("/proc/1/cmdline") else { return false }
            return raw.split(separator: 0).contains { String(decoding: $0, as: UTF8.self) == "__init" }
        }

        public static func isRunning(_ pid: Int32, with words: [String]) -> Bool {
            guard pid > 0, kill(pid, 0) == 0, !LinuxOnly.isZombie(pid),
                let raw = Platform.readWholeFile("/proc/\(pid)/cmdline")
            else { return false }
            let argv = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            return words.allSatisfy(argv.contains)
        }

        static func allProcesses() -> [Int32] {
            ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
        }

        /// Makes an already bound path read-only in this namespace.
        public static func makeReadOnly(_ path: String) throws { try remountReadOnly(path, options: []) }

        struct MountPoint {
            var path: String
            var options: [String]
        }

        /// This process's mounts, from `/proc/self/mountinfo` (mount point and per-mount options).
        static func mounts() -> [MountPoint] {
            guard let data = Platform.readWholeFile("/proc/self/mountinfo") else { return [] }
            return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { line in
                let fields = line.split(separator: " ")
                guard fields.count > 5 else { return nil }
                return MountPoint(path: unescape(String(fields[4])), options: fields[5].split(separator: ",").map(String.init))
            }
        }

        /// Mount points escape space, tab, newline and backslash as octal (`\040`).
        static func unescape(_ text: String) -> String {
            var bytes: [UInt8] = []
            var utf8 = Array(text.utf8)[...]
            while let byte = utf8.popFirst() {
                if byte == UInt8(ascii: "\\"), utf8.count >= 3, let code = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8) {
                    bytes.append(code)
                    utf8 = utf8.dropFirst(3)
                } else {
                    bytes.append(byte)
                }
            }
            return String(decoding: bytes, as: UTF8.self)
        }

        /// Makes one mount read-only in this namespace (the host's stays as it is), keeping its
        /// nosuid/nodev/noexec flags.
        static func remountReadOnly(_ target: String, options: [String]) throws {
            var flags = UInt(MS_REMOUNT | MS_BIND | MS_RDONLY)
            if options.contains("nosuid") { flags |= UInt(MS_NOSUID) }
            if options.contains("nodev") { flags |= UInt(MS_NODEV) }
            if options.contains("noexec") { flags |= UInt(MS_NOEXEC) }
            guard mount(nil, target, nil, flags, nil) == 0 else {
                throw SetUpError(description: "remount \(target) read-only: \(String(cString: strerror(errno)))")
            }
        }

        /// The machine's own `/dev`: a tmpfs holding the host's harmless character devices (each
        /// bound alone), the usual links and a `devpts` instance of its own. The host's `/dev` is
        /// one devtmpfs for the whole kernel: a machine that saw it could create, replace or
        /// remove the host's device nodes (found by attacking).
        static func ownDevices() throws {
            let fm = FileManager.default
            let staging = "/run/orbsim-dev"
            try fm.createDirectory(atPath: staging, withIntermediateDirectories: true)
            try mountTmpfs(staging, mode: "0755", devices: true)
            for node in ["null", "zero", "full", "random", "urandom", "tty"] where fm.fileExists(atPath: "/dev/" + node) {
                guard fm.createFile(atPath: staging + "/" + node, contents: nil) else {
                    throw SetUpError(description: "cannot make \(staging)/\(node)")
                }
                try bind("/dev/" + node, staging + "/" + node)
                // The host's own node: read-only, so that no chmod or chown in the machine reaches
                // it (reading and writing the device itself is unaffected).
                try remountReadOnly(staging + "/" + node, options: [])
            }
            for (link, target) in [
                ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                ("ptmx", "pts/ptmx"),
            ] {
                try fm.createSymbolicLink(atPath: staging + "/" + link, withDestinationPath: target)
            }
            for dir in ["pts", "shm"] { try fm.createDirectory(atPath: staging + "/" + dir, withIntermediateDirectories: false) }
            guard mount(staging, "/dev", nil, UInt(MS_MOVE), nil) == 0 else {
                throw SetUpError(description: "move the machine's /dev: \(String(cString: strerror(errno)))")
            }
            try? fm.removeItem(atPath: staging)
            guard mount("devpts", "/dev/pts", "devpts", UInt(MS_NOSUID | MS_NOEXEC), "newinstance,ptmxmode=0666,mode=0620") == 0 else {
                throw SetUpError(description: "mount devpts on /dev/pts: \(String(cString: strerror(errno)))")
            }
        }

        static func mountTmpfs(_ target: String, mode: String, devices: Bool = false) throws {
            guard mount("tmpfs", target, "tmpfs", UInt(MS_NOSUID | (devices ? 0 : MS_NODEV)), "mode=\(mode)") == 0 else {
                throw SetUpError(description: "mount tmpfs on \(target): \(String(cString: strerror(errno)))")
            }
        }

        static func overlay(lower: String, upper: String, work: String, on target: String) throws {
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            guard mount("overlay", target, "overlay", 0, "lowerdir=\(lower),upperdir=\(upper),workdir=\(work)") == 0 else {
                throw SetUpError(description: "overlay \(upper) over \(lower): \(String(cString: strerror(errno)))")
            }
        }

        /// Whether this kernel and file system take an overlay with `upper` (an empty directory)
        /// over `lower`: tried on a scratch directory beside it, in this process's own mount
        /// namespace, and undone. Overlays need root, a kernel with overlayfs, and an upper
        /// directory that is not itself on an overlay.
        public static func canOverlay(lower: String, upper: String, work: String, scratch: String) -> Bool {
            let fm = FileManager.default
            guard (try? fm.createDirectory(atPath: scratch, withIntermediateDirectories: true)) != nil else { return false }
            defer { try? fm.removeItem(atPath: scratch) }
            guard (try? overlay(lower: lower, upper: upper, work: work, on: scratch)) != nil else { return false }
            _ = umount2(scratch, Int32(MNT_DETACH))
            return true
        }

        static func bind(_ source: String, _ target: String, recursive: Bool = false) throws {
            let flags = UInt(MS_BIND) | (recursive ? UInt(MS_REC) : 0)
            guard mount(source, target, nil, flags, nil) == 0 else {
                throw SetUpError(description: "bind \(source) over \(target): \(String(cString: strerror(errno)))")
            }
        }
    }
#else
    import Foundation

    /// The emulator's machines need Linux namespaces; elsewhere the emulator refuses machine
    /// commands before it gets here, and these answer "nothing".
    public enum MachineNamespace {
        public static let bootProgram = ""
        public static func bootArguments(isolated: Bool) -> [String] { [] }
        public static let detachProgram = ""
        public static let detachArguments: [String] = []
        public static let enterProgram = ""
        public static func enterArguments(initPID: Int32, isolated: Bool) -> [String] { [] }

        public static func setUp(_ layout: Layout) throws -> Int32 {
            throw SetUpError(description: Platform.machineCommandsRefusal ?? "no machine namespaces on this system")
        }

        public static func processes(ofInit initPID: Int32) -> [Int32] { [] }
        public static func processesInside() -> [Int32] { [] }
        public static func holdPoweroff() {}
        public static func path(ofDescriptor fd: Int32) -> String { "/dev/fd/\(fd)" }
        public static func awaitPoweroff(milliseconds: Int) -> Bool {
            usleep(UInt32(milliseconds) * 1000)
            return false
        }
        public static func processes(inSession session: Int32, ofInit initPID: Int32) -> [Int32] { [] }
        public static func children(of pid: Int32) -> [Int32] { [] }
        public static func isStopped(_ pid: Int32) -> Bool { false }
        public static func isRunning(_ pid: Int32, with words: [String]) -> Bool { false }
        public static func pidOneIsAMachineInit() -> Bool { false }
        public static func inits(key: String) -> [Int32] { [] }
        public static func isMachineInit(_ pid: Int32) -> Bool { false }
        public static func makeReadOnly(_ path: String) throws {}
        public static func canOverlay(lower: String, upper: String, work: String, scratch: String) -> Bool { false }
        public static func ownPIDNamespace() -> String? { nil }
    }
#endif
