import Foundation
import ReplCore

/// `orbctl-sim admin …`: fault injection and inspection for tests, benchmarks and demos.
struct SimAdmin {
    let sim: OrbSim

    static let help = """
        orbctl-sim admin: fault injection and inspection

          admin fail VERB [--times N] [--message TEXT]  the next N calls of VERB fail (exit 1) with TEXT on stderr
          admin hang VERB [--times N]                   the next N calls of VERB never return
          admin latency VERB MILLISECONDS               each call of VERB takes that long (VERB may be `all`);
                                                        create/clone latency is the boot/copy time
          admin ip-pool SIZE [--lease DURATION]         address pool size (1-238) and lease time (default 24h)
          admin clock advance DURATION                  move the emulator's clock forward (ages, leases, boots)
          admin calls [--json] [--reset]                calls of each verb so far, from the call log
          admin version X.Y.Z                           the OrbStack version emulated (older ones lack newer flags)
          admin reset                                   no machines, default settings, empty call log

        DURATION: milliseconds or 90s, 10m, 2h, 1d.

        """

    func run(_ args: [String]) throws -> Int32 {
        guard let verb = args.first else { sim.out(SimAdmin.help); return 0 }
        let rest = Array(args.dropFirst())
        switch verb {
        case "fail":
            let f = try FlagParser(usage: "admin fail VERB [--times N] [--message TEXT]", values: ["-": "times,message"]).parse(rest)
            guard f.positional.count == 1 else { throw usage("admin fail VERB [--times N] [--message TEXT]") }
            let times = try count(f.values["times"])
            try sim.store.withState { $0.failures[f.positional[0]] = SimFault(remaining: times, message: f.values["message"]) }
        case "hang":
            let f = try FlagParser(usage: "admin hang VERB [--times N]", values: ["-": "times"]).parse(rest)
            guard f.positional.count == 1 else { throw usage("admin hang VERB [--times N]") }
            let times = try count(f.values["times"])
            try sim.store.withState { $0.hangs[f.positional[0]] = times }
        case "latency":
            guard rest.count == 2, let ms = Int(rest[1]), ms >= 0 else { throw usage("admin latency VERB MILLISECONDS") }
            try sim.store.withState { state in
                if rest[0] == "all" {
                    for key in SimState.defaultLatencies.keys { state.latencies[key] = ms }
                } else {
                    state.latencies[rest[0]] = ms
                }
            }
        case "ip-pool":
            let f = try FlagParser(usage: "admin ip-pool SIZE [--lease DURATION]", values: ["-": "lease"]).parse(rest)
            guard f.positional.count == 1, let size = Int(f.positional[0]), (1...238).contains(size) else {
                throw usage("admin ip-pool SIZE [--lease DURATION]   (SIZE 1-238)")
            }
            let lease = try f.values["lease"].map(duration)
            try sim.store.withState { state in
                state.poolSize = size
                if let lease { state.leaseSeconds = lease.seconds }
            }
        case "clock":
            guard rest.count == 2, rest[0] == "advance" else { throw usage("admin clock advance DURATION") }
            let span = try duration(rest[1])
            try sim.store.withState { state in
                state.clockOffset += span.seconds
                // Observers read a machine's age from its ULID against their own clock, so the
                // machines that exist now carry a creation time moved back by the same amount.
                for i in state.machines.indices {
                    state.machines[i].id = SimAdmin.shift(state.machines[i].id, back: span.seconds)
                    state.machines[i].createdAt -= span.seconds
                }
                for (ip, lease) in state.leases {
                    if let m = state.machines.first(where: { SimAdmin.randomPart($0.id) == SimAdmin.randomPart(lease.machineID) }) {
                        state.leases[ip]?.machineID = m.id
                    }
                }
            }
        case "calls":
            let f = try FlagParser(usage: "admin calls [--json] [--reset]", bools: ["-": "json,reset"]).parse(rest)
            var counts: [String: Int] = [:]
            for call in sim.store.calls() { counts[call.verb, default: 0] += 1 }
            if f.bools.contains("json") {
                let fields = counts.keys.sorted().map { ($0, GoJSON.int(Int64(counts[$0]!))) }
                sim.out(GoJSON.object([("total", .int(Int64(counts.values.reduce(0, +)))), ("verbs", .object(fields))]).rendered())
            } else {
                for verb in counts.keys.sorted() { sim.out("\(verb) \(counts[verb]!)\n") }
                sim.out("total \(counts.values.reduce(0, +))\n")
            }
            if f.bools.contains("reset") { try? FileManager.default.removeItem(at: sim.store.callLogURL) }
        case "version":
            guard rest.count == 1, rest[0].wholeMatch(of: /[0-9]+\.[0-9]+\.[0-9]+/) != nil else { throw usage("admin version X.Y.Z") }
            try sim.store.withState { $0.version = rest[0] == OrbSim.version ? nil : rest[0] }
        case "reset":
            let machines = (try? sim.store.read().machines) ?? []
            for m in machines { MachineBoot(sim: sim).halt(m.key, grace: 0) }
            try sim.store.withState { $0 = sim.store.initial }
            sim.store.removeTree(sim.store.machinesDirectory)
            try? FileManager.default.removeItem(at: sim.store.callLogURL)
        case "help", "-h", "--help":
            sim.out(SimAdmin.help)
        default:
            throw SimExit(code: 1, stderr: "Error: unknown admin command \"\(verb)\"\n\(SimAdmin.help)")
        }
        return 0
    }

    static func randomPart(_ ulid: String) -> Substring { ulid.dropFirst(10) }

    /// The same ULID with its time moved back (the random part kept).
    static func shift(_ ulid: String, back seconds: Double) -> String {
        guard let time = ULID.timestamp(of: ulid) else { return ulid }
        var rng = SystemRandomNumberGenerator()
        let moved = ULID.make(at: time.addingTimeInterval(-seconds), using: &rng)
        return String(moved.prefix(10)) + ulid.dropFirst(10)
    }

    func usage(_ text: String) -> SimExit { SimExit(code: 1, stderr: "usage: orbctl-sim \(text)\n") }

    func count(_ text: String?) throws -> Int {
        guard let text else { return 1 }
        guard let n = Int(text), n >= 1 else { throw SimExit(code: 1, stderr: "--times must be a whole number of at least 1\n") }
        return n
    }

    func duration(_ text: String) throws -> TimeSpan {
        guard let span = TimeSpan(parsing: text) else {
            throw SimExit(code: 1, stderr: "\"\(text)\" is not a duration (use 90s, 10m, 2h or milliseconds)\n")
        }
        return span
    }
}
