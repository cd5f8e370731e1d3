import Foundation
import ReplCore
import ReplTestSupport
import Testing

@testable import OrbSim

/// `orbctl-sim admin`: fault injection and inspection.
@Suite(.emulatorOnly, .serialized) struct AdminTests {
    @Test func failMakesTheNextCallsFail() async throws {
        let sim = try SimHarness()
        try await sim.run(["admin", "fail", "list", "--times", "2", "--message", "[-32098] boom"])
        for _ in 0..<2 {
            let out = try await sim.run(["list", "-f", "json"])
            #expect(out.exitCode == 1 && out.stderr == "[-32098] boom\n" && out.stdout.isEmpty)
        }
        await #expect(try sim.run(["list", "-f", "json"]).exitCode == 0)
        try await sim.run(["admin", "fail", "create"])
        let create = try await sim.run(["create", "ubuntu", "m1"])
        #expect(create.exitCode == 1 && create.stderr.hasPrefix("[-32098] create:"))
        await #expect(try sim.machines().isEmpty)
    }

    @Test func hangNeverReturns() async throws {
        let sim = try SimHarness()
        try await sim.run(["admin", "hang", "list"])
        let start = Date()
        let out = try await sim.run(["list"], timeout: 1)
        #expect(out.exitCode == 137)
        #expect(Date().timeIntervalSince(start) >= 1)
        await #expect(try sim.run(["list"], timeout: 30).exitCode == 0)  // only the next call (30 s: a loaded machine is slow, a hang is for ever)
    }

    @Test func latencySlowsAVerb() async throws {
        let sim = try SimHarness()
        try await sim.run(["admin", "latency", "list", "400"])
        let start = Date()
        try await sim.run(["list"])
        #expect(Date().timeIntervalSince(start) >= 0.4)
    }

    @Test func clockAdvanceAgesMachinesAndExpiresLeases() async throws {
        let sim = try SimHarness()
        try await sim.run(["admin", "ip-pool", "2", "--lease", "1h"])
        try await sim.run(["create", "ubuntu", "m1"])
        try await sim.run(["delete", "-f", "m1"])  // killed while running: its lease stays
        try await sim.run(["create", "ubuntu", "old"])
        await #expect(try sim.run(["create", "ubuntu", "m2"]).exitCode == 1)
        try await sim.run(["admin", "clock", "advance", "61m"])
        await #expect(try sim.run(["create", "ubuntu", "m2"]).exitCode == 0)  // the lease expired
        // A machine that existed before the advance is 61 minutes older to anyone reading its ULID.
        let id = try await #require(try sim.machines().first { $0["name"] as? String == "old" }?["id"] as? String)
        let created = try #require(ULID.timestamp(of: id))
        #expect(created.timeIntervalSinceNow < -3600)
    }

    @Test func callsAreCountedPerVerb() async throws {
        let sim = try SimHarness()
        try await sim.run(["admin", "calls", "--reset"])
        try await sim.run(["create", "ubuntu", "m1"])
        try await sim.run(["list"])
        try await sim.run(["ls", "-q"])
        try await sim.run(["info", "ghost"])
        let out = try await sim.run(["admin", "calls", "--json"])
        let json = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]
        #expect(json?["total"] as? Int == 4)
        #expect(json?["verbs"] as? [String: Int] == ["create": 1, "list": 2, "info": 1])
        let calls = sim.store().calls()
        #expect(calls.map(\.exitCode) == [0, 0, 0, 1])
        #expect(calls.first?.argv == ["create", "ubuntu", "m1"])
        try await sim.run(["admin", "calls", "--reset"])
        #expect(sim.store().calls().isEmpty)
    }

    @Test func resetForgetsEverything() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        try await sim.run(["admin", "latency", "list", "999"])
        try await sim.run(["admin", "reset"])
        await #expect(try sim.machines().isEmpty)
        #expect(try sim.store().read().latencies["list"] == SimState.fastLatencies["list"])
    }
}
