import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `orbctl run`, `push` and `pull`: commands and files inside an emulated machine.
///
/// A machine command runs on the host. On Linux as root it runs in a private
/// mount and UTS namespace where `/tmp`, `/var/lib/repl`, `/etc/repl`, `/root`,
/// `/home`, `/opt` and `/srv` are the machine's own directories and the hostname
/// is the machine's name; shims are first on PATH and are also bind-mounted over
/// the host's `poweroff`, `shutdown`, `halt`, `reboot`, `init`, `telinit` and
/// `systemctl`, so a machine's command stops the emulated machine and never the
/// host. Elsewhere the command runs in the machine's home directory without
/// namespaces, and a command naming one of those programs by absolute path is refused.
struct MachineExec {
    let sim: OrbSim

    /// Programs that must never reach the host from a machine.
    static let guarded = ["poweroff", "shutdown", "halt", "reboot", "init", "telinit", "systemctl"]
    static let shimmed = guarded + ["hostname"]

    /// Where the host's whole tree is bind-mounted inside a machine's namespace, so
    /// the emulator and its state stay reachable after `/tmp`, `/root` and `/home`
    /// are replaced by the machine's own.
    static let hostViewCandidates = ["/run/orbsim-host", "/var/tmp/orbsim-host"]

    static var namespacesAvailable: Bool {
        #if os(Linux)
        if ProcessInfo.processInfo.environment["ORBSIM_NAMESPACES"] == "0" { return false }
        return getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare")
        #else
        return false
        #endif
    }

    func run(_ args: [String]) throws -> Int32 {
        let usage = "run [flags] [COMMAND [ARGS]...]"
        // Flags are read up to the first word not starting with '-'; the rest is the command, verbatim.
        var machineKey: String?
        var user: String?
        var workdir: String?
        var i = 0
        while i < args.count, args[i].hasPrefix("-") {
            let arg = args[i]
            func value() throws -> String {
                if let eq = arg.firstIndex(of: "=") { return String(arg[arg.index(after: eq)...]) }
                if arg.count > 2 && !arg.hasPrefix("--") { return String(arg.dropFirst(2)) }
                i += 1
                guard i < args.count else { throw SimExit.usage("flag needs an argument: \(arg)", usage) }
                return args[i]
            }
            switch arg.split(separator: "=", maxSplits: 1)[0] {
            case "-m", "--machine": machineKey = try value()
            case "-u", "--user": user = try value()
            case "-w", "--workdir": workdir = try value()
            default:
                if arg.hasPrefix("-m") && !arg.hasPrefix("--") { machineKey = try value() }
                else if arg.hasPrefix("-u") && !arg.hasPrefix("--") { user = try value() }
                else if arg.hasPrefix("-w") && !arg.hasPrefix("--") { workdir = try value() }
                else { throw SimExit.usage("unknown flag: \(arg)", usage) }
            }
            i += 1
        }
        var command = Array(args[i...])
        let state = try sim.store.read()
        let key = machineKey ?? state.config["default"] ?? state.machines.sorted { $0.createdAt < $1.createdAt }.first?.name
        guard let key else { throw SimExit.daemon("no machines found: create one with 'orbctl create'") }
        guard let index = OrbSim.find(key, in: state) else { throw SimExit.notFound(key) }
        let machine = state.machines[index]
        // A stopped machine is started first.
        if machine.state(at: sim.now(state)) != "running" { try sim.startMachine(id: machine.id) }
        if command.isEmpty { command = ["/bin/bash", "-l"] }
        let runUser = user ?? machine.defaultUsername
        try sim.makeMachineRoot(machine.id, user: runUser == "root" ? machine.defaultUsername : runUser)
        try installShims()
        return try spawn(machine: machine, user: runUser, workdir: workdir, command: command)
    }

    func spawn(machine: SimMachine, user: String, workdir: String?, command: [String]) throws -> Int32 {
        let enterArgs = ["__enter", machine.id, machine.name, user, workdir ?? "", "--"] + command
        var env = sim.environment
        env["ORBSIM_HOME"] = sim.store.home.path
        env["ORBSIM_EXECUTABLE"] = sim.executable
        if MachineExec.namespacesAvailable {
            return try Spawn.run("/usr/bin/unshare", ["--mount", "--uts", "--propagation", "private", sim.executable] + enterArgs,
                                 environment: env, stdin: sim.io.stdin.fileDescriptor, stdout: sim.io.stdout.fileDescriptor,
                                 stderr: sim.io.stderr.fileDescriptor)
        }
        return try Spawn.run(sim.executable, enterArgs, environment: env, stdin: sim.io.stdin.fileDescriptor,
                             stdout: sim.io.stdout.fileDescriptor, stderr: sim.io.stderr.fileDescriptor)
    }

    /// Writes the shim scripts under `$ORBSIM_HOME/shims` (once per emulator home).
    func installShims() throws {
        let dir = sim.store.shimsDirectory
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for tool in MachineExec.shimmed {
            let path = dir.appendingPathComponent(tool).path
            // The emulator is reached through the host view when inside a namespace.
            // Dispatch on the name it was called by: a shim bound over /usr/bin/systemctl
            // is also what the /sbin/shutdown symlink reaches.
            let script = """
            #!/bin/sh
            # orbctl-sim shim: inside an emulated machine, \(tool) acts on the machine, never the host.
            LD_LIBRARY_PATH="${ORBSIM_HOST_VIEW:-}${ORBSIM_LIBRARY_PATH:-}" exec "${ORBSIM_HOST_VIEW:-}${ORBSIM_EXECUTABLE}" __shim "$(basename "$0")" "$@"

            """
            if (try? String(contentsOfFile: path, encoding: .utf8)) != script {
                try script.write(toFile: path + ".tmp", atomically: false, encoding: .utf8)
                chmod(path + ".tmp", 0o755)
                rename(path + ".tmp", path)
            }
        }
    }

    // MARK: - Inside the machine (`orbctl-sim __enter`)

    /// Sets up the machine's view and replaces this process with the command.
    /// Arguments: MACHINE_ID MACHINE_NAME USER WORKDIR -- COMMAND...
    static func enter(_ args: [String], sim: OrbSim) -> Int32 {
        guard args.count >= 6, let sep = args.firstIndex(of: "--"), sep == 4 else {
            FileHandle.standardError.write(Data("orbctl-sim: bad __enter arguments\n".utf8))
            return 125
        }
        let (id, name, user, workdir) = (args[0], args[1], args[2], args[3])
        let command = Array(args[(sep + 1)...])
        let home = sim.store.home.path
        let root = sim.machineRoot(id).path
        let guestHome = user == "root" ? "/root" : "/home/\(user)"
        // A machine does not inherit the host's environment.
        var env: [String: String] = ["TERM": sim.environment["TERM"] ?? "xterm", "LANG": sim.environment["LANG"] ?? "C.UTF-8",
                                     "ORBSIM_EXECUTABLE": sim.environment["ORBSIM_EXECUTABLE"] ?? sim.executable,
                                     "ORBSIM_LIBRARY_PATH": swiftRuntimeDirectory() ?? ""]
        var hostView = ""
        #if os(Linux)
        if namespacesAvailable {
            do {
                hostView = try setUpNamespace(root: root, name: name, shims: sim.store.shimsDirectory.path)
            } catch {
                FileHandle.standardError.write(Data("orbctl-sim: cannot set up the machine's namespace: \(error)\n".utf8))
                return 125
            }
        }
        #endif
        let inNamespace = !hostView.isEmpty
        if !inNamespace {
            // No namespace: refuse commands that name a guarded program by absolute path.
            for word in command {
                for tool in guarded where word.range(of: "/\(tool)(\\s|$|;|&|\\||\\))", options: .regularExpression) != nil
                    && word.range(of: "(^|[\\s;&|(`])(/usr)?/s?bin/\(tool)", options: .regularExpression) != nil {
                    FileHandle.standardError.write(Data("orbctl-sim: refusing to run a command that names \(tool) by absolute path outside a namespace\n".utf8))
                    return 126
                }
            }
        }
        env["ORBSIM_MACHINE"] = id
        env["ORBSIM_HOST_VIEW"] = hostView
        env["ORBSIM_HOME"] = hostView + home
        env["HOME"] = inNamespace ? guestHome : root + guestHome
        env["USER"] = user
        env["LOGNAME"] = user
        env["HOSTNAME"] = name
        env["PATH"] = hostView + sim.store.shimsDirectory.path + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        let cwd = workdir.isEmpty ? env["HOME"]! : (inNamespace || workdir.hasPrefix("/") == false ? workdir : root + workdir)
        if chdir(cwd) != 0 { _ = chdir(inNamespace ? "/" : root) }
        for (k, _) in ProcessInfo.processInfo.environment where env[k] == nil { unsetenv(k) }
        for (k, v) in env { setenv(k, v, 1) }
        var cArgs = command.map { strdup($0) } + [nil]
        execvp(command[0], &cArgs)
        let message = errno == ENOENT ? "\(command[0]): command not found\n" : "\(command[0]): \(String(cString: strerror(errno)))\n"
        FileHandle.standardError.write(Data(message.utf8))
        return errno == ENOENT ? 127 : 126
    }

    /// The directory of the Swift runtime this binary loaded (it may sit under /opt,
    /// which a machine replaces with its own; the shims reach it through the host view).
    static func swiftRuntimeDirectory() -> String? {
        #if os(Linux)
        guard let data = readWholeFile("/proc/self/maps") else { return nil }
        let maps = String(decoding: data, as: UTF8.self)
        for line in maps.split(separator: "\n") where line.hasSuffix("/libswiftCore.so") {
            if let path = line.split(separator: " ", omittingEmptySubsequences: true).last {
                return (String(path) as NSString).deletingLastPathComponent
            }
        }
        #endif
        return nil
    }

    #if os(Linux)
    struct MountError: Error, CustomStringConvertible {
        var description: String
    }

    static func bind(_ source: String, _ target: String, recursive: Bool = false) throws {
        let flags = UInt(MS_BIND) | (recursive ? UInt(MS_REC) : 0)
        guard mount(source, target, nil, flags, nil) == 0 else {
            throw MountError(description: "bind \(source) over \(target): \(String(cString: strerror(errno)))")
        }
    }

    /// Runs inside the fresh namespaces made by `unshare`: keeps a view of the host,
    /// puts the machine's directories and hostname in place and covers the guarded programs.
    static func setUpNamespace(root: String, name: String, shims: String) throws -> String {
        let fm = FileManager.default
        var hostView = ""
        for candidate in hostViewCandidates {
            if (try? fm.createDirectory(atPath: candidate, withIntermediateDirectories: true)) != nil {
                try bind("/", candidate, recursive: true)
                hostView = candidate
                break
            }
        }
        guard !hostView.isEmpty else { throw MountError(description: "no place for the host view") }
        for dir in OrbSim.machineDirectories {
            let target = "/" + dir
            if !fm.fileExists(atPath: target) { try fm.createDirectory(atPath: target, withIntermediateDirectories: true) }
            try bind(hostView + root + "/" + dir, target, recursive: false)
        }
        guard sethostname(name, name.utf8.count) == 0 else {
            throw MountError(description: "sethostname: \(String(cString: strerror(errno)))")
        }
        var covered = Set<String>()
        for tool in guarded {
            for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/local/bin", "/lib/systemd"] {
                let path = dir + "/" + tool
                guard fm.fileExists(atPath: path) else { continue }
                let real = (path as NSString).resolvingSymlinksInPath
                guard !covered.contains(real) else { continue }
                try bind(hostView + shims + "/" + tool, real)
                covered.insert(real)
            }
        }
        return hostView
    }
    #endif

    // MARK: - Processes of a machine

    /// Ends every process started inside a machine (found by the `ORBSIM_MACHINE`
    /// mark in its environment): SIGTERM, then SIGKILL after `grace` seconds.
    static func killProcesses(machineID: String, grace: TimeInterval) {
        var targets = processes(of: machineID)
        guard !targets.isEmpty else { return }
        for pid in targets { kill(pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(grace)
        while Date() < deadline {
            targets = targets.filter { kill($0, 0) == 0 && !isZombie($0) }
            if targets.isEmpty { return }
            usleep(20_000)
        }
        for pid in processes(of: machineID) { kill(pid, SIGKILL) }
    }

    /// Reads a file to its end with read(2): files under /proc report size 0, and
    /// Foundation's readers stop after the first page of them.
    static func readWholeFile(_ path: String) -> Data? {
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

    static func isZombie(_ pid: pid_t) -> Bool {
        #if os(Linux)
        guard let raw = readWholeFile("/proc/\(pid)/stat"), case let stat = String(decoding: raw, as: UTF8.self),
              let close = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(close, offsetBy: 2)...].hasPrefix("Z")
        #else
        return false
        #endif
    }

    static func processes(of machineID: String) -> [pid_t] {
        let mark = Array("ORBSIM_MACHINE=\(machineID)".utf8)
        let me = getpid()
        var found: [pid_t] = []
        #if os(Linux)
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        for entry in entries {
            guard let pid = pid_t(entry), pid != me,
                  let environ = readWholeFile("/proc/\(entry)/environ") else { continue }
            for variable in environ.split(separator: 0) where Array(variable) == mark {
                found.append(pid)
                break
            }
        }
        #else
        // macOS: read environments through `ps eww`.
        let ps = Process()
        ps.executableURL = URL(fileURLWithPath: "/bin/ps")
        ps.arguments = ["-axeww", "-o", "pid=,command="]
        let pipe = Pipe()
        ps.standardOutput = pipe
        try? ps.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        ps.waitUntilExit()
        let needle = String(decoding: mark, as: UTF8.self)
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.contains(needle) {
            if let pid = pid_t(line.trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? ""), pid != me {
                found.append(pid)
            }
        }
        #endif
        return found
    }

    // MARK: - Files

    /// The machine path for a guest path: relative paths are under the guest user's home.
    func guestPath(_ machine: SimMachine, _ path: String) -> URL {
        let root = sim.machineRoot(machine.id)
        if path.hasPrefix("/") {
            let inside = OrbSim.machineDirectories.contains { path == "/" + $0 || path.hasPrefix("/" + $0 + "/") }
            guard inside else { return root.appendingPathComponent("home/\(machine.defaultUsername)/" + (path as NSString).lastPathComponent) }
            return root.appendingPathComponent(String(path.dropFirst()))
        }
        return root.appendingPathComponent("home/\(machine.defaultUsername)").appendingPathComponent(path)
    }

    func fileArguments(_ args: [String], verb: String) throws -> (SimMachine, [String], String?) {
        let usage = "\(verb) [flags] SOURCE... [DEST]"
        let flags = try FlagParser(usage: usage, values: ["m": "machine"]).parse(args)
        guard !flags.positional.isEmpty else { throw SimExit.usage("requires at least 1 arg(s), only received 0", usage) }
        let state = try sim.store.read()
        guard let key = flags.values["machine"] ?? state.config["default"] ?? state.machines.first?.name else {
            throw SimExit.daemon("no machines found")
        }
        guard let i = OrbSim.find(key, in: state) else { throw SimExit.notFound(key) }
        let sources = flags.positional.count > 1 ? Array(flags.positional.dropLast()) : flags.positional
        let dest = flags.positional.count > 1 ? flags.positional.last : nil
        try sim.makeMachineRoot(state.machines[i].id, user: state.machines[i].defaultUsername)
        return (state.machines[i], sources, dest)
    }

    func copy(_ from: URL, _ to: URL) throws {
        var isDir: ObjCBool = false
        var target = to
        if FileManager.default.fileExists(atPath: to.path, isDirectory: &isDir), isDir.boolValue {
            target = to.appendingPathComponent(from.lastPathComponent)
        }
        try? FileManager.default.removeItem(at: target)
        do {
            try FileManager.default.copyItem(at: from, to: target)
        } catch {
            throw SimExit(code: 1, stderr: "copy \(from.lastPathComponent): \(error.localizedDescription)\n")
        }
    }

    func push(_ args: [String]) throws -> Int32 {
        let (machine, sources, dest) = try fileArguments(args, verb: "push")
        let target = guestPath(machine, dest ?? ".")
        for source in sources {
            guard FileManager.default.fileExists(atPath: source) else {
                throw SimExit(code: 1, stderr: "stat \(source): no such file or directory\n")
            }
            try copy(URL(fileURLWithPath: source), target)
        }
        return 0
    }

    func pull(_ args: [String]) throws -> Int32 {
        let (machine, sources, dest) = try fileArguments(args, verb: "pull")
        let target = URL(fileURLWithPath: dest ?? FileManager.default.currentDirectoryPath)
        for source in sources {
            let from = guestPath(machine, source)
            guard FileManager.default.fileExists(atPath: from.path) else {
                throw SimExit(code: 1, stderr: "stat \(source): no such file or directory\n")
            }
            try copy(from, target)
        }
        return 0
    }
}
