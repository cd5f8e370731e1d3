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
                if arg.hasPrefix("-m") && !arg.hasPrefix("--") {
                    machineKey = try value()
                } else if arg.hasPrefix("-u") && !arg.hasPrefix("--") {
                    user = try value()
                } else if arg.hasPrefix("-w") && !arg.hasPrefix("--") {
                    workdir = try value()
                } else {
                    throw SimExit.usage("unknown flag: \(arg)", usage)
                }
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
        return try enter(
            machine, record: record, user: account, workdir: workdir ?? "", command: command,
            streams: (sim.io.stdin.fileDescriptor, sim.io.stdout.fileDescriptor, sim.io.stderr.fileDescriptor))
    }

    /// Runs `command` in a booted machine as `user`, with the given standard streams.
    ///
    /// One process of the emulator's, on the host: it enters the machine's namespaces with
    /// `nsenter`, whose child drops what the user may not have with `setpriv` (the user switch,
    /// the capabilities withheld) before anything of the machine's runs; a small shell, as the
    /// user, changes to the working directory, finds the command on the machine's PATH and
    /// becomes it in a session of its own (`setsid`). Nothing of the emulator's is left in the
    /// machine's process table, `kill -TERM -1` inside cannot reach it, and the caller's
    /// terminal is not the command's controlling terminal (it could type into it).
    /// The run's signals (TERM, HUP, INT) are passed on to the command. The session ends with
    /// the command: whatever is left in it ends too; only what detached (`setsid`) lives on.
    func enter(
        _ machine: SimMachine, record: MachineBoot.Record, user: String, workdir: String, command: [String],
        streams: (Int32, Int32, Int32), timeout: TimeInterval? = nil
    ) throws -> Int32 {
        let users = MachineUsers(root: sim.machineRoot(machine.key).path)
        guard let account = users.account(named: user) else {
            // **uncertain** text: OrbStack's message for an unknown user is not in any source at hand.
            throw SimExit.daemon("user '\(user)' not found in machine '\(machine.name)'")
        }
        // A machine does not inherit the host's environment.
        let path = MachineBoot.hostView + sim.store.shimsDirectory.path + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        let environment: [String: String] = [
            "TERM": sim.environment["TERM"] ?? "xterm", "LANG": sim.environment["LANG"] ?? "C.UTF-8",
            "HOME": account.home, "USER": user, "LOGNAME": user, "SHELL": account.uid == 0 ? "/bin/bash" : "/bin/sh",
            "PATH": path, "ORBSIM_MACHINE": machine.key,
        ]
        // Whoever the command runs as, it cannot gain what would reach the host through the
        // kernel it shares with it (mount, modules, raw devices, the clock, the host's network).
        var privileges = ["--bounding-set=" + MachineExec.withheld.map { "-" + $0 }.joined(separator: ",")]
        if account.uid != 0 {
            let groups = users.groups(of: account).map(String.init).joined(separator: ",")
            privileges += ["--reuid=\(account.uid)", "--regid=\(account.gid)", "--groups=\(groups)"]
        }
        let arguments =
            MachineNamespace.enterArguments(initPID: record.pid, isolated: machine.isolated)
            + ["--", "/usr/bin/setpriv"] + privileges
            + ["--", "/bin/sh", "-c", MachineExec.session, "orbctl-run", workdir, account.home] + command
        let leader = SessionLeader()
        MachineExec.forwardSignals()
        let program = MachineNamespace.enterProgram
        let code: Int32
        do {
            code = try waitForAsync {
                try await SystemProcessRunner.runAttached(
                    program, arguments, environment: environment,
                    stdin: streams.0, stdout: streams.1, stderr: streams.2, timeout: timeout,
                    spawned: { leader.watch(enter: $0) })
            }
        } catch {
            leader.stop()
            throw SimExit.daemon("exec \(program): \(error)")
        }
        leader.stop()
        // The session ends: what the command left in it ends with it. A process caught
        // mid-fork may be missed by one look: look again until a look finds none.
        if let session = leader.pid {
            for _ in 0..<20 {
                let left = MachineNamespace.processes(inSession: session, ofInit: record.pid)
                if left.isEmpty { break }
                for pid in left { kill(pid, SIGKILL) }
                usleep(2_000)
            }
        }
        return code
    }

    /// The host id of a run's session leader: `nsenter`'s child, which stops itself before
    /// anything of the user's runs, so that it is known before the command can start (a
    /// command that ends at once is never missed). The watcher finds it stopped, records it,
    /// and lets it go on (`nsenter` stops with its child, and continues it when continued).
    final class SessionLeader: @unchecked Sendable {
        private let lock = NSLock()
        private var found: Int32?
        private var stopped = false

        var pid: Int32? { lock.withLock { found } }

        func stop() { lock.withLock { stopped = true } }

        func watch(enter: Int32) {
            Thread.detachNewThread { [self] in
                let deadline = Date().addingTimeInterval(30)
                while Date() < deadline, !lock.withLock({ stopped }), kill(enter, 0) == 0 {
                    if let child = MachineNamespace.children(of: enter).first,
                        MachineNamespace.isStopped(child), MachineNamespace.isStopped(enter)
                    {
                        lock.withLock { found = child }
                        MachineExec.forwardedSession.store(child)
                        kill(enter, SIGCONT)
                        return
                    }
                    usleep(300)
                }
            }
        }
    }

    /// The session the run's signals go to (0: none yet).
    static let forwardedSession = AtomicPID()

    /// TERM, HUP and INT to the run are the command's: passed on to its session's process
    /// group. (A handler, unlike an ignored signal, is not inherited by the command.)
    static func forwardSignals() {
        for sig in [SIGTERM, SIGHUP, SIGINT] {
            signal(sig) { received in
                let session = MachineExec.forwardedSession.load()
                if session > 1 { kill(-session, received) }
            }
        }
    }

    /// The machine's half of a session, run by `/bin/sh` as the command's user in the machine's
    /// namespaces, after `setpriv`. Arguments: WORKDIR HOME COMMAND…. It first stops itself
    /// until the run has recorded it (see `SessionLeader`). A missing working directory and a
    /// command not on the machine's PATH are said in one line, as a shell would (127 for the
    /// latter); one that cannot be executed is `setsid`'s to say (126).
    static let session = #"""
        set -f
        kill -STOP $$
        w=$1 home=$2
        shift 2
        if [ -n "$w" ]; then
          cd -- "$w" 2>/dev/null || { printf 'chdir %s: no such file or directory\n' "$w" >&2; exit 1; }
        else
          cd -- "$home" 2>/dev/null || cd /
        fi
        read -r HOSTNAME </proc/sys/kernel/hostname
        export HOSTNAME
        p=$1
        case $1 in
          */*) ;;
          *) p=
             IFS=:
             for d in $PATH; do
               if [ -f "$d/$1" ] && [ -x "$d/$1" ]; then p=$d/$1; break; fi
             done
             unset IFS
             if [ -z "$p" ]; then printf '%s: command not found\n' "$1" >&2; exit 127; fi ;;
        esac
        shift
        exec /usr/bin/setsid "$p" "$@"
        """#

    /// Capabilities no machine command gets: a machine shares the host's kernel, network and
    /// devices, so these would reach the host (a cgroup release agent, a module, a raw disk).
    /// `sys_ptrace` too: the machine's init and sessions keep every capability, and a command
    /// that could attach to them would regain the rest.
    static let withheld = [
        "sys_admin", "sys_module", "sys_rawio", "sys_time", "net_admin", "net_raw", "dac_read_search",
        "mknod", "mac_admin", "mac_override", "syslog", "sys_pacct", "linux_immutable", "audit_control",
        "sys_ptrace", "bpf", "perfmon", "ipc_owner",
    ]
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
        if let refusal = Platform.machineCommandsRefusal ?? (environment["ORBSIM_NAMESPACES"] == "0" ? Platform.namespacesTurnedOff : nil) {
            throw SimExit(code: 1, stderr: refusal + "\n")
        }
        // A stopped machine is started first.
        if machine.state(at: now(state)) != "running" { try startMachine(id: machine.id) }
        return machine
    }
}

/// A process id shared with a signal handler (read there without a lock).
final class AtomicPID: @unchecked Sendable {
    private let value = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    init() { value.initialize(to: 0) }
    func store(_ pid: Int32) { value.pointee = pid }
    func load() -> Int32 { value.pointee }
}
