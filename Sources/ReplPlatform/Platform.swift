import Foundation

/// What differs between the hosts repl runs on. Linux's side is in `LinuxOnly.swift`
/// (namespaces, the proc file system, mounts); macOS needs none of it, because OrbStack runs
/// the machines there and the emulator runs no machine commands.
public enum Platform {
    /// Replaces this process with `program` (`execve(2)`), so that it gets the terminal, the
    /// standard streams and the signals as they are, and its exit code is the one the caller
    /// sees. Signals repl ignores or blocks (to handle them itself) are given back their
    /// defaults first: an ignored SIGINT would survive the exec and Ctrl-C would reach nothing.
    /// A `program` without a `/` is looked up on the environment's PATH. Returns only on failure,
    /// with errno's text.
    public static func replaceProcess(_ program: String, _ arguments: [String], environment: [String: String]) -> String {
        var path = program
        if !program.contains("/") {
            let dirs = (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init)
            let candidates: [String] = dirs.map { dir in dir + "/" + program }
            guard let found = candidates.first(where: { (candidate: String) in access(candidate, X_OK) == 0 }) else {
                return "\(program): not found on PATH"
            }
            path = found
        }
        for sig in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU] { signal(sig, SIG_DFL) }
        // (sigset_t is a struct on Linux and an integer on Darwin: set up by sigemptyset alone.)
        let none = UnsafeMutablePointer<sigset_t>.allocate(capacity: 1)
        sigemptyset(none)
        sigprocmask(SIG_SETMASK, none, nil)
        var argv: [UnsafeMutablePointer<CChar>?] = ([program] + arguments).map { strdup($0) }
        argv.append(nil)
        var envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") }
        envp.append(nil)
        execve(path, argv, envp)
        let reason = String(cString: strerror(errno))
        return "\(path): \(reason)"
    }

    /// The absolute path of the running executable, symlinks resolved: what launchd
    /// must be given, and what the emulator's shims call back.
    public static func executablePath() -> String {
        #if os(Linux)
            if let path = LinuxOnly.executablePath() { return path }
        #endif
        if let exe = Bundle.main.executablePath { return (exe as NSString).resolvingSymlinksInPath }
        return (CommandLine.arguments[0] as NSString).resolvingSymlinksInPath  // portability: allowed, the last resort
    }

    /// Whether this host can give an emulated machine's commands a private mount and
    /// UTS namespace (Linux, as root, with util-linux). Without it the emulator refuses
    /// machine commands: they would run on the host itself.
    public static var machineNamespaces: Bool { machineCommandsRefusal == nil }

    /// Why machine commands are refused where `ORBSIM_NAMESPACES=0` is set.
    public static let namespacesTurnedOff =
        "orbctl-sim runs machine commands only in a private namespace, and ORBSIM_NAMESPACES=0 turns them off"

    /// Why `machineNamespaces` is false, in one line for people; nil when it is true.
    public static var machineCommandsRefusal: String? {
        #if os(Linux)
            return LinuxOnly.namespacesRefusal
        #else
            return "orbctl-sim runs machine commands on Linux only; use a Linux container, or OrbStack's own orbctl on a Mac"
        #endif
    }

    /// Processes other than this one whose environment holds `entry` (`KEY=value`).
    /// Only Linux can read other processes' environments without a helper, and only
    /// there does the emulator start machine processes at all.
    public static func processes(withEnvironmentEntry entry: String) -> [Int32] {
        #if os(Linux)
            return LinuxOnly.processes(withEnvironmentEntry: entry)
        #else
            return []
        #endif
    }

    /// Who a process is, beyond its pid (which the kernel reuses, and which another PID
    /// namespace repeats): the host's boot, the PID namespace it was read in, and the process's
    /// start time. Two identities name the same process only if all three agree.
    public struct ProcessIdentity: Equatable, Sendable {
        public var boot: String
        public var namespace: String
        public var start: String

        public init(boot: String, namespace: String, start: String) {
            self.boot = boot
            self.namespace = namespace
            self.start = start
        }
    }

    /// The identity of `pid` as seen from this process; nil when there is no such process here,
    /// or only its exit status waiting to be reaped (a zombie is dead: it holds nothing).
    public static func identity(of pid: Int32) -> ProcessIdentity? {
        #if os(Linux)
            return LinuxOnly.isZombie(pid) ? nil : LinuxOnly.identity(of: pid)
        #else
            // Darwin: kern.boottime, and the process's start time from kinfo_proc (`p_starttime`
            // is a macro for `p_un.__p_starttime`, which is what Swift sees). No PID namespaces.
            var boot = timeval()
            var size = MemoryLayout<timeval>.stride
            var bootName: [Int32] = [CTL_KERN, KERN_BOOTTIME]
            guard sysctl(&bootName, 2, &boot, &size, nil, 0) == 0 else { return nil }
            var info = kinfo_proc()
            size = MemoryLayout<kinfo_proc>.stride
            var procName: [Int32] = [CTL_KERN, KERN_PROC, KERN_PROC_PID, pid]
            guard sysctl(&procName, 4, &info, &size, nil, 0) == 0, size > 0, info.kp_proc.p_pid == pid else { return nil }
            // `p_stat` is a `char` of <sys/proc.h>; SZOMB (5) is "awaiting collection by parent".
            guard info.kp_proc.p_stat != 5 else { return nil }
            let start = info.kp_proc.p_un.__p_starttime
            return ProcessIdentity(boot: "\(boot.tv_sec).\(boot.tv_usec)", namespace: "darwin", start: "\(start.tv_sec).\(start.tv_usec)")
        #endif
    }

    /// Whether `pid` has exited but not been reaped.
    public static func isZombie(_ pid: Int32) -> Bool {
        #if os(Linux)
            return LinuxOnly.isZombie(pid)
        #else
            var info = kinfo_proc()
            var size = MemoryLayout<kinfo_proc>.stride
            var procName: [Int32] = [CTL_KERN, KERN_PROC, KERN_PROC_PID, pid]
            guard sysctl(&procName, 4, &info, &size, nil, 0) == 0, size > 0, info.kp_proc.p_pid == pid else { return false }
            return info.kp_proc.p_stat == 5  // SZOMB of <sys/proc.h>
        #endif
    }

    /// The directory of the Swift runtime this binary loaded, when it is a shared
    /// library outside the system's (Linux toolchains); nil where the OS ships it.
    public static func swiftRuntimeDirectory() -> String? {
        #if os(Linux)
            return LinuxOnly.swiftRuntimeDirectory()
        #else
            return nil
        #endif
    }

    /// The process's peak resident set size in megabytes.
    public static func peakResidentMegabytes() -> Int {
        #if os(Linux)
            return LinuxOnly.peakResidentMegabytes()
        #else
            var usage = rusage()
            getrusage(RUSAGE_SELF, &usage)
            return Int(usage.ru_maxrss) / 1_048_576  // bytes on macOS
        #endif
    }

    /// The peak resident set size of the largest child this process has waited for, in
    /// kilobytes (Linux reports kilobytes, macOS bytes).
    public static func childrenPeakResidentKilobytes() -> Int {
        #if os(Linux)
            return LinuxOnly.childrenPeakResidentKilobytes()
        #else
            var usage = rusage()
            getrusage(RUSAGE_CHILDREN, &usage)
            return Int(usage.ru_maxrss) / 1024  // bytes on macOS
        #endif
    }

    /// Reads a file to its end with read(2) (Linux's proc files report size 0, and
    /// Foundation's readers stop after their first page).
    public static func readWholeFile(_ path: String) -> Data? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            data.append(buffer, count: n)
        }
        return data
    }

    /// Whether `path` is a regular file itself (a link is not followed), with `lstat(2)`:
    /// `attributesOfItem` also looks up the owner's names through NSS, a read of
    /// `/etc/passwd` and `/etc/group` for each file asked about.
    public static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && st.st_mode & mode_t(S_IFMT) == mode_t(S_IFREG)
    }

    /// The size of `path` when it is a regular file itself (a link is not followed), with
    /// `lstat(2)` for the same reason as ``isRegularFile(_:)``; nil otherwise.
    public static func regularFileSize(_ path: String) -> Int? {
        var st = stat()
        guard lstat(path, &st) == 0, st.st_mode & mode_t(S_IFMT) == mode_t(S_IFREG) else { return nil }
        return Int(st.st_size)
    }

    /// Opens `/dev/null` on any of descriptors 0, 1 and 2 that the caller left closed. Otherwise
    /// the first file this process opens takes that number, and a child handed "standard input"
    /// gets it: an emulated machine's command was given the emulator's own epoll descriptor
    /// (and crashed the emulator through it) when started with `<&-`.
    public static func openStandardStreams() {
        for fd in Int32(0)...2 where fcntl(fd, F_GETFD) == -1 && errno == EBADF {
            let opened = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY)
            if opened >= 0 && opened != fd {
                dup2(opened, fd)
                close(opened)
            }
        }
    }

    /// Whether `path` is a directory itself (a link to one is not).
    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && st.st_mode & mode_t(S_IFMT) == mode_t(S_IFDIR)
    }

    /// The first `limit` bytes of a regular file, or nil when `path` is absent, a link, or not
    /// a regular file (a pipe a machine made is never waited on). One open, checked on the
    /// descriptor, so nothing can be swapped in between the check and the read.
    public static func readRegularFile(_ path: String, upTo limit: Int) -> Data? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & mode_t(S_IFMT) == mode_t(S_IFREG) else { return nil }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: min(max(limit, 0), 65536))
        while data.count < limit {
            let n = read(fd, &buffer, min(buffer.count, limit - data.count))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            data.append(buffer, count: n)
        }
        return data
    }
}

extension MachineNamespace {
    public struct SetUpError: Error, CustomStringConvertible {
        public var description: String
    }

    /// What a machine's namespace is made of.
    public struct Layout: Sendable {
        /// Where the host paths the emulator needs inside (its binary, the Swift runtime, the
        /// machine's own directory) are bound: a directory of the machine's private `/run`.
        public var hostView: String
        /// Host paths bound read-only under the host view (the emulator's binary, the runtime, the shims).
        public var readOnlyHostPaths: [String]
        /// The machine's own directory (its disk), bound writable under the host view for the
        /// boot; the init makes it read-only once it has recorded itself. Nothing else of the
        /// emulator's home is bound: its state and locks are the host's alone.
        public var ownHostPath: String
        /// Host paths covered in `/mnt/mac` (the emulator's home: its state and other machines' disks).
        public var concealed: [String]
        /// The machine's own directories (relative, e.g. `tmp`, `etc`) and where they come from.
        public var directories: [String]
        public var machineRoot: String
        public var hostname: String
        /// No `/mnt/mac`, and the host's own top-level directories hidden.
        public var isolated: Bool
        /// Programs covered by the shim of the same name in `shims` (a host path).
        public var guarded: [String]
        public var shims: String
        /// Own directories that are overlays of the host's (the machine's changes only, in
        /// `machineRoot/DIR`, its work directory beside it as `.DIR-work`) rather than whole copies.
        public var overlaid: [String] = []

        public init(
            hostView: String, readOnlyHostPaths: [String], ownHostPath: String, concealed: [String],
            directories: [String], machineRoot: String, hostname: String, isolated: Bool, guarded: [String],
            shims: String
        ) {
            self.hostView = hostView
            self.readOnlyHostPaths = readOnlyHostPaths
            self.ownHostPath = ownHostPath
            self.concealed = concealed
            self.directories = directories
            self.machineRoot = machineRoot
            self.hostname = hostname
            self.isolated = isolated
            self.guarded = guarded
            self.shims = shims
        }
    }
}
