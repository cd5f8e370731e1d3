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

    /// The version `orbctl version` reports: `admin version`'s, else ``version``.
    var emulatedVersion: String { (try? store.read())?.version ?? OrbSim.version }

    /// As `orbctl version` numbers it: major·10⁶ + minor·10⁴ + patch·100.
    static func number(of version: String) -> Int {
        let p = version.split(separator: ".").map { Int($0) ?? 0 } + [0, 0, 0]
        return p[0] * 1_000_000 + p[1] * 10_000 + p[2] * 100
    }

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
        // The home as the file system names it: machines hide it by that path (a link's path
        // would leave the real one in view under /mnt/mac).
        if let h = environment["ORBSIM_HOME"], !h.isEmpty { return URL(fileURLWithPath: h).resolvingSymlinksInPath() }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return URL(fileURLWithPath: home).appendingPathComponent(".orbsim").resolvingSymlinksInPath()
    }

    /// The emulator's clock: real time plus the offset set by `admin clock advance`.
    func now(_ state: SimState) -> Date { Date().addingTimeInterval(state.clockOffset) }

    /// The emulator's own helpers, run by its machines (an init, a session, a shim): any
    /// binary that embeds the emulator must hand these to it.
    public static let helperVerbs: Set<String> = ["__init", "__shim", "__cloudinit", "__halted"]

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
        if !isInternal { finishAbandonedDeletes() }
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
        if verb == "__init" { return MachineBoot.initMain(args, sim: self) }
        if verb == "__halted" { return MachineBoot.haltedMain(args, sim: self) }
        if verb == "__shim" { return try shim(args) }
        if verb == "__cloudinit" { return CloudInit.main(args, sim: self) }
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
        case "push": return try MachineFiles(sim: self).push(args)
        case "pull": return try MachineFiles(sim: self).pull(args)
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
}
