import Foundation
import ReplCore

/// Standard streams of one emulator invocation. The executable passes its own;
/// in-process callers pass files or pipes.
public struct SimIO {
    public var stdin: FileHandle
    public var stdout: FileHandle
    public var stderr: FileHandle
    /// Whether stdout is a terminal: spinners, headers and prompts appear only then.
    public var stdoutIsTTY: Bool

    public init(stdin: FileHandle, stdout: FileHandle, stderr: FileHandle, stdoutIsTTY: Bool = false) {
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.stdoutIsTTY = stdoutIsTTY
    }

    /// Every stream on `/dev/null`: for in-process calls whose output nobody reads (a reset).
    public static var discarded: SimIO? {
        FileHandle(forUpdatingAtPath: "/dev/null").map { SimIO(stdin: $0, stdout: $0, stderr: $0) }
    }

    public static var standard: SimIO {
        SimIO(stdin: .standardInput, stdout: .standardOutput, stderr: .standardError, stdoutIsTTY: isatty(1) == 1)
    }
}

/// Thrown inside a verb to end it with a message and an exit code.
struct SimExit: Error {
    var code: Int32
    var stderr: String
    var stdout: String = ""

    /// A daemon error, as orbctl prints them: `[-32098] message`.
    static func daemon(_ message: String) -> SimExit { SimExit(code: 1, stderr: "[-32098] \(message)\n") }
    /// An argument error: `Error: message` plus usage.
    static func usage(_ message: String, _ usage: String) -> SimExit {
        SimExit(code: 1, stderr: "Error: \(message)\nUsage:\n  orbctl \(usage)\n\nFlags:\n  -h, --help   help for orbctl\n")
    }
    static func notFound(_ name: String) -> SimExit { .daemon("machine not found: '\(name)'") }
}

/// The emulator: one model of `orbctl` behind both the `orbctl-sim` executable
/// and in-process use by tests. State lives under `home` (`$ORBSIM_HOME`).
public final class OrbSim {
    public let store: SimStore
    /// The `orbctl-sim` binary, run for machine commands and by the shims.
    public let executable: String
    public let environment: [String: String]
    var io = SimIO.standard

    public static let version = "2.2.3"
    public static let versionNumber = 2_020_300
    public static let commit = "8b3f7e2c41d95a06e7f1c2b9d4a3e5f60718293a"

    public init(home: URL, executable: String, environment: [String: String] = ProcessInfo.processInfo.environment) {
        var initial = SimState()
        // ORBSIM_LATENCY=fast: a few milliseconds for every verb (tests); the default is demo-realistic.
        if environment["ORBSIM_LATENCY"] == "fast" { initial.latencies = SimState.fastLatencies }
        self.store = SimStore(home: home, initial: initial)
        self.executable = executable
        self.environment = environment
    }

    /// The emulator's home: `$ORBSIM_HOME`, else `~/.orbsim`.
    public static func defaultHome(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        if let h = environment["ORBSIM_HOME"], !h.isEmpty { return URL(fileURLWithPath: h) }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return URL(fileURLWithPath: home).appendingPathComponent(".orbsim")
    }

    /// The emulator's clock: real time plus the offset set by `admin clock advance`.
    func now(_ state: SimState) -> Date { Date().addingTimeInterval(state.clockOffset) }

    static let aliases: [String: String] = [
        "ls": "list", "add": "create", "new": "create", "rm": "delete", "remove": "delete", "exec": "run", "shell": "run",
        "mv": "rename", "cp": "clone",
    ]

    /// The verb of an argv (without the program name), aliases resolved.
    public static func verb(of argv: [String]) -> String? {
        guard let first = argv.first(where: { !$0.hasPrefix("-") }) else { return nil }
        return aliases[first] ?? first
    }

    /// Runs one invocation and returns its exit code. `argv` excludes the program name.
    public func main(_ argv: [String], io: SimIO) -> Int32 {
        self.io = io
        if environment["HOME"] == nil || environment["HOME"] == "" {
            // The real orbctl panics without HOME; so does this one.
            write(io.stderr, "panic: $HOME is not defined\n\ngoroutine 1 [running]:\nmain.main()\n")
            return 2
        }
        let started = Date()
        let verb = OrbSim.verb(of: argv)
        let isInternal = verb == "admin" || verb?.hasPrefix("__") == true
        let code: Int32
        do {
            code = try dispatch(argv, verb: verb)
        } catch let exit as SimExit {
            write(io.stdout, exit.stdout)
            write(io.stderr, exit.stderr)
            code = exit.code
        } catch {
            write(io.stderr, "[-32098] \(error)\n")
            code = 1
        }
        if !isInternal {
            store.logCall(argv: argv, exitCode: code, milliseconds: Int(Date().timeIntervalSince(started) * 1000), at: started)
        }
        return code
    }

    func write(_ handle: FileHandle, _ text: String) {
        guard !text.isEmpty else { return }
        try? handle.write(contentsOf: Data(text.utf8))
    }
    func out(_ text: String) { write(io.stdout, text) }

    func dispatch(_ argv: [String], verb: String?) throws -> Int32 {
        guard let verb, let index = argv.firstIndex(where: { !$0.hasPrefix("-") }) else {
            if argv.contains("--version") || argv.contains("-v") { return try version([]) }
            out(OrbSim.help)
            return 0
        }
        let args = Array(argv[(index + 1)...])
        if verb == "admin" { return try SimAdmin(sim: self).run(args) }
        if verb == "__enter" { return MachineExec.enter(args, sim: self) }
        if verb == "__shim" { return try shim(args) }
        if args.contains("-h") || args.contains("--help"), verb != "run" {
            out("Usage:\n  orbctl \(verb) [flags]\n")
            return 0
        }
        try injectFaults(verb, args: args)
        switch verb {
        case "version": return try version(args)
        case "status": return try status(args)
        case "list": return try list(args)
        case "info": return try info(args)
        case "create": return try create(args)
        case "start": return try start(args)
        case "stop": return try stop(args)
        case "restart": return try restart(args)
        case "delete": return try delete(args)
        case "clone": return try clone(args)
        case "rename": return try rename(args)
        case "run": return try MachineExec(sim: self).run(args)
        case "push": return try MachineExec(sim: self).push(args)
        case "pull": return try MachineExec(sim: self).pull(args)
        case "config": return try config(args)
        default:
            throw SimExit(code: 1, stderr: "Error: unknown command \"\(verb)\" for \"orbctl\"\nRun 'orbctl --help' for usage.\n")
        }
    }

    static let help = """
    orbctl-sim: an emulator of OrbStack's orbctl for Linux (a test double, not a sandbox)

    Usage:
      orbctl [command]

    Commands:
      version, status, list, info, create, start, stop, restart, delete, clone,
      rename, run, push, pull, config
      admin      fault injection and inspection (orbctl-sim only; see `orbctl-sim admin help`)

    """

    // MARK: - Faults and latency

    /// Applies `admin hang`/`admin fail` for this verb, then its latency for verbs
    /// whose latency is not a machine transition.
    func injectFaults(_ verb: String, args: [String]) throws {
        let (hang, fault, latency) = try store.withState { state -> (Bool, SimFault?, Int) in
            var hang = false
            if let n = state.hangs[verb], n > 0 {
                state.hangs[verb] = n - 1 == 0 ? nil : n - 1
                hang = true
            }
            var fault: SimFault?
            if !hang, let f = state.failures[verb], f.remaining > 0 {
                fault = f
                state.failures[verb] = f.remaining - 1 == 0 ? nil : SimFault(remaining: f.remaining - 1, message: f.message)
            }
            return (hang, fault, state.latencies[verb] ?? 0)
        }
        if hang {
            // Never returns: the caller's timeout must kill us.
            while true { sleep(3600) }
        }
        if let fault {
            let message = fault.message ?? "[-32098] \(verb): internal error (injected by orbctl-sim admin fail)"
            throw SimExit(code: 1, stderr: message.hasSuffix("\n") ? message : message + "\n")
        }
        if !["create", "clone", "start", "stop", "restart", "delete"].contains(verb), latency > 0 {
            usleep(UInt32(min(latency, 60_000)) * 1000)
        }
    }

    func latency(_ verb: String) -> Int { (try? store.read().latencies[verb]) ?? 0 }

    func sleepMilliseconds(_ ms: Int) {
        if ms > 0 { usleep(UInt32(min(ms, 600_000)) * 1000) }
    }

    // MARK: - Simple verbs

    func version(_ args: [String]) throws -> Int32 {
        out("Version: \(OrbSim.version) (\(OrbSim.versionNumber))\nCommit: \(OrbSim.commit) (v\(OrbSim.version))\n")
        return 0
    }

    func status(_ args: [String]) throws -> Int32 {
        out("Running\n")
        return 0
    }

    /// Finds a machine by name, or by id.
    static func find(_ key: String, in state: SimState) -> Int? {
        state.machines.firstIndex { $0.name == key } ?? state.machines.firstIndex { $0.id == key }
    }

    static func record(_ m: SimMachine, now: Date) -> GoJSON {
        .object([
            ("id", .string(m.id)),
            ("name", .string(m.name)),
            ("image", .object([("distro", .string(m.distro)), ("version", .string(m.version)),
                               ("arch", .string(m.arch)), ("variant", .string(m.variant))])),
            ("config", .object([("isolated", .bool(m.settings["isolated"] == "true")),
                                ("forward_ssh_agent", .bool(m.settings["forward_ssh_agent"] != "false")),
                                ("isolate_network", .bool(m.settings["isolate_network"] == "true")),
                                ("default_username", .string(m.defaultUsername)),
                                ("http_port", .int(0)), ("https_port", .int(0))])),
            ("builtin", .bool(false)),
            ("state", .string(m.state(at: now))),
        ])
    }

    func list(_ args: [String]) throws -> Int32 {
        let flags = try FlagParser(usage: "list [flags]", bools: ["r": "running", "q": "quiet"], values: ["f": "format"]).parse(args)
        guard flags.positional.isEmpty else { throw SimExit.usage("unknown command \"\(flags.positional[0])\" for \"orbctl list\"", "list [flags]") }
        let format = flags.values["format"] ?? "text"
        guard format == "text" || format == "json" else { throw SimExit(code: 1, stderr: "invalid format: \(format)\n") }
        let state = try store.read()
        let now = now(state)
        var machines = state.machines.sorted { $0.name < $1.name }
        if flags.bools.contains("running") { machines = machines.filter { $0.state(at: now) == "running" } }
        if flags.bools.contains("quiet") {
            out(machines.map { $0.name + "\n" }.joined())
        } else if format == "json" {
            out(GoJSON.array(machines.map { OrbSim.record($0, now: now) }).rendered())
        } else {
            var rows: [[String]] = io.stdoutIsTTY ? [["NAME", "STATE", "DISTRO", "VERSION", "ARCH", "SIZE", "IP"]] : []
            for m in machines {
                rows.append([m.name, m.state(at: now), m.distro, m.version, m.arch,
                             String(format: "%.1f GB", Double(m.diskSize) / 1e9),
                             m.state(at: now) == "running" ? m.ip4 ?? "" : ""])
            }
            out(OrbSim.table(rows))
        }
        return 0
    }

    /// Columns padded as Go's tabwriter pads them (minimum width, two spaces apart).
    static func table(_ rows: [[String]]) -> String {
        guard let width = rows.map(\.count).max() else { return "" }
        var widths = [Int](repeating: 0, count: width)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        return rows.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i] + 2, withPad: " ", startingAt: 0) }
                .joined().trimmingCharacters(in: .whitespaces) + "\n"
        }.joined()
    }

    func info(_ args: [String]) throws -> Int32 {
        let flags = try FlagParser(usage: "info [flags] MACHINE", values: ["f": "format"]).parse(args)
        guard flags.positional.count == 1 else {
            throw SimExit.usage("accepts 1 arg(s), received \(flags.positional.count)", "info [flags] MACHINE")
        }
        let format = flags.values["format"] ?? "text"
        guard format == "text" || format == "json" else { throw SimExit(code: 1, stderr: "invalid format: \(format)\n") }
        let state = try store.read()
        let now = now(state)
        guard let i = OrbSim.find(flags.positional[0], in: state) else { throw SimExit.notFound(flags.positional[0]) }
        let m = state.machines[i]
        let running = m.state(at: now) == "running"
        if format == "json" {
            var fields: [(String, GoJSON)] = [("record", OrbSim.record(m, now: now)), ("disk_size", .int(m.diskSize))]
            if running, let ip4 = m.ip4 { fields.append(("ip4", .string(ip4))) }
            if running, let ip6 = m.ip6 { fields.append(("ip6", .string(ip6))) }
            out(GoJSON.object(fields).rendered())
        } else {
            var text = "ID: \(m.id)\nName: \(m.name)\nState: \(m.state(at: now))\nDistro: \(m.distro)\nVersion: \(m.version)\nArchitecture: \(m.arch)\n"
            if running, let ip4 = m.ip4 { text += "\nIP: \(ip4)\n" }
            out(text)
        }
        return 0
    }

    // MARK: - Names, images and addresses

    static let reservedNames: Set<String> = ["default", "vm", "host", "services", "gateway", "k8s", "docker"]
    static let distros = ["alma", "alpine", "arch", "centos", "debian", "devuan", "fedora", "gentoo", "kali", "nixos",
                          "opensuse", "oracle", "rocky", "ubuntu", "void"]
    static let ubuntuVersions: [(String, String)] = [("focal", "20.04"), ("jammy", "22.04"), ("noble", "24.04"),
                                                     ("oracular", "24.10"), ("plucky", "25.04")]

    /// `nil` when the name is acceptable, else the daemon's complaint.
    static func nameProblem(_ name: String) -> String? {
        // The pattern of the daemon: ^[a-zA-Z0-9][a-zA-Z0-9-.]+$ (two characters at least, no `_`).
        let scalars = Array(name.unicodeScalars)
        func ok(_ c: Unicode.Scalar, first: Bool) -> Bool {
            ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) || (!first && (c == "-" || c == "."))
        }
        if scalars.count < 2 || !ok(scalars[0], first: true) || !scalars.dropFirst().allSatisfy({ ok($0, first: false) }) {
            return "invalid machine name: '\(name)'"  // text uncertain (ORBCTL.md gives only the rule)
        }
        if reservedNames.contains(name.lowercased()) { return "machine name '\(name)' is reserved" }  // text uncertain
        return nil
    }

    /// The addresses of the pool: the upper /24 of the /23 subnet, from .10 on.
    static func pool(_ state: SimState) -> [String] {
        let base = state.subnet4.split(separator: "/")[0].split(separator: ".").compactMap { Int($0) }
        guard base.count == 4 else { return [] }
        let upper = "\(base[0]).\(base[1]).\(base[2] + 1)"
        return (0..<min(state.poolSize, 238)).map { "\(upper).\(10 + $0)" }
    }

    /// Leases an address to a machine: its own previous one if still leased to it,
    /// else the first free or expired one; `nil` when the pool is exhausted.
    static func allocate(_ state: inout SimState, machineID: String, now: Date) -> String? {
        let pool = pool(state)
        if let mine = pool.first(where: { state.leases[$0]?.machineID == machineID }) {
            state.leases[mine] = SimLease(machineID: machineID, expiresAt: nil)
            return mine
        }
        for ip in pool {
            if let lease = state.leases[ip] {
                guard let expires = lease.expiresAt, expires <= now else { continue }
            }
            state.leases[ip] = SimLease(machineID: machineID, expiresAt: nil)
            return ip
        }
        return nil
    }

    /// A graceful stop gives the address back at once.
    static func release(_ state: inout SimState, machineID: String) {
        for (ip, lease) in state.leases where lease.machineID == machineID { state.leases[ip] = nil }
    }

    /// Deleting a running machine leaves its lease held until it expires (24 h by default).
    static func abandon(_ state: inout SimState, machineID: String, now: Date) {
        for (ip, lease) in state.leases where lease.machineID == machineID {
            state.leases[ip] = SimLease(machineID: machineID, expiresAt: now.addingTimeInterval(state.leaseSeconds))
        }
    }

    func machineRoot(_ id: String) -> URL { store.machinesDirectory.appendingPathComponent(id).appendingPathComponent("root") }

    /// The directories a machine has of its own.
    static let machineDirectories = ["tmp", "var/lib/repl", "etc/repl", "root", "home", "opt", "srv"]

    func makeMachineRoot(_ id: String, user: String) throws {
        let root = machineRoot(id)
        for d in OrbSim.machineDirectories + ["home/\(user)"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(d), withIntermediateDirectories: true)
        }
        chmod(root.appendingPathComponent("tmp").path, 0o1777)
    }

    // MARK: - Lifecycle verbs

    func create(_ args: [String]) throws -> Int32 {
        let usage = "create [flags] DISTRO[:VERSION] [MACHINE_NAME]"
        let flags = try FlagParser(usage: usage, bools: ["p": "set-password", "": "isolated,isolate-network"],
                                   values: ["a": "arch", "u": "user", "c": "user-data", "-": "cpus,memory,disk"]).parse(args)
        guard (1...2).contains(flags.positional.count) else {
            throw SimExit.usage("accepts between 1 and 2 arg(s), received \(flags.positional.count)", usage)
        }
        var arch = Spec.hostArch
        if let a = flags.values["arch"] {
            guard ["arm64", "amd64"].contains(a) else { throw SimExit(code: 1, stderr: "invalid architecture: \(a)\n") }
            arch = a
        }
        let parts = flags.positional[0].split(separator: ":", maxSplits: 1).map(String.init)
        let distro = parts.first ?? ""
        guard OrbSim.distros.contains(distro) else { throw SimExit(code: 1, stderr: "invalid distro: \(distro)\n") }
        let name = flags.positional.count > 1 ? flags.positional[1] : distro
        var version = parts.count > 1 ? parts[1] : (distro == "ubuntu" ? "noble" : "latest")
        if distro == "ubuntu" {
            // Numeric versions are stored as codenames.
            if let codename = OrbSim.ubuntuVersions.first(where: { $0.1 == version })?.0 { version = codename }
            guard OrbSim.ubuntuVersions.contains(where: { $0.0 == version }) else {
                throw SimExit.daemon("create '\(name)': invalid version: \(version)")  // text uncertain
            }
        }
        if let problem = OrbSim.nameProblem(name) { throw SimExit.daemon("create '\(name)': \(problem)") }
        let env = environment["USER"].flatMap { $0 == "root" || $0.isEmpty ? nil : $0 }
        let user = flags.values["user"] ?? env ?? "ubuntu"
        let bootMilliseconds = latency("create")
        var rng = SystemRandomNumberGenerator()
        let (id, ip) = try store.withState { state -> (String, String?) in
            let now = now(state)
            if state.machines.contains(where: { $0.name == name }) {
                throw SimExit.daemon("create '\(name)': machine already exists: '\(name)'")
            }
            // ULIDs carry real time (see `admin clock advance`); states and leases use the emulator's clock.
            let id = ULID.make(at: Date(), using: &rng)
            let ip = OrbSim.allocate(&state, machineID: id, now: now)
            var settings: [String: String] = [:]
            if flags.bools.contains("isolated") { settings["isolated"] = "true" }
            if flags.bools.contains("isolate-network") { settings["isolate_network"] = "true" }
            for key in ["cpus", "memory", "disk"] { if let v = flags.values[key] { settings[key] = v } }
            state.machines.append(SimMachine(
                id: id, name: name, distro: distro, version: version, arch: arch,
                variant: flags.values["user-data"] == nil ? "default" : "cloud", defaultUsername: user,
                storedState: "starting", transitionAt: now.addingTimeInterval(Double(bootMilliseconds) / 1000), ip4: ip,
                createdAt: now, busyOperation: nil, busyUntil: nil, settings: settings))
            return (id, ip)
        }
        try makeMachineRoot(id, user: user)
        // Blocks until the machine has started, as the real create does.
        sleepMilliseconds(bootMilliseconds)
        guard ip != nil else {
            // No address within the wait: the half-made machine is removed.
            try store.withState { state in state.machines.removeAll { $0.id == id } }
            try? FileManager.default.removeItem(at: store.machinesDirectory.appendingPathComponent(id))
            throw SimExit.daemon("create '\(name)': setup: machine didn't start in 30s (missing IP address)")
        }
        return 0
    }

    /// Resolves every argument, failing on the first unknown one before acting.
    func resolve(_ keys: [String], all: Bool) throws -> [String] {
        let state = try store.read()
        if all || keys.isEmpty { return state.machines.map(\.id) }
        return try keys.map { key in
            guard let i = OrbSim.find(key, in: state) else { throw SimExit.notFound(key) }
            return state.machines[i].id
        }
    }

    func start(_ args: [String]) throws -> Int32 {
        let flags = try FlagParser(usage: "start [flags] [MACHINE...]", bools: ["a": "all"]).parse(args)
        for id in try resolve(flags.positional, all: flags.bools.contains("all")) { try startMachine(id: id) }
        return 0
    }

    /// Starts one machine (no-op when running) and blocks until it runs.
    func startMachine(id: String) throws {
        let boot = latency("start")
        let wait = try store.withState { state -> Int in
            let now = now(state)
            guard let i = state.machines.firstIndex(where: { $0.id == id }) else { throw SimExit.notFound(id) }
            let m = state.machines[i]
            if let op = m.busy(at: now) { throw SimExit.daemon("cannot start: operations are in progress: \(op)") }
            switch m.state(at: now) {
            case "running": return 0
            case "starting": return Int((m.transitionAt ?? now).timeIntervalSince(now) * 1000)
            default: break
            }
            guard let ip = OrbSim.allocate(&state, machineID: id, now: now) else {
                throw SimExit.daemon("start '\(m.name)': setup: machine didn't start in 30s (missing IP address)")
            }
            state.machines[i].ip4 = ip
            state.machines[i].storedState = "starting"
            state.machines[i].transitionAt = now.addingTimeInterval(Double(boot) / 1000)
            return boot
        }
        sleepMilliseconds(wait)
    }

    func stop(_ args: [String]) throws -> Int32 {
        let flags = try FlagParser(usage: "stop [flags] [MACHINE...]", bools: ["a": "all", "f": "force"]).parse(args)
        // With no name the real orbctl stops all of OrbStack: every machine stops.
        for id in try resolve(flags.positional, all: flags.bools.contains("all")) { try stopMachine(id: id) }
        return 0
    }

    /// Stops one machine gracefully (no-op when stopped): its processes end and its address is returned.
    func stopMachine(id: String) throws {
        let grace = latency("stop")
        let changed = try store.withState { state -> Bool in
            let now = now(state)
            guard let i = state.machines.firstIndex(where: { $0.id == id }) else { throw SimExit.notFound(id) }
            let current = state.machines[i].state(at: now)
            guard current != "stopped" && current != "stopping" else { return false }
            state.machines[i].storedState = "stopping"
            state.machines[i].transitionAt = now.addingTimeInterval(Double(grace) / 1000)
            OrbSim.release(&state, machineID: id)
            return true
        }
        guard changed else { return }
        MachineExec.killProcesses(machineID: id, grace: Double(grace) / 1000)
        sleepMilliseconds(grace)
        try store.withState { state in
            if let i = state.machines.firstIndex(where: { $0.id == id }), state.machines[i].storedState == "stopping" {
                state.machines[i].storedState = "stopped"
                state.machines[i].transitionAt = nil
            }
        }
    }

    func restart(_ args: [String]) throws -> Int32 {
        let flags = try FlagParser(usage: "restart [flags] [MACHINE...]", bools: ["a": "all"]).parse(args)
        for id in try resolve(flags.positional, all: flags.bools.contains("all")) {
            try stopMachine(id: id)
            try startMachine(id: id)
        }
        return 0
    }

    func delete(_ args: [String]) throws -> Int32 {
        let usage = "delete [flags] MACHINE..."
        let flags = try FlagParser(usage: usage, bools: ["f": "force"]).parse(args)
        guard !flags.positional.isEmpty else { throw SimExit.usage("no machines specified", usage) }
        let state = try store.read()
        var ids: [String] = []
        for key in flags.positional {
            if !state.machines.contains(where: { $0.name == key }), state.machines.contains(where: { $0.id == key }) {
                // OrbStack 2.2.3 crashes when deleting by id (issue #2671): reproduce it as a failing exit.
                throw SimExit(code: 2, stderr: """
                panic: runtime error: invalid memory address or nil pointer dereference
                [signal SIGSEGV: segmentation violation code=0x2 addr=0x0 pc=0x1024b3c8c]

                goroutine 1 [running]:
                github.com/orbstack/macvirt/scon/cmd/scli/cmd.init.func8(0x140001b4300, {0x14000196a00, 0x1, 0x1})

                """)
            }
            guard let i = OrbSim.find(key, in: state) else { throw SimExit.notFound(key) }
            ids.append(state.machines[i].id)
        }
        if io.stdoutIsTTY && !flags.bools.contains("force") {
            out("Delete \(flags.positional.joined(separator: ", "))? [y/N] ")
            let answer = String(decoding: io.stdin.availableData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard answer.lowercased().hasPrefix("y") else { return 1 }
        }
        for id in ids {
            let wasRunning = try store.withState { state -> Bool in
                let now = now(state)
                guard let i = state.machines.firstIndex(where: { $0.id == id }) else { return false }
                let running = state.machines[i].state(at: now) != "stopped"
                state.machines[i].storedState = "deleting"
                // A running machine is killed: its address stays leased.
                if running { OrbSim.abandon(&state, machineID: id, now: now) } else { OrbSim.release(&state, machineID: id) }
                return running
            }
            if wasRunning { MachineExec.killProcesses(machineID: id, grace: 0) }
            sleepMilliseconds(latency("delete"))
            try store.withState { state in state.machines.removeAll { $0.id == id } }
            try? FileManager.default.removeItem(at: store.machinesDirectory.appendingPathComponent(id))
        }
        return 0
    }

    func clone(_ args: [String]) throws -> Int32 {
        let usage = "clone [flags] SOURCE NEW_NAME"
        let flags = try FlagParser(usage: usage).parse(args)
        guard flags.positional.count == 2 else { throw SimExit.usage("accepts 2 arg(s), received \(flags.positional.count)", usage) }
        let (sourceKey, name) = (flags.positional[0], flags.positional[1])
        let copyTime = latency("clone")
        var rng = SystemRandomNumberGenerator()
        let (sourceID, id) = try store.withState { state -> (String, String) in
            let now = now(state)
            guard let s = OrbSim.find(sourceKey, in: state) else { throw SimExit.notFound(sourceKey) }
            if state.machines.contains(where: { $0.name == name }) { throw SimExit.daemon("machine already exists: '\(name)'") }
            if let problem = OrbSim.nameProblem(name) { throw SimExit.daemon(problem) }
            let until = now.addingTimeInterval(Double(copyTime) / 1000)
            var copy = state.machines[s]
            copy.id = ULID.make(at: Date(), using: &rng)
            copy.name = name
            copy.storedState = "stopped"
            copy.transitionAt = nil
            copy.ip4 = nil
            copy.createdAt = now
            copy.busyOperation = "clone"
            copy.busyUntil = until
            state.machines[s].busyOperation = "clone"
            state.machines[s].busyUntil = until
            state.machines.append(copy)
            return (state.machines[s].id, copy.id)
        }
        // Copy the disk: the machine's own directories, as a real clone copies them.
        let from = store.machinesDirectory.appendingPathComponent(sourceID)
        let to = store.machinesDirectory.appendingPathComponent(id)
        try? FileManager.default.removeItem(at: to)
        do {
            try FileManager.default.copyItem(at: from, to: to)
        } catch {
            try makeMachineRoot(id, user: "ubuntu")
        }
        sleepMilliseconds(copyTime)
        return 0
    }

    func rename(_ args: [String]) throws -> Int32 {
        let usage = "rename [flags] OLD_NAME NEW_NAME"
        let flags = try FlagParser(usage: usage).parse(args)
        guard flags.positional.count == 2 else { throw SimExit.usage("accepts 2 arg(s), received \(flags.positional.count)", usage) }
        let (key, name) = (flags.positional[0], flags.positional[1])
        try store.withState { state in
            let now = now(state)
            guard let i = OrbSim.find(key, in: state) else { throw SimExit.notFound(key) }
            if let op = state.machines[i].busy(at: now) { throw SimExit.daemon("cannot rename: operations are in progress: \(op)") }
            if state.machines.contains(where: { $0.name == name }) { throw SimExit.daemon("machine '\"\(name)\"' already exists") }
            if let problem = OrbSim.nameProblem(name) { throw SimExit.daemon(problem) }
            state.machines[i].name = name  // the id stays the same
        }
        return 0
    }

    // MARK: - Config

    static let globalConfig: [String: String] = [
        "network.subnet4": "192.168.138.0/23", "cpu": "8", "memory_mib": "8192", "rosetta": "true",
        "network_proxy": "auto", "machines.forward_ports": "true", "setup.use_admin": "true",
    ]
    static let machineKeys: Set<String> = ["cpu", "memory_mib", "disk_bytes", "isolated", "forward_ssh_agent", "default_username"]

    func config(_ args: [String]) throws -> Int32 {
        guard let sub = args.first else { throw SimExit.usage("missing subcommand (get, set, show)", "config [command]") }
        switch sub {
        case "get":
            guard args.count == 2 else { throw SimExit.usage("accepts 1 arg(s), received \(args.count - 1)", "config get KEY") }
            let state = try store.read()
            guard let value = try configValue(args[1], state: state) else { throw SimExit(code: 1, stderr: "Unknown configuration key: \(args[1])\n") }
            out(value + "\n")
        case "set":
            guard args.count == 3 else { throw SimExit.usage("accepts 2 arg(s), received \(args.count - 1)", "config set KEY VALUE") }
            let (key, value) = (args[1], args[2])
            try store.withState { state in
                guard try configValue(key, state: state) != nil else { throw SimExit(code: 1, stderr: "Unknown configuration key: \(key)\n") }
                if key == "network.subnet4" {
                    guard OrbSim.isSlash23(value) else { throw SimExit(code: 1, stderr: "invalid subnet: \(value) (must be an IPv4 /23)\n") }
                    if value != state.subnet4 {
                        // A subnet pivot drops every lease not held by a running machine: the
                        // recovery that scaffold/scripts/orbstack-reset-networking.sh relies on.
                        let now = now(state)
                        let running = Set(state.machines.filter { $0.state(at: now) == "running" }.map(\.id))
                        state.leases = state.leases.filter { $0.value.expiresAt == nil && running.contains($0.value.machineID) }
                        state.subnet4 = value
                    }
                } else if key.hasPrefix("machine.") {
                    let parts = key.split(separator: ".")
                    if let i = state.machines.firstIndex(where: { $0.name == parts[1] }) {
                        state.machines[i].settings[String(parts[2])] = value
                    }
                } else {
                    state.config[key] = value
                }
            }
        case "show":
            let state = try store.read()
            for key in OrbSim.globalConfig.keys.sorted() { out("\(key): \(try configValue(key, state: state) ?? "")\n") }
        default:
            throw SimExit.usage("unknown command \"\(sub)\" for \"orbctl config\"", "config [command]")
        }
        return 0
    }

    /// The value of a key, or `nil` when the key is unknown (or names no machine).
    func configValue(_ key: String, state: SimState) throws -> String? {
        if key == "network.subnet4" { return state.subnet4 }
        if key.hasPrefix("machine.") {
            let parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 3, OrbSim.machineKeys.contains(parts[2]) else { return nil }
            guard let m = state.machines.first(where: { $0.name == parts[1] }) else { throw SimExit.notFound(parts[1]) }
            if let v = m.settings[parts[2]] { return v }
            switch parts[2] {
            case "cpu": return "0"
            case "memory_mib": return "0"
            case "disk_bytes": return String(m.diskSize)
            case "default_username": return m.defaultUsername
            case "forward_ssh_agent": return "true"
            default: return "false"
            }
        }
        if let v = state.config[key] { return v }
        return OrbSim.globalConfig[key]
    }

    static func isSlash23(_ text: String) -> Bool {
        let parts = text.split(separator: "/")
        guard parts.count == 2, parts[1] == "23" else { return false }
        let octets = parts[0].split(separator: ".", omittingEmptySubsequences: false).compactMap { UInt8($0) }
        return octets.count == 4 && octets[2] % 2 == 0 && octets[3] == 0
    }

    // MARK: - Shims

    /// `poweroff`, `shutdown`, `halt`, `reboot`, `systemctl`, `hostname` inside a machine.
    func shim(_ args: [String]) throws -> Int32 {
        guard let tool = args.first, let id = environment["ORBSIM_MACHINE"] else {
            throw SimExit(code: 1, stderr: "orbctl-sim: shims only work inside an emulated machine\n")
        }
        let rest = Array(args.dropFirst())
        let state = try store.read()
        guard let machine = state.machines.first(where: { $0.id == id }) else { return 1 }
        switch tool {
        case "hostname":
            if rest.contains("-I") || rest.contains("--all-ip-addresses") || rest.contains("-i") {
                out((machine.ip4 ?? "") + " \n")
            } else if rest.isEmpty || rest == ["-s"] || rest == ["-f"] {
                out(machine.name + "\n")
            } else {
                throw SimExit(code: 1, stderr: "hostname: you must be root to change the host name\n")
            }
            return 0
        case "systemctl":
            guard let verb = rest.first(where: { !$0.hasPrefix("-") }), ["poweroff", "halt", "reboot", "kexec"].contains(verb) else {
                throw SimExit(code: 1, stderr: "System has not been booted with systemd as init system (PID 1). Can't operate.\n")
            }
            fallthrough
        default:
            // poweroff, shutdown, halt, reboot, init, telinit: stop the emulated machine, never the host.
            try stopMachine(id: id)
            return 0
        }
    }
}

/// A small cobra/pflag-like flag parser: `-a x`, `-a=x`, `--arch x`, `--arch=x`,
/// grouped short booleans (`-rq`), and flags anywhere among the arguments.
struct FlagParser {
    var usage: String
    /// short letter → long name; a key of "" or "-" lists long-only names separated by commas.
    var bools: [String: String] = [:]
    var values: [String: String] = [:]

    struct Result {
        var bools: Set<String> = []
        var values: [String: String] = [:]
        var positional: [String] = []
    }

    func expand(_ table: [String: String]) -> (short: [Character: String], long: Set<String>) {
        var short: [Character: String] = [:]
        var long: Set<String> = []
        for (k, v) in table {
            for name in v.split(separator: ",").map(String.init) {
                long.insert(name)
                if k.count == 1, k != "-", let c = k.first { short[c] = name }
            }
        }
        return (short, long)
    }

    func parse(_ args: [String]) throws -> Result {
        let (boolShort, boolLong) = expand(bools)
        let (valueShort, valueLong) = expand(values)
        var result = Result()
        var i = 0
        while i < args.count {
            let arg = args[i]
            i += 1
            if arg == "--" {
                result.positional += args[i...]
                break
            }
            if arg.hasPrefix("--") {
                let body = arg.dropFirst(2)
                let name = String(body.split(separator: "=", maxSplits: 1)[0])
                let inline = body.contains("=") ? String(body.split(separator: "=", maxSplits: 1).dropFirst().first ?? "") : nil
                if boolLong.contains(name) {
                    if inline == nil || inline == "true" { result.bools.insert(name) }
                } else if valueLong.contains(name) {
                    if let inline { result.values[name] = inline } else {
                        guard i < args.count else { throw SimExit.usage("flag needs an argument: --\(name)", usage) }
                        result.values[name] = args[i]
                        i += 1
                    }
                } else {
                    throw SimExit.usage("unknown flag: --\(name)", usage)
                }
            } else if arg.hasPrefix("-") && arg.count > 1 {
                var chars = Array(arg.dropFirst())
                while let c = chars.first {
                    chars.removeFirst()
                    if let name = boolShort[c] {
                        result.bools.insert(name)
                    } else if let name = valueShort[c] {
                        var rest = String(chars)
                        if rest.hasPrefix("=") { rest.removeFirst() }
                        if !rest.isEmpty { result.values[name] = rest } else {
                            guard i < args.count else { throw SimExit.usage("flag needs an argument: '\(c)' in -\(c)", usage) }
                            result.values[name] = args[i]
                            i += 1
                        }
                        break
                    } else {
                        throw SimExit.usage("unknown shorthand flag: '\(c)' in \(arg)", usage)
                    }
                }
            } else {
                result.positional.append(arg)
            }
        }
        return result
    }
}
