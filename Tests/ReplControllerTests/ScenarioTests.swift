import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import OrbStack
@testable import ReplController

/// Ticks against the emulator; each test asserts the world (machines and store rows).
@Suite(.serialized) struct ScenarioTests {
    func names(_ w: World) async throws -> Set<String> { Set(try w.machines().map(\.name)) }

    @Test(.machineCommands)
    func threeReplicasConvergeThenScaleToOne() async throws {
        let w = try World(inProcess: true)
        try w.apply("kind: Run\nname: web\ncommand: sleep 600\nreplicas: 3\n")
        try await w.tick { try w.wanted(w.run("web")).allSatisfy { $0.phase == .running } && w.machines().count == 3 }
        #expect(try w.machines().allSatisfy { $0.state == .running })
        try w.apply("kind: Run\nname: web\ncommand: sleep 600\nreplicas: 1\n")
        try await w.tick { try w.machines().count == 1 }
        let run = try w.run("web")
        #expect(w.wanted(run).count == 1)
        #expect(run.instances.filter(\.retired).count == 2)
        #expect(
            try w.machines().first?.name
                == Planner.machineName(PlannerSettings(controlID: w.store.controlID()), run: run.id, instance: w.wanted(run)[0].id).description)
    }

    @Test(.machineCommands)
    func aChangedCommandReplacesTheMachines() async throws {
        let w = try World(inProcess: true)
        try w.apply("kind: Run\nname: a\ncommand: sleep 600\n")
        try await w.tick { try w.wanted(w.run("a")).first?.phase == .running }
        let before = try await names(w)
        try w.apply("kind: Run\nname: a\ncommand: sleep 601\n")
        try await w.tick { try w.wanted(w.run("a")).first?.phase == .running && w.machines().count == 1 }
        let after = try await names(w)
        #expect(before.count == 1 && after.count == 1 && before != after)
        #expect(try w.run("a").generation == 2)
    }

    @Test(.machineCommands)
    func anUnchangedReapplyIsANoOp() async throws {
        let w = try World(inProcess: true)
        try w.apply("kind: Run\nname: a\ncommand: sleep 600\n")
        try await w.tick { try w.wanted(w.run("a")).first?.phase == .running }
        let rowsBefore = try w.store.runs().map(\.run)
        try w.apply("kind: Run\nname: a\ncommand: sleep 600\n")
        let report = await w.controller.tick()
        #expect(report.plan?.actions.isEmpty == true)
        #expect(try w.store.runs().map(\.run) == rowsBefore)
    }

    @Test(.machineCommands)
    func aConvergedIdleTickMakesExactlyOneOrbctlCall() async throws {
        let w = try World(inProcess: true)
        try w.apply("kind: Run\nname: idle\nreplicas: 2\n")  // no command: machines stay up
        try await w.tick { try w.wanted(w.run("idle")).allSatisfy { $0.phase == .running } }
        w.controller.settings.probeInterval = 3600
        _ = await w.controller.tick()
        try await w.sim(["admin", "calls", "--reset"])
        let report = await w.controller.tick()
        #expect(report.outcomes.isEmpty)
        let calls = try await JSONSerialization.jsonObject(with: w.sim(["admin", "calls", "--json"]).stdout) as? [String: Any]
        #expect(calls?["total"] as? Int == 1)
        #expect(calls?["verbs"] as? [String: Int] == ["list": 1])
    }

    @Test(.machineCommands) func aCommandPastItsDeadlineEndsTimedOutWithItsMachineGone() async throws {
        let w = try World(inProcess: true)
        try w.apply("kind: Run\nname: slow\ncommand: sleep 60\nmaxDuration: 2s\n")
        try await w.tick(until: { try w.run("slow").phase.isTerminal && w.machines().isEmpty }, seconds: 30)
        #expect(try w.run("slow").phase == .timedOut)
    }

    @Test(.machineCommands)
    func aCancelledRunLosesItsMachine() async throws {
        let w = try World(inProcess: true)
        try w.apply("kind: Run\nname: c\ncommand: sleep 600\n")
        try await w.tick { try w.wanted(w.run("c")).first?.phase == .running }
        try w.store.cancel(run: try w.run("c").id)
        try await w.tick { try w.machines().isEmpty }
        #expect(try w.run("c").phase == .cancelled)
    }

    @Test(.machineCommands)
    func aSnapshotThenACloneFromItWorks() async throws {
        let w = try World(inProcess: true)
        let yaml = try String(contentsOf: SchemaPaths.examples.appendingPathComponent("snapshot-then-clone.yaml"), encoding: .utf8)
        try w.apply(yaml)
        try await w.tick(until: { try w.run("fast").phase == .succeeded }, seconds: 60)
        let snap = try require(try w.store.snapshots().first)
        #expect(snap.createdAt != nil)
        let snapMachine = try w.machines().first { MachineName(parsing: $0.name)?.instanceID == snap.instanceID }
        #expect(snapMachine?.state == .stopped)
        // The clones saw what the base's bootstrap prepared.
        let log = try String(
            contentsOf: Controller.logFile(
                w.controller.settings.logsDirectory, run: "fast",
                instance: w.wanted(w.run("fast"))[0].id), encoding: .utf8)
        #expect(log == "prepared once\n")
    }

    @Test(.machineCommands)
    func aFailingBootstrapDoesNotFailTheRunAndLogsSurviveTheMachine() async throws {
        let w = try World(inProcess: true)
        try w.apply("kind: Run\nname: b\nbootstrap: exit 5\ncommand: echo still ran\n")
        try await w.tick { try w.run("b").phase.isTerminal && w.machines().isEmpty }
        let run = try w.run("b")
        #expect(run.phase == .succeeded)
        let logs = w.controller.settings.logsDirectory
        #expect(try String(contentsOf: Controller.logFile(logs, run: "b", instance: run.instances[0].id), encoding: .utf8) == "still ran\n")
        #expect(
            try String(contentsOf: Controller.logFile(logs, run: "b", instance: run.instances[0].id, bootstrap: true), encoding: .utf8)
                .contains("bootstrap exited 5"))
    }

    @Test func aFailedListMakesTheTickANoOp() async throws {
        let w = try World(inProcess: true)
        try w.apply("kind: Run\nname: a\n")
        try await w.sim(["admin", "fail", "list"])
        let report = await w.controller.tick()
        #expect(report.observationError != nil && report.outcomes.isEmpty)
        #expect(try w.machines().isEmpty && w.run("a").instances.isEmpty)
    }

    @Test(.machineCommands)
    func exhaustionOpensTheBreaker() async throws {
        let w = try World(inProcess: true)
        try await w.sim(["admin", "ip-pool", "1"])
        try await w.sim(["create", "ubuntu", "someone-else"])
        try w.apply("kind: Run\nname: a\nreplicas: 2\n")
        var creates: [Int] = []
        for _ in 0..<20 {
            let report = await w.controller.tick()
            creates.append(report.outcomes.filter { if case .create = $0.action { return true } else { return false } }.count)
        }
        // The first tick's two concurrent creates both meet the exhausted pool and trip the
        // breaker; the next 19 ticks attempt none while it cools down.
        #expect(creates == [2] + Array(repeating: 0, count: 19))
        let breaker = try w.store.breaker()
        #expect(breaker.isOpen(at: Date()))
        // The breaker, not each machine's own backoff (#21: the counts above cannot tell them
        // apart): a new run, whose machine never failed, gets no create either while it is open.
        try w.apply("kind: Run\nname: a\nreplicas: 2\n---\nkind: Run\nname: b\n")
        let fresh = await w.controller.tick()
        #expect(!fresh.outcomes.contains { if case .create = $0.action { return true } else { return false } }, "\(fresh.outcomes)")
        #expect(try w.store.events().contains { $0.kind == "breaker-open" && $0.message.contains("orbstack-reset-networking.sh") })
        // The pool is freed (the other machine goes gracefully) and the cool-down passes:
        // the half-open breaker lets one create through, it succeeds, and the fleet converges.
        try await w.sim(["stop", "someone-else"])
        try await w.sim(["delete", "-f", "someone-else"])
        try await w.sim(["admin", "ip-pool", "4"])
        try w.store.saveBreaker(Admission.trip(try w.store.breaker(), message: "cool-down elapsed (test)", now: Date().addingTimeInterval(-3600)))
        try await w.tick {
            try w.machines().count == 3 && ["a", "b"].allSatisfy { try w.wanted(w.run($0)).allSatisfy { $0.phase >= .bootstrapping } }
        }
        #expect(try w.store.breaker().failures == 0)
    }

    /// An orbctl that is not usable ends the tick (#21: `isRetryable` decides): the actions
    /// after it are not attempted, no machine is made to back off for it, and the next tick
    /// tries again at once.
    @Test func anUnusableOrbctlEndsTheTickWithoutBackingOff() async throws {
        let w = try World(concurrency: 1, inProcess: true)
        try w.apply("kind: Run\nname: a\nreplicas: 3\n")
        try await w.sim(["admin", "fail", "create", "--times", "1", "--message", "panic: $HOME is not defined"])
        try await w.sim(["admin", "calls", "--reset"])
        let first = await w.controller.tick()
        let creates = first.outcomes.filter { if case .create = $0.action { return true } else { return false } }
        #expect(creates.count == 1 && creates.first?.error?.kind == .unavailable, "\(first.outcomes)")
        let held = first.deferred.filter { if case .create = $0.action { return true } else { return false } }
        #expect(held.count == 2 && held.allSatisfy { $0.why.hasPrefix("not attempted this tick: orbctl is not usable") }, "\(first.deferred)")
        let log = try await w.sim(["admin", "calls", "--json"]).stdoutText
        #expect(log.contains("\"create\": 1,"), "one create reached orbctl: \(log)")
        #expect(try w.store.backoffs().isEmpty)
        let second = await w.controller.tick()
        #expect(
            second.outcomes.filter { if case .create = $0.action { return $0.error == nil } else { return false } }.count == 3,
            "\(second.outcomes) \(second.deferred)")
    }

    /// The breaker is checked before every create within a tick, and one episode counts once
    /// (#16): 12 creates into an exhausted pool attempt only those already in flight.
    @Test(.machineCommands) func oneExhaustionEpisodeStopsTheRestOfTheTickAndCountsOnce() async throws {
        let w = try World(inProcess: true)
        try await w.sim(["admin", "ip-pool", "1"])
        try await w.sim(["create", "ubuntu", "someone-else"])
        try w.apply("kind: Run\nname: many\nreplicas: 12\n")
        try await w.sim(["admin", "calls", "--reset"])
        let report = await w.controller.tick()  // concurrency 4
        let calls = try await JSONSerialization.jsonObject(with: w.sim(["admin", "calls", "--json"]).stdout) as? [String: Any]
        let creates = (calls?["verbs"] as? [String: Int])?["create"] ?? 0
        #expect(creates <= 4, "\(creates) creates attempted into an exhausted pool")
        #expect(report.deferred.contains { $0.why.contains("circuit breaker") })
        let breaker = try w.store.breaker()
        #expect(breaker.failures == 1, "one episode, \(breaker.failures) failures counted")
        let cooldown = try #require(breaker.openUntil).timeIntervalSinceNow
        #expect(cooldown > 20 && cooldown <= 30, "cool-down \(cooldown) s after one episode")
    }

    /// A snapshot of a run whose command ends at once (found by attacking): the source is kept
    /// until the snapshot is taken, and the run from it starts with what the source prepared.
    @Test(.machineCommands) func aSnapshotOfAShortRunIsTakenAndUsed() async throws {
        let w = try World(inProcess: true)
        try w.apply(
            """
            kind: Run
            name: base
            command: echo prepared > /opt/ready
            ---
            kind: Snapshot
            name: snap
            from: base
            ---
            kind: Run
            name: fast
            from: snap
            command: cat /opt/ready
            """)
        try await w.tick(until: { try w.run("fast").phase.isTerminal && w.run("fast").instances.allSatisfy(\.logsCollected) }, seconds: 60)
        let fast = try w.wanted(w.run("fast"))[0]
        #expect(fast.phase == .succeeded)
        let log = try String(
            contentsOf: Controller.logFile(w.root.appendingPathComponent("state/logs"), run: "fast", instance: fast.id), encoding: .utf8)
        #expect(log == "prepared\n")
        #expect(try w.store.snapshots().first?.createdAt != nil)
        try await w.tick { try w.run("base").instances.allSatisfy(\.logsCollected) }  // the source goes once the snapshot is taken
    }

    /// Adopt only what we made (#16): a hand-made alpine machine named like the next instance
    /// never gets the user's command, and is never deleted.
    @Test(.machineCommands) func aHandMadeMachineWithTheNextNameIsAConflictNeverAdopted() async throws {
        let w = try World(inProcess: true)
        let name = "repl-\(try w.store.controlID())-1-1"  // what the first run's first instance will be called
        try await w.sim(["create", "alpine", name])
        try w.apply("kind: Run\nname: r\ncommand: echo stolen > /tmp/stolen\n")
        w.controller.settings.orphanGrace = .zero
        for _ in 0..<5 { _ = await w.controller.tick() }
        let report = await w.controller.tick()
        #expect(report.plan?.waiting[name]?.hasPrefix("conflict") == true, "\(report.plan?.waiting ?? [:])")
        #expect(try w.run("r").instances.allSatisfy { $0.startedAt == nil })
        #expect(try w.machines().map(\.name) == [name])
        let marker = try await w.sim(["run", "-m", name, "-u", "root", "sh", "-c", "ls /var/lib/repl /tmp/stolen 2>&1; true"])
        #expect(!marker.stdoutText.contains("launched") && marker.stdoutText.contains("No such file"), "\(marker.stdoutText)")
        // Nor deleted when its run stops wanting the instance (found by attacking: scaling to
        // 0, cancelling or deleting the run deleted it as "retired").
        try w.apply("kind: Run\nname: r\nreplicas: 0\ncommand: echo stolen > /tmp/stolen\n")
        for _ in 0..<3 { _ = await w.controller.tick() }
        #expect(try w.machines().map { "\($0.name) \($0.state)" } == ["\(name) running"])
    }

    @Test func onlyOneProcessHoldsTheLease() async throws {
        let w = try World()  // a file: another process shares it
        #expect(try w.store.acquireLease(holder: "watch") == nil)
        // Another process: a child that tries to take it through the CLI sees it held.
        let other = try await SystemProcessRunner.run(
            Paths.repl, ["--orbctl", "sim", "orphans", "sweep"], input: nil, timeout: 60,
            environment: w.environment, limit: 1 << 20)
        #expect(other.status == 0)
        #expect(other.stdoutText.contains("watch (pid \(getpid())) holds the controller lease"))
        w.store.releaseLease()
        #expect(try w.store.leaseHolder() == nil)
    }
}

enum SchemaPaths {
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("examples")
}
