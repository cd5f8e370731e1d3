import Foundation
import Testing

@testable import ReplCore

/// Scenarios of the planner, each from plain values with a fixed clock.
struct PlannerTests {
    typealias W = PlanWorld
    static let spec = Spec(distro: "ubuntu", version: "noble", arch: "arm64")

    static func run(
        _ id: RunID, _ name: String = "r", command: String? = "echo hi", replicas: Int = 1,
        hold: TimeSpan = .zero, max: TimeSpan? = nil, source: RunSource = .spec(spec),
        generation: Int = 1, cancelled: Bool = false, instances: [InstanceState] = []
    ) -> DesiredRun {
        DesiredRun(
            id: id,
            manifest: RunManifest(
                name: name, source: source, command: command, maxDuration: max,
                replicas: replicas, hold: hold),
            generation: generation, cancelled: cancelled, instances: instances)
    }

    static func running(_ id: InstanceID, generation: Int = 1, startedAgo: TimeInterval = 10) -> InstanceState {
        InstanceState(
            id: id, generation: generation, phase: .running,
            createdAt: W.epoch.addingTimeInterval(-startedAgo - 5), startedAt: W.epoch.addingTimeInterval(-startedAgo))
    }

    @Test func aNewRunGetsAnInstanceAndAMachine() {
        let w = W(runs: [Self.run(1)])
        #expect(
            w.plan().actions == [
                .addInstance(run: 1, instance: 1, generation: 1),
                .create(run: 1, instance: 1, machine: "repl-ab12cd-1-1", spec: .orbstack(Self.spec)),
                .startRun(run: 1, instance: 1, machine: "repl-ab12cd-1-1"),
            ])
    }

    @Test func aConvergedRunningRunPlansNothing() {
        var w = W(runs: [Self.run(1, instances: [Self.running(1)])])
        w.newMachine("repl-ab12cd-1-1", .running)
        #expect(w.plan().actions.isEmpty)
    }

    @Test func aRunConvergesToRunningThenFinishesAndIsDeleted() throws {
        var w = W(runs: [Self.run(1, replicas: 3)])
        w.behaviour[1] = (30, 0)
        #expect(w.converge() != nil)
        #expect(w.machines.count == 3)
        #expect(w.desired.runs[0].instances.map(\.phase) == [.running, .running, .running])
        w.now += 31
        #expect(w.converge() != nil)
        #expect(w.machines.isEmpty)
        #expect(w.desired.runs[0].phase == .succeeded)
        #expect(w.desired.runs[0].instances.allSatisfy { $0.logsCollected && $0.exitCode == 0 })
    }

    @Test func scalingDownRetiresTheNewestInstances() {
        var w = W(runs: [Self.run(1, replicas: 1, instances: [Self.running(1), Self.running(2), Self.running(3)])])
        for i in 1...3 { w.newMachine(w.name(1, InstanceID(i)), .running) }
        let actions = w.plan().actions
        #expect(actions.contains(.retireInstance(run: 1, instance: 3, reason: "replicas reduced to 1")))
        #expect(actions.contains(.retireInstance(run: 1, instance: 2, reason: "replicas reduced to 1")))
        #expect(actions.contains(.delete(machine: "repl-ab12cd-1-3", reason: .retired)))
        #expect(!actions.contains { $0.machine == "repl-ab12cd-1-1" })
        _ = w.converge()
        #expect(w.machines.map(\.name) == ["repl-ab12cd-1-1"])
    }

    @Test func aNewGenerationReplacesTheMachines() {
        var w = W(runs: [Self.run(1, generation: 2, instances: [Self.running(1, generation: 1)])])
        w.newMachine("repl-ab12cd-1-1", .running)
        let actions = w.plan().actions
        #expect(
            actions == [
                .addInstance(run: 1, instance: 2, generation: 2),
                .markPhase(run: 1, instance: 1, phase: .cancelled, exitCode: nil, reason: "replaced by generation 2"),
                .collectLogs(run: 1, instance: 1, machine: "repl-ab12cd-1-1"),
                .delete(machine: "repl-ab12cd-1-1", reason: .retired),
                .create(run: 1, instance: 2, machine: "repl-ab12cd-1-2", spec: .orbstack(Self.spec)),
                .startRun(run: 1, instance: 2, machine: "repl-ab12cd-1-2"),
            ])
    }

    @Test func aFinishedRunIsKeptForItsHoldThenDeleted() {
        var finished = Self.running(1)
        finished.phase = .succeeded
        finished.finishedAt = W.epoch
        var w = W(runs: [Self.run(1, hold: .seconds(30), instances: [finished])])
        w.newMachine("repl-ab12cd-1-1", .running)
        let held = w.plan()
        #expect(held.actions.isEmpty)
        #expect(held.nextCheck == W.epoch.addingTimeInterval(30))
        w.now += 30
        #expect(
            w.plan().actions == [
                .collectLogs(run: 1, instance: 1, machine: "repl-ab12cd-1-1"),
                .delete(machine: "repl-ab12cd-1-1", reason: .finished),
            ])
    }

    @Test func reapplyingAFinishedRunWhoseMachinesAreGoneIsANoOp() {
        var finished = Self.running(1)
        finished.phase = .succeeded
        finished.finishedAt = W.epoch
        finished.logsCollected = true
        let w = W(runs: [Self.run(1, instances: [finished])])
        #expect(w.plan().actions.isEmpty)
    }

    @Test func theDeadlineEndsARunAsTimedOut() {
        // Created 15 s ago, launched 10 s ago, with a deadline of 60 s: maxDuration counts
        // from the launch, so nothing yet, and check again in 50 s.
        var w = W(runs: [Self.run(1, max: .seconds(60), instances: [Self.running(1, startedAgo: 10)])])
        w.newMachine("repl-ab12cd-1-1", .running)
        #expect(w.plan().actions.isEmpty)
        #expect(w.plan().nextCheck == W.epoch.addingTimeInterval(50))
        w.now += 45
        #expect(w.plan().actions.isEmpty)
        // At the deadline the command gets the grace (SIGTERM, then SIGKILL) to end by itself.
        w.now += 5
        #expect(w.plan().actions.isEmpty)
        #expect(w.plan().nextCheck == W.epoch.addingTimeInterval(59))
        w.now += 9
        #expect(w.plan().actions.first == .markPhase(run: 1, instance: 1, phase: .timedOut, exitCode: nil, reason: "maxDuration 1m reached"))
    }

    @Test func aCommandThatEndedInTimeIsJudgedByItsStatusHoweverLateTheTick() {
        // Exited 0 five seconds after its launch; nobody looked until long after the deadline.
        var w = W(runs: [Self.run(1, max: .seconds(60), instances: [Self.running(1, startedAgo: 100)])])
        w.behaviour[1] = (5, 0)
        w.newMachine("repl-ab12cd-1-1", .running)
        #expect(w.plan().actions.first == .markPhase(run: 1, instance: 1, phase: .succeeded, exitCode: 0, reason: nil))
    }

    @Test func aStoppedMachineWhoseStatusSaysExitedIsJudgedByIt() {
        var w = W(runs: [Self.run(1, instances: [Self.running(1, startedAgo: 10)])])
        w.behaviour[1] = (1, 0)
        w.newMachine("repl-ab12cd-1-1", .stopped)
        let actions = w.plan().actions
        #expect(actions.first == .markPhase(run: 1, instance: 1, phase: .succeeded, exitCode: 0, reason: nil))
        #expect(actions.contains(.delete(machine: "repl-ab12cd-1-1", reason: .finished)))
        #expect(!actions.contains { if case .start = $0 { return true } else { return false } })
    }

    @Test func aRunThatNeverLaunchedNeverReachesItsDeadline() {
        // No command, maxDuration 1 s, requested long ago but never created (addresses ran out).
        let waiting = InstanceState(id: 1, generation: 1, phase: .provisioning, createdAt: W.epoch.addingTimeInterval(-100))
        let w = W(runs: [Self.run(1, command: nil, max: .seconds(1), instances: [waiting])])
        let actions = w.plan().actions
        #expect(!actions.contains { if case .markPhase = $0 { return true } else { return false } })
        #expect(actions.contains { if case .create = $0 { return true } else { return false } })
    }

    @Test func anOverdueRunIsTimedOutCollectedAndDeleted() {
        var w = W(runs: [Self.run(1, max: .seconds(60), instances: [Self.running(1, startedAgo: 100)])])
        w.newMachine("repl-ab12cd-1-1", .running)
        #expect(
            w.plan().actions == [
                .markPhase(run: 1, instance: 1, phase: .timedOut, exitCode: nil, reason: "maxDuration 1m reached"),
                .collectLogs(run: 1, instance: 1, machine: "repl-ab12cd-1-1"),
                .delete(machine: "repl-ab12cd-1-1", reason: .finished),
            ])
    }

    @Test func aMachineWithoutACommandSucceedsAtItsDeadline() {
        var w = W(runs: [Self.run(1, command: nil, max: .seconds(60), instances: [Self.running(1, startedAgo: 100)])])
        w.newMachine("repl-ab12cd-1-1", .running)
        #expect(w.plan().actions.first == .markPhase(run: 1, instance: 1, phase: .succeeded, exitCode: nil, reason: "maxDuration 1m reached"))
    }

    @Test func anExitCodeIsRecorded() {
        var w = W(runs: [Self.run(1, instances: [Self.running(1)])])
        w.newMachine("repl-ab12cd-1-1", .running)
        w.behaviour[1] = (5, 7)
        #expect(w.plan().actions.first == .markPhase(run: 1, instance: 1, phase: .failed, exitCode: 7, reason: nil))
    }

    /// The whitelist protects every machine it names, ours included (#16): a finished run's
    /// machine kept for debugging is not deleted, and the plan says why.
    @Test func aWhitelistedMachineOfOursIsNeverDeleted() {
        var settings = PlannerSettings(controlID: W.cid)
        settings.whitelist = ["repl-ab12cd-1-1", "repl-ab12cd-2-2"]
        var finished = Self.running(1)
        finished.phase = .succeeded
        finished.finishedAt = W.epoch.addingTimeInterval(-60)
        var w = W(
            runs: [Self.run(1, instances: [finished]), Self.run(2, "gone", cancelled: true, instances: [Self.running(2)])],
            settings: settings)
        w.newMachine("repl-ab12cd-1-1", .running)
        w.newMachine("repl-ab12cd-2-2", .running)
        let plan = w.plan()
        #expect(!plan.actions.contains { $0.isDestructive }, "\(plan.actions)")
        #expect(plan.waiting["repl-ab12cd-1-1"]?.contains("whitelisted") == true)
        #expect(plan.waiting["repl-ab12cd-2-2"]?.contains("whitelisted") == true)
    }

    /// Adopt only what we made (#16): a machine with the instance's name made before repl asked
    /// for it, or from another image, is a conflict: never given the command, never deleted.
    @Test func aMachineWithOurNameThatWeDidNotMakeIsAConflict() {
        let asked = InstanceState(id: 1, generation: 1, phase: .provisioning, createdAt: W.epoch)
        let never = InstanceState(id: 1, generation: 1, phase: .pending)
        for (instance, image, age) in [(never, "ubuntu", 10.0), (asked, "ubuntu", 60.0), (asked, "alpine", -1.0)] {
            var w = W(runs: [Self.run(1, instances: [instance])])
            w.machines = [
                ObservedMachine(
                    id: ULID.make(at: W.epoch.addingTimeInterval(-age), using: &w.rng), name: "repl-ab12cd-1-1",
                    state: .running, distro: image, version: "noble", arch: "arm64")
            ]
            let plan = w.plan()
            #expect(plan.actions.isEmpty, "\(image) made \(age) s before: \(plan.actions)")
            #expect(plan.waiting["repl-ab12cd-1-1"]?.hasPrefix("conflict") == true)
            #expect(plan.machines.first?.machineClass == .owned)  // accounted for: never an orphan
        }
        // Made after it was asked for, from the spec: adopted.
        var w = W(runs: [Self.run(1, instances: [asked])])
        w.machines = [
            ObservedMachine(
                id: ULID.make(at: W.epoch.addingTimeInterval(2), using: &w.rng), name: "repl-ab12cd-1-1",
                state: .running, distro: "ubuntu", version: "noble", arch: "arm64")
        ]
        #expect(w.plan().actions == [.startRun(run: 1, instance: 1, machine: "repl-ab12cd-1-1")])
    }

    @Test func aMachineThatDisappearsFailsItsInstance() {
        let w = W(runs: [Self.run(1, instances: [Self.running(1)])])
        // Its logs may be in the host channel: they are collected all the same.
        #expect(
            w.plan().actions == [
                .markPhase(
                    run: 1, instance: 1, phase: .failed, exitCode: nil,
                    reason: "machine repl-ab12cd-1-1 disappeared"),
                .collectLogs(run: 1, instance: 1, machine: "repl-ab12cd-1-1"),
            ])
    }

    @Test func aCancelledRunLosesItsMachinesAtOnceDespiteHold() {
        var w = W(runs: [Self.run(1, hold: .minutes(10), cancelled: true, instances: [Self.running(1)])])
        w.newMachine("repl-ab12cd-1-1", .running)
        #expect(
            w.plan().actions == [
                .markPhase(run: 1, instance: 1, phase: .cancelled, exitCode: nil, reason: "run cancelled"),
                .collectLogs(run: 1, instance: 1, machine: "repl-ab12cd-1-1"),
                .delete(machine: "repl-ab12cd-1-1", reason: .retired),
            ])
        _ = w.converge()
        #expect(w.desired.runs[0].phase == .cancelled)
    }

    @Test func snapshotThenCloneWaitsForEachStep() {
        var w = W(
            runs: [
                Self.run(1, "base", command: nil),
                Self.run(3, "fast", source: .snapshot("snap")),
            ],
            snapshots: [DesiredSnapshot(id: 2, name: "snap", fromRun: "base", instanceID: 50)])
        // Step 1: the base is created; the snapshot and the clone wait.
        let base = w.name(1, 51), snapshot = w.name(2, 50), clone = w.name(3, 52)
        let baseMachine = w.machine(1, 51)
        let first = w.plan()
        #expect(first.actions.contains(.create(run: 1, instance: 51, machine: baseMachine, spec: .orbstack(Self.spec))))
        #expect(!first.actions.contains { if case .clone = $0 { return true } else { return false } })
        #expect(first.waiting[snapshot] == "waiting for run base to have an instance")
        #expect(first.waiting[clone] == "waiting for snapshot snap to be ready")
        #expect(first.actions.contains(.startRun(run: 1, instance: 51, machine: baseMachine)))
        w.apply(first.actions)
        // Step 2: the base machine runs but has not finished bootstrapping: still no snapshot.
        let second = w.plan()
        #expect(second.actions == [.markPhase(run: 1, instance: 51, phase: .running, exitCode: nil, reason: nil)])
        #expect(second.waiting[snapshot] == "waiting for \(base) to finish bootstrapping")
        #expect(w.converge() != nil)
        #expect(Set(w.machines.map(\.name)) == [base, snapshot, clone])
        #expect(w.machines.first { $0.name == snapshot }?.state == .stopped)
        #expect(w.desired.runs[1].instances.first?.phase == .running)
    }

    @Test func aStartedSnapshotIsStoppedAgain() {
        var w = W(snapshots: [DesiredSnapshot(id: 2, name: "snap", fromRun: "base", instanceID: 5, createdAt: W.epoch)])
        w.newMachine("repl-ab12cd-2-5", .running)
        #expect(w.plan().actions == [.stop(machine: "repl-ab12cd-2-5")])
    }

    /// Found by attacking: a take interrupted during its clone left a machine that may be
    /// partial. It is never cloned from; it is deleted and taken again.
    @Test func aSnapshotWhoseTakingWasInterruptedIsTakenAgainNeverUsed() {
        var w = W(
            runs: [
                Self.run(1, "base", command: nil, instances: [Self.running(1)]),
                Self.run(3, "fast", source: .snapshot("snap")),
            ],
            snapshots: [DesiredSnapshot(id: 2, name: "snap", fromRun: "base", instanceID: 5)])
        w.newMachine("repl-ab12cd-1-1", .running)
        w.newMachine("repl-ab12cd-2-5", .stopped)  // exists, but its taking was never recorded
        let plan = w.plan()
        #expect(plan.actions.contains(.delete(machine: "repl-ab12cd-2-5", reason: .incomplete)))
        #expect(!plan.actions.contains { if case .clone = $0 { return true } else { return false } })
    }

    /// Found by attacking: a run whose command ends at once would be deleted before its
    /// snapshot is taken, and runs from the snapshot would wait for ever.
    @Test func aShortRunIsKeptUntilItsSnapshotIsTaken() {
        var finished = Self.running(1)
        finished.phase = .succeeded
        finished.exitCode = 0
        finished.finishedAt = W.epoch
        var w = W(
            runs: [Self.run(1, "base", instances: [finished])],
            snapshots: [DesiredSnapshot(id: 2, name: "snap", fromRun: "base", instanceID: 5)])
        w.newMachine("repl-ab12cd-1-1", .running)
        let plan = w.plan()
        #expect(!plan.actions.contains { $0.isDestructive }, "\(plan.actions)")
        #expect(plan.actions.contains(.takeSnapshot(snapshot: "snap", sourceMachine: "repl-ab12cd-1-1", machine: "repl-ab12cd-2-5")))
        w.apply(plan.actions)
        #expect(w.plan().actions.contains(.delete(machine: "repl-ab12cd-1-1", reason: .finished)))
    }

    @Test func orphansAreDeletedOnlyAfterTheirGrace() {
        var w = W()
        w.machines = [
            ObservedMachine(id: ULID.make(at: W.epoch.addingTimeInterval(-300), using: &w.rng), name: "repl-ab12cd-9-9", state: .running),
            ObservedMachine(id: ULID.make(at: W.epoch.addingTimeInterval(-60), using: &w.rng), name: "repl-ab12cd-9-a", state: .running),
            ObservedMachine(id: ULID.make(at: W.epoch.addingTimeInterval(-300), using: &w.rng), name: "repl-ab12cd-9-b", state: .running),
            ObservedMachine(id: ULID.make(at: W.epoch.addingTimeInterval(-300), using: &w.rng), name: "repl-zz99zz-1-1", state: .running),
            ObservedMachine(id: ULID.make(at: W.epoch.addingTimeInterval(-300), using: &w.rng), name: "ubuntu", state: .running),
            ObservedMachine(id: "not-a-ulid", name: "repl-ab12cd-9-c", state: .running),
        ]
        w.settings.whitelist = ["repl-ab12cd-9-b"]
        let plan = w.plan()
        #expect(plan.actions == [.delete(machine: "repl-ab12cd-9-9", reason: .orphan)])
        #expect(plan.nextCheck == W.epoch.addingTimeInterval(60))
        let classes = Dictionary(uniqueKeysWithValues: plan.machines.map { ($0.machine.name, $0.machineClass) })
        #expect(
            classes == [
                "repl-ab12cd-9-9": .orphan, "repl-ab12cd-9-a": .orphan, "repl-ab12cd-9-b": .whitelisted,
                "repl-zz99zz-1-1": .foreign, "ubuntu": .unmanaged, "repl-ab12cd-9-c": .orphan,
            ])
        w.settings.includeForeign = true
        #expect(
            w.plan().actions == [
                .delete(machine: "repl-ab12cd-9-9", reason: .orphan),
                .delete(machine: "repl-zz99zz-1-1", reason: .foreign),
            ])
    }

    /// The grace boundary itself (#21: no test put an orphan exactly there): an orphan exactly as
    /// old as the grace goes; one a millisecond younger waits, and is due a millisecond later.
    @Test func anOrphanGoesExactlyWhenItsGraceHasPassed() {
        var w = W()
        let grace = w.settings.orphanGrace.seconds
        w.machines = [
            ObservedMachine(id: ULID.make(at: W.epoch.addingTimeInterval(-grace), using: &w.rng), name: "repl-ab12cd-9-1", state: .running),
            ObservedMachine(id: ULID.make(at: W.epoch.addingTimeInterval(-grace + 0.001), using: &w.rng), name: "repl-ab12cd-9-2", state: .running),
        ]
        let plan = w.plan()
        #expect(plan.actions == [.delete(machine: "repl-ab12cd-9-1", reason: .orphan)])
        let due = try? #require(plan.nextCheck).timeIntervalSince(W.epoch)
        #expect(due.map { abs($0 - 0.001) < 0.0005 } == true, "due \(String(describing: due)) s after now")
    }

    @Test func machinesWithAnOpenIntentAreLeftAlone() {
        var w = W(runs: [Self.run(1, instances: [InstanceState(id: 1, generation: 1)])])
        w.inFlight = ["repl-ab12cd-1-1", "repl-ab12cd-4-4"]
        w.newMachine("repl-ab12cd-4-4", .running)
        w.machines[0] = ObservedMachine(id: ULID.make(at: W.epoch.addingTimeInterval(-3600), using: &w.rng), name: "repl-ab12cd-4-4", state: .running)
        let plan = w.plan()
        #expect(plan.actions.isEmpty)
        #expect(plan.machines.first?.machineClass == .owned)
    }

    @Test func aClonedMachineThatIsStoppedIsStarted() {
        var inst = InstanceState(id: 1, generation: 1, phase: .provisioning, createdAt: W.epoch)
        inst.createdAt = W.epoch
        var w = W(runs: [Self.run(1, instances: [inst])])
        w.machines = [ObservedMachine(id: ULID.make(at: W.epoch, using: &w.rng), name: "repl-ab12cd-1-1", state: .stopped, arch: Self.spec.arch)]
        #expect(w.plan().actions == [.start(machine: "repl-ab12cd-1-1")])
    }

    @Test func bootstrapProgressIsRecorded() {
        var inst = Self.running(1)
        inst.phase = .bootstrapping
        var w = W(runs: [Self.run(1, instances: [inst])])
        w.newMachine("repl-ab12cd-1-1", .running)
        #expect(w.plan().actions == [.markPhase(run: 1, instance: 1, phase: .running, exitCode: nil, reason: nil)])
    }
}
