import Foundation
import ReplPlatform

/// `orbctl run`: a command inside an emulated machine.
///
/// The command runs in the machine's world (see `MachineBoot`), entered with `nsenter`, as
/// the machine's default user unless `-u` names another of its accounts. As in OrbStack, it
/// is a session: when the command returns, what it left running in its process group
/// (`cmd &`) is ended; only what detached into a session of its own (`setsid cmd &`) lives on,
/// until the machine stops. Where there are no namespaces (macOS, Linux without root) machine
/// commands are refused with one line: they would run on the host itself.
struct MachineExec {
    let sim: OrbSim

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
        if command.isEmpty { command = ["/bin/bash", "-l"] }
        let machine = try sim.bootedMachine(machineKey)
        let record = try MachineBoot(sim: sim).ensureInit(machine)
        let account = user ?? machine.defaultUsername
        // **uncertain** text: OrbStack's message for an unknown user is not in any source at hand.
        guard MachineUsers(root: sim.machineRoot(machine.key).path).account(named: account) != nil else {
            throw SimExit.daemon("user '\(account)' not found in machine '\(machine.name)'")
        }
        return try enter(machine, record: record, user: account, workdir: workdir ?? "", command: command,
                         streams: (sim.io.stdin.fileDescriptor, sim.io.stdout.fileDescriptor, sim.io.stderr.fileDescriptor))
    }

    /// Runs `command` in a booted machine as `user`, with the given standard streams.
    func enter(_ machine: SimMachine, record: MachineBoot.Record, user: String, workdir: String, command: [String],
               streams: (Int32, Int32, Int32), timeout: TimeInterval? = nil) throws -> Int32 {
        let boot = MachineBoot(sim: sim)
        let arguments = MachineNamespace.enterArguments(initPID: record.pid, isolated: machine.isolated)
            + [MachineBoot.hostView + sim.executable, "__enter", machine.key, user, workdir, "--"] + command
        let environment = boot.insideEnvironment
        let program = MachineNamespace.enterProgram
        do {
            return try waitForAsync {
                try await SystemProcessRunner.runAttached(program, arguments, environment: environment,
                                                          stdin: streams.0, stdout: streams.1, stderr: streams.2, timeout: timeout)
            }
        } catch {
            throw SimExit.daemon("exec \(program): \(error)")
        }
    }

    // MARK: - Inside the machine (`orbctl-sim __enter`)

    /// Runs in the machine's namespaces (as root): starts the command as its user, waits for
    /// it, then ends what it left in its process group. Arguments: KEY USER WORKDIR -- COMMAND...
    static func enter(_ args: [String], sim: OrbSim) -> Int32 {
        guard args.count >= 5, let sep = args.firstIndex(of: "--"), sep == 3 else {
            FileHandle.standardError.write(Data("orbctl-sim: bad __enter arguments\n".utf8))
            return 125
        }
        let (key, user, workdir) = (args[0], args[1], args[2])
        let command = Array(args[(sep + 1)...])
        let users = MachineUsers(root: "")
        guard let account = users.account(named: user) else {
            FileHandle.standardError.write(Data("orbctl-sim: no user '\(user)' in this machine\n".utf8))
            return 125
        }
        // What this session starts carries its mark; what stays in its process group ends with it.
        let session = UUID().uuidString
        // A signal to every process of the machine (`kill -TERM -1`) does not end the session
        // early: the command decides (a handler, unlike an ignored signal, is not inherited).
        signal(SIGTERM) { _ in }
        signal(SIGHUP) { _ in }
        // A machine does not inherit the host's environment.
        let path = sim.store.shimsDirectory.path + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        var env: [String: String] = [
            "TERM": sim.environment["TERM"] ?? "xterm", "LANG": sim.environment["LANG"] ?? "C.UTF-8",
            "HOME": account.home, "USER": user, "LOGNAME": user, "SHELL": "/bin/sh", "PATH": path,
            "HOSTNAME": ProcessInfo.processInfo.hostName, "ORBSIM_MACHINE": key, "ORBSIM_SESSION": session,
        ]
        if account.uid == 0 { env["SHELL"] = "/bin/bash" }
        var isDirectory: ObjCBool = false
        var cwd = workdir.isEmpty ? account.home : workdir
        if !FileManager.default.fileExists(atPath: cwd, isDirectory: &isDirectory) || !isDirectory.boolValue {
            // **uncertain** text: a missing -w directory is an error, not a silent `/`.
            guard workdir.isEmpty else {
                FileHandle.standardError.write(Data("chdir \(workdir): no such file or directory\n".utf8))
                return 1
            }
            cwd = "/"
        }
        guard let program = resolve(command[0], path: path) else {
            FileHandle.standardError.write(Data("\(command[0]): command not found\n".utf8))
            return 127
        }
        // The user is switched by util-linux's setpriv, exec'd in the child: this process stays
        // root, to end what the session leaves behind whoever it runs as.
        // Whoever it runs as, it cannot gain what would reach the host through the kernel
        // it shares with it (mount, modules, raw devices, the clock, the host's network).
        var argv = [MachineExec.setpriv, "--bounding-set=" + MachineExec.withheld.map { "-" + $0 }.joined(separator: ",")]
        if account.uid != 0 {
            let groups = users.groups(of: account).map(String.init).joined(separator: ",")
            argv += ["--reuid=\(account.uid)", "--regid=\(account.gid)", "--groups=\(groups)"]
        }
        argv += ["--", program] + command.dropFirst()
        let environment = env, directory = cwd, arguments = argv
        let code: Int32
        do {
            code = try waitForAsync {
                try await SystemProcessRunner.runAttached(arguments[0], Array(arguments.dropFirst()), environment: environment,
                                                          workingDirectory: directory)
            }
        } catch {
            FileHandle.standardError.write(Data("\(command[0]): \(error)\n".utf8))
            return 126
        }
        // The session ends: what the command left in its process group ends with it.
        // A process caught mid-fork or mid-exec may not show its environment yet: look again
        // until a look finds none.
        for _ in 0..<20 {
            let left = MachineNamespace.processes(inGroup: getpgrp(), withEnvironmentEntry: "ORBSIM_SESSION=\(session)")
            if left.isEmpty { break }
            for pid in left { kill(pid, SIGKILL) }
            usleep(2_000)
        }
        return code
    }

    static let setpriv = "/usr/bin/setpriv"
    /// Capabilities no machine command gets: a machine shares the host's kernel, network and
    /// devices, so these would reach the host (a cgroup release agent, a module, a raw disk).
    /// `sys_ptrace` too: the machine's init and sessions keep every capability, and a command
    /// that could attach to them would regain the rest.
    static let withheld = ["sys_admin", "sys_module", "sys_rawio", "sys_time", "net_admin", "net_raw", "dac_read_search",
                           "mknod", "mac_admin", "mac_override", "syslog", "sys_pacct", "linux_immutable", "audit_control",
                           "sys_ptrace", "bpf", "perfmon", "ipc_owner"]

    /// The executable a command's first word names, looked up on PATH as a shell would.
    static func resolve(_ name: String, path: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}

extension OrbSim {
    /// The machine a machine command addresses (`-m`, else the default one), started when
    /// stopped, once it is known that this host can run machine commands at all.
    func bootedMachine(_ key: String?) throws -> SimMachine {
        let state = try store.read()
        let name = key ?? state.config["default"] ?? state.machines.sorted { $0.createdAt < $1.createdAt }.first?.name
        guard let name else { throw SimExit.daemon("no machines found: create one with 'orbctl create'") }
        guard let index = OrbSim.find(name, in: state) else { throw SimExit.notFound(name) }
        let machine = state.machines[index]
        // Without a private namespace the command would run on the host itself.
        if let refusal = Platform.machineCommandsRefusal { throw SimExit(code: 1, stderr: refusal + "\n") }
        // A stopped machine is started first.
        if machine.state(at: now(state)) != "running" { try startMachine(id: machine.id) }
        return machine
    }
}
