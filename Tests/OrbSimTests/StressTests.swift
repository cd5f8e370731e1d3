import Foundation
import ReplTestSupport
import Testing

@testable import OrbSim

/// Concurrency and address-pool churn.
@Suite(.emulatorOnly, .serialized) struct StressTests {
    /// 32 concurrent invocations mixing create, list, clone, stop and delete, 20 times:
    /// no lost machine, no duplicate name, no address leased twice.
    @Test func concurrentInvocationsLeaveAConsistentState() async throws {
        let sim = try SimHarness()
        for round in 0..<20 {
            try await sim.run(["admin", "reset"])
            for i in 0..<4 { try await sim.run(["create", "ubuntu", "seed\(i)"]) }
            let commands: [[String]] = (0..<32).map { i in
                switch i % 8 {
                case 0, 1: return ["create", "ubuntu", "c\(round)-\(i)"]
                case 2: return ["list", "-f", "json"]
                case 3: return ["clone", "seed\(i % 4)", "k\(round)-\(i)"]
                case 4: return ["stop", "seed\(i % 4)"]
                case 5: return ["delete", "-f", "seed\(i % 4)"]
                case 6: return ["create", "ubuntu", "dup\(round)"]  // four callers race for one name
                default: return ["start", "seed\(i % 4)"]
                }
            }
            let results = ResultBox()
            await withTaskGroup(of: Void.self) { group in
                for i in commands.indices {
                    group.addTask { results.set(i, (try? await sim.run(commands[i]))?.exitCode ?? -1) }
                }
            }
            let state = try sim.store().read()
            let names = state.machines.map(\.name)
            #expect(Set(names).count == names.count, "duplicate names: \(names)")
            // Every successful create and clone left its machine.
            for (i, cmd) in commands.enumerated() where results.get(i) == 0 && (cmd[0] == "create" || cmd[0] == "clone") {
                #expect(names.contains(cmd.last!), "\(cmd) succeeded but its machine is missing")
            }
            // Exactly one of the racing creates of one name won.
            let dupWins = commands.indices.filter { commands[$0] == ["create", "ubuntu", "dup\(round)"] && results.get($0) == 0 }
            #expect(dupWins.count == 1)
            // No address is leased to two machines, and every running machine's address is its own.
            let now = Date().addingTimeInterval(state.clockOffset)
            var owners: [String: String] = [:]
            for m in state.machines where m.state(at: now) == "running" {
                let ip = try #require(m.ip4)
                #expect(owners[ip] == nil, "\(ip) is held by \(owners[ip] ?? "") and \(m.name)")
                owners[ip] = m.name
                #expect(state.leases[ip]?.machineID == m.id)
            }
        }
    }

    /// With a pool of 16 addresses, deleting running machines exhausts it; stopping first does not.
    @Test func churnExhaustsThePoolOnlyWithoutGracefulStops() async throws {
        let sim = try SimHarness()
        try await sim.run(["admin", "ip-pool", "16"])
        var failure: SimHarness.Output?
        for i in 0..<40 {
            let out = try await sim.run(["create", "ubuntu", "churn\(i)"])
            if out.exitCode != 0 { failure = out; break }
            try await sim.run(["delete", "-f", "churn\(i)"])
        }
        let exhausted = try #require(failure, "40 create + delete -f cycles did not exhaust a pool of 16")
        #expect(exhausted.stderr.hasSuffix("setup: machine didn't start in 30s (missing IP address)\n"))

        try await sim.run(["admin", "reset"])
        try await sim.run(["admin", "ip-pool", "16"])
        for i in 0..<40 {
            let out = try await sim.run(["create", "ubuntu", "graceful\(i)"])
            #expect(out.exitCode == 0, "cycle \(i): \(out.stderr)")
            try await sim.run(["stop", "graceful\(i)"])
            try await sim.run(["delete", "-f", "graceful\(i)"])
        }
    }
}

final class ResultBox: @unchecked Sendable {
    private var values: [Int: Int32] = [:]
    private let lock = NSLock()
    func set(_ i: Int, _ v: Int32) { lock.lock(); values[i] = v; lock.unlock() }
    func get(_ i: Int) -> Int32? { lock.lock(); defer { lock.unlock() }; return values[i] }
}
