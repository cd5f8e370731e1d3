import Foundation
import ReplPlatform

/// `orbctl run`, `push` and `pull`: commands and files inside an emulated machine.
///
/// A machine command runs on the host. On Linux as root it runs in a private
/// mount and UTS namespace where `/tmp`, `/var/lib/repl`, `/etc/repl`, `/root`,
/// `/home`, `/opt` and `/srv` are the machine's own directories and the hostname
/// is the machine's name; shims are first on PATH and are also bind-mounted over
/// the host's `poweroff`, `shutdown`, `halt`, `reboot`, `init`, `telinit` and
/// `systemctl`, so a machine's command stops the emulated machine and never the
/// host. Elsewhere (macOS, or Linux without root) machine commands are refused with
/// one line saying why: without namespaces they would run on the host itself.
struct MachineExec {
    let sim: OrbSim

    /// Programs that must never reach the host from a machine.
    static let guarded = ["poweroff", "shutdown", "halt", "reboot", "init", "telinit", "systemctl"]
    static let shimmed = guarded + ["hostname"]

    /// Where the host's whole tree is bind-mounted inside a machine's namespace, so
    /// the emulator and its state stay reachable after `/tmp`, `/root` and `/home`
    /// are replaced by the machine's own.
    static let hostViewCandidates = ["/run/orbsim-host", "/var/tmp/orbsim-host"]

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
        // Without a private namespace the command would run on the host itself.
        if let refusal = Platform.machineCommandsRefusal { throw SimExit(code: 1, stderr: refusal + "\n") }
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
        let (stdin, stdout, stderr) = (sim.io.stdin.fileDescriptor, sim.io.stdout.fileDescriptor, sim.io.stderr.fileDescriptor)
        let program = MachineNamespace.launcher
        let environment = env
        let arguments = MachineNamespace.launcherArguments + [sim.executable] + enterArgs
        do {
            return try waitForAsync {
                try await SystemProcessRunner.runAttached(program, arguments, environment: environment,
                                                          stdin: stdin, stdout: stdout, stderr: stderr)
            }
        } catch {
            throw SimExit.daemon("exec \(program): \(error)")
        }
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
                                     "ORBSIM_LIBRARY_PATH": Platform.swiftRuntimeDirectory() ?? ""]
        let hostView: String
        do {
            hostView = try MachineNamespace.setUp(hostViewCandidates: hostViewCandidates, machineRoot: root,
                                                  directories: OrbSim.machineDirectories, hostname: name,
                                                  cover: guarded, with: sim.store.shimsDirectory.path)
        } catch {
            FileHandle.standardError.write(Data("orbctl-sim: cannot set up the machine's namespace: \(error)\n".utf8))
            return 125
        }
        env["ORBSIM_MACHINE"] = id
        env["ORBSIM_HOST_VIEW"] = hostView
        env["ORBSIM_HOME"] = hostView + home
        env["HOME"] = guestHome
        env["USER"] = user
        env["LOGNAME"] = user
        env["HOSTNAME"] = name
        env["PATH"] = hostView + sim.store.shimsDirectory.path + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        let cwd = workdir.isEmpty ? guestHome : workdir
        if chdir(cwd) != 0 { _ = chdir("/") }
        for (k, _) in ProcessInfo.processInfo.environment where env[k] == nil { unsetenv(k) }
        for (k, v) in env { setenv(k, v, 1) }
        var cArgs = command.map { strdup($0) } + [nil]
        execvp(command[0], &cArgs)
        let message = errno == ENOENT ? "\(command[0]): command not found\n" : "\(command[0]): \(String(cString: strerror(errno)))\n"
        FileHandle.standardError.write(Data(message.utf8))
        return errno == ENOENT ? 127 : 126
    }

    // MARK: - Processes of a machine

    /// Ends every process started inside a machine (found by the `ORBSIM_MACHINE`
    /// mark in its environment): SIGTERM, then SIGKILL after `grace` seconds.
    static func killProcesses(machineID: String, grace: TimeInterval) {
        var targets = processes(of: machineID)
        guard !targets.isEmpty else { return }
        for pid in targets { kill(pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(grace)
        while Date() < deadline {
            targets = targets.filter { kill($0, 0) == 0 && !Platform.isZombie($0) }
            if targets.isEmpty { return }
            usleep(20_000)
        }
        for pid in processes(of: machineID) { kill(pid, SIGKILL) }
    }

    static func processes(of machineID: String) -> [pid_t] {
        Platform.processes(withEnvironmentEntry: "ORBSIM_MACHINE=\(machineID)")
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
