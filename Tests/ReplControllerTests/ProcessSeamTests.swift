import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import OrbStack
@testable import ReplController

/// The controller's limits apply at the process seam (#21): what `--concurrency` bounds and
/// what a tick reports as its orbctl calls are orbctl processes, not provider operations.
@Suite(.serialized) struct ProcessSeamTests {
    /// The emulator's call log since its last reset: each orbctl process, in order of its start.
    func callLog(_ w: World) throws -> [(verb: String, at: Int, ms: Int)] {
        let log = try String(contentsOf: w.root.appendingPathComponent("sim/calls.jsonl"), encoding: .utf8)
        return log.split(separator: "\n").compactMap { line in
            guard let call = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let verb = (call["argv"] as? [String])?.first, let at = call["at"] as? Int, let ms = call["ms"] as? Int
            else { return nil }
            return (verb, at, ms)
        }.sorted { $0.at < $1.at }
    }

    func orphans(_ w: World, count: Int) async throws -> [String] {
        let cid = try w.store.controlID()
        let names = (0..<count).map { "repl-\(cid)-none-p\($0)" }
        for name in names { try await w.sim(["create", "ubuntu", name]) }
        try await w.sim(["admin", "clock", "advance", "10m"])
        try await w.sim(["admin", "calls", "--reset"])
        return names
    }

    /// A delete is two orbctl processes (stop, then delete): a tick that sweeps three orphans
    /// reports the seven processes it ran (one list, three of each), as the emulator counted them.
    @Test func aTicksCallsAreTheOrbctlProcessesItRan() async throws {
        let w = try World(inProcess: true)
        _ = try await orphans(w, count: 3)
        let report = await w.controller.tick()
        let log = try callLog(w)
        #expect(!report.failed)
        #expect(try w.machines().isEmpty)
        #expect(log.map(\.verb).sorted() == ["delete", "delete", "delete", "list", "stop", "stop", "stop"])
        #expect(report.calls == log.count, "the tick reported \(report.calls) calls; orbctl ran \(log.count)")
    }

    /// A clone from a snapshot is three or more processes (clone, start, info until it runs),
    /// a launch and a log read more: over the ticks that take a snapshot and clone two runs from
    /// it, the calls the ticks report are the processes orbctl ran.
    @Test(.machineCommands) func cloningTicksReportEveryProcess() async throws {
        let w = try World(inProcess: true)
        let yaml = try String(contentsOf: SchemaPaths.examples.appendingPathComponent("snapshot-then-clone.yaml"), encoding: .utf8)
        try w.apply(yaml)
        try await w.sim(["admin", "calls", "--reset"])
        var reported = 0
        // Generous: on a loaded machine (CI beside other builds) the snapshot and two clones took
        // more than a minute.
        let deadline = Date().addingTimeInterval(240)
        while try w.run("fast").phase != .succeeded, Date() < deadline {
            reported += await w.controller.tick().calls
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        let log = try callLog(w)
        #expect(try w.run("fast").phase == .succeeded)
        #expect(log.filter { $0.verb == "clone" }.count == 3, "one snapshot, two clones: \(log.map(\.verb))")
        #expect(reported == log.count, "the ticks reported \(reported) calls; orbctl ran \(log.count)")
    }

    /// With one light permit, a delete's grace between its stop and its delete holds none: the
    /// other orphans' stops go while the first waits out its grace.
    @Test func aDeletesGraceHoldsNoPermit() async throws {
        let w = try World(inProcess: true)
        let names = try await orphans(w, count: 3)
        var client = OrbctlClient(command: OrbctlCommand(executable: w.orbctl), runner: SystemProcessRunner(environment: w.environment))
        client.deleteGrace = 1.5
        var settings = w.controller.settings
        settings.rpcConcurrency = 1
        let controller = Controller(store: w.store, provider: OrbStackProvider(client: client), settings: settings)
        let report = await controller.tick()
        let log = try callLog(w).filter { $0.verb != "list" }
        #expect(!report.failed)
        #expect(try w.machines().isEmpty)
        #expect(log.count == 2 * names.count)
        // One light process at a time, and every stop before the first delete.
        for (a, b) in zip(log, log.dropFirst()) { #expect(a.at + a.ms <= b.at, "\(a.verb) and \(b.verb) overlapped") }
        #expect(log.prefix(names.count).allSatisfy { $0.verb == "stop" }, "\(log.map(\.verb))")
    }
}

/// The limits and the controller's gate, without orbctl: what a call that waits for its permit
/// is told once a call before it failed.
@Suite struct CallLimitsTests {
    actor Ran {
        var calls: [String] = []
        func add(_ call: String) { calls.append(call) }
    }

    /// One call under the limits: the error it ended with, or nil.
    static func attempt(_ limits: CallLimits, _ lane: CallLane, _ body: @Sendable () async throws(ProviderError) -> Void) async -> ProviderError? {
        do {
            try await limits.run(lane, body)
            return nil
        } catch {
            return error
        }
    }

    static func failing(_ error: ProviderError) -> @Sendable () async throws(ProviderError) -> Void {
        { () async throws(ProviderError) in throw error }
    }

    /// With one permit, an unusable orbctl seen by the first call ends the tick before the
    /// permit goes to the second, which is then not made.
    @Test func aFailureThatEndsTheTickStopsTheCallWaitingForItsPermit() async throws {
        let limits = CallLimits(heavy: 1, light: 1, gate: BreakerGate())
        let ran = Ran()
        let entered = AsyncStream<Void>.makeStream()
        let go = AsyncStream<Void>.makeStream()
        let first = Task {
            await Self.attempt(limits, .heavy) { () async throws(ProviderError) in
                await ran.add("first")
                entered.continuation.yield()
                for await _ in go.stream { break }
                throw ProviderError(.unavailable, "orbctl is not usable: $HOME is not defined")
            }
        }
        for await _ in entered.stream { break }
        let second = Task { await Self.attempt(limits, .heavy) { () async throws(ProviderError) in await ran.add("second") } }
        while await limits.calls < 2 { await Task.yield() }  // the second waits for the permit
        go.continuation.yield()
        #expect(await first.value?.kind == .unavailable)
        let refused = await second.value
        #expect(refused?.kind == .heldBack && refused?.message.hasPrefix("not attempted this tick") == true, "\(String(describing: refused))")
        #expect(await ran.calls == ["first"])
    }

    /// An exhausted pool met by one create shuts the gate for the create waiting behind it,
    /// but not for a call that takes no address.
    @Test func anExhaustionShutsTheGateForAddressTakingCallsOnly() async throws {
        let limits = CallLimits(heavy: 1, light: 1, gate: BreakerGate())
        let failed = await Self.attempt(limits, .addressTaking, Self.failing(ProviderError(.addressExhausted, "missing IP address")))
        #expect(failed?.kind == .addressExhausted)
        let create = await Self.attempt(limits, .addressTaking) { () async throws(ProviderError) in }
        #expect(create?.kind == .heldBack)
        let copy = await Self.attempt(limits, .heavy) { () async throws(ProviderError) in }
        #expect(copy == nil)
    }
}
