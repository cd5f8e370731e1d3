import Foundation
import ReplTestSupport
import Testing

@testable import ReplCore

/// The safety rules of DESIGN.md, checked over thousands of random worlds.
struct PlannerPropertyTests {
    static let cases = 2_000

    /// A random world: runs in every phase, snapshots, and machines that are ours,
    /// orphaned, foreign, unmanaged, whitelisted, in flight, young and old.
    static func randomWorld(_ rng: inout SeededGenerator) -> PlanWorld {
        let now = PlanWorld.epoch
        let cid = PlanWorld.cid
        var settings = PlannerSettings(
            controlID: cid, orphanGrace: .seconds(Int64.random(in: 0...300, using: &rng)),
            includeForeign: Bool.random(using: &rng))
        var runs: [DesiredRun] = []
        var nextID: InstanceID = 1
        let runCount = Int.random(in: 0...6, using: &rng)
        for r in 0..<runCount {
            let generation = Int.random(in: 1...3, using: &rng)
            var instances: [InstanceState] = []
            for _ in 0..<Int.random(in: 0...4, using: &rng) {
                var inst = InstanceState(
                    id: nextID, generation: Int.random(in: 1...generation, using: &rng),
                    phase: InstancePhase.allCases.randomElement(using: &rng)!,
                    retired: Int.random(in: 0..<5, using: &rng) == 0)
                nextID = nextID.next
                if inst.phase != .pending { inst.createdAt = now.addingTimeInterval(-Double.random(in: 0...600, using: &rng)) }
                if inst.phase >= .bootstrapping && Bool.random(using: &rng) { inst.startedAt = inst.createdAt }
                if inst.phase.isTerminal { inst.finishedAt = now.addingTimeInterval(-Double.random(in: 0...120, using: &rng)) }
                inst.logsCollected = Bool.random(using: &rng)
                instances.append(inst)
            }
            let source: RunSource =
                Int.random(in: 0..<4, using: &rng) == 0 ? .snapshot("snap\(Int.random(in: 0...2, using: &rng))") : .spec(.defaultSpec)
            let manifest = RunManifest(
                name: "run\(r)", source: source, command: Bool.random(using: &rng) ? "echo" : nil,
                maxDuration: Bool.random(using: &rng) ? .seconds(Int64.random(in: 1...900, using: &rng)) : nil,
                replicas: Int.random(in: 0...4, using: &rng),
                hold: Bool.random(using: &rng) ? .zero : .seconds(Int64.random(in: 1...120, using: &rng)))
            runs.append(
                DesiredRun(
                    id: RunID(r + 1), manifest: manifest, generation: generation,
                    cancelled: Int.random(in: 0..<6, using: &rng) == 0, instances: instances))
        }
        var snapshots: [DesiredSnapshot] = []
        for s in 0..<Int.random(in: 0...2, using: &rng) where runCount > 0 {
            snapshots.append(
                DesiredSnapshot(
                    id: SnapshotID(100 + s), name: "snap\(s)", fromRun: "run\(Int.random(in: 0..<runCount, using: &rng))",
                    instanceID: nextID, deleted: Int.random(in: 0..<5, using: &rng) == 0))
            nextID = nextID.next
        }
        var world = PlanWorld(runs: runs, snapshots: snapshots, now: now, settings: settings)
        world.rng = SeededGenerator(seed: rng.next())
        let states: [MachineState] = [.running, .running, .stopped, .starting, .creating, .stopping, .deleting]
        func add(_ name: String) {
            let age = Double.random(in: 0...600, using: &rng)
            let id = Int.random(in: 0..<15, using: &rng) == 0 ? "garbage-id" : ULID.make(at: now.addingTimeInterval(-age), using: &rng)
            world.machines.append(ObservedMachine(id: id, name: name, state: states.randomElement(using: &rng)!))
        }
        // Machines of desired instances and snapshots.
        for run in runs { for i in run.instances where Bool.random(using: &rng) { add(world.name(run.id, i.id)) } }
        for s in snapshots where Bool.random(using: &rng) { add(world.name(snapshot: s.id, s.instanceID)) }
        // Orphans of ours, foreign machines and unmanaged ones (including look-alikes).
        for _ in 0..<Int.random(in: 0...4, using: &rng) {
            add(world.name(RunID(UInt64.random(in: 200...300, using: &rng)), InstanceID(UInt64.random(in: 1...999, using: &rng))))
        }
        for _ in 0..<Int.random(in: 0...3, using: &rng) {
            add(MachineName(controlID: ControlID.generate(using: &rng), manifestID: UInt64.random(in: 1...9, using: &rng), instanceID: 1).description)
        }
        let lookalikes = [
            "ubuntu", "docker", "repl", "repl-", "repl-AB12CD-1-1", "repl-ab12cd-01-1", "repl-ab12cd-1-1-1",
            "repl-ab12cd", "my-repl-ab12cd-1-1", "repl-ab12cd-1-1.bak", "repl-ab12cd-x_y-1", "dev-box",
        ]
        for _ in 0..<Int.random(in: 0...4, using: &rng) { add(lookalikes.randomElement(using: &rng)!) }
        // Some whitelisted and in-flight names.
        for m in world.machines where Int.random(in: 0..<6, using: &rng) == 0 { settings.whitelist.insert(m.name) }
        world.settings = settings
        for m in world.machines where Int.random(in: 0..<8, using: &rng) == 0 { world.inFlight.insert(m.name) }
        return world
    }

    static func isOurs(_ name: String) -> Bool { MachineName(parsing: name)?.controlID == PlanWorld.cid }

    @Test func noActionEverTargetsAMachineThatIsNotOurs() {
        var rng = SeededGenerator(seed: 1001)
        for _ in 0..<Self.cases {
            let world = Self.randomWorld(&rng)
            let plan = world.plan()
            let observed = Dictionary(world.machines.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            for action in plan.actions {
                for name in [action.machine, action.sourceMachine].compactMap({ $0?.description }) {
                    if case .delete(_, .foreign) = action {
                        #expect(world.settings.includeForeign, "foreign deletion while switched off: \(action)")
                        #expect(MachineName(parsing: name) != nil, "deleting an unmanaged machine: \(action)")
                    } else {
                        #expect(Self.isOurs(name), "\(action) targets \(name), which is not ours")
                    }
                    #expect(
                        !world.inFlight.contains(name) || action.sourceMachine?.description == name && !action.isDestructive,
                        "\(action) touches a machine with an open intent")
                }
                if action.isDestructive, let name = action.machine?.description {
                    #expect(observed[name] != nil, "\(action) targets a machine that is not in the list")
                    #expect(!world.settings.whitelist.contains(name), "\(action) deletes a whitelisted machine")
                }
            }
        }
    }

    /// The list's order is OrbStack's business: the same machines in any order give the same
    /// plan (actions in the same order, the same classes and reasons).
    @Test func thePlanDoesNotDependOnTheListsOrder() {
        var rng = SeededGenerator(seed: 1005)
        for _ in 0..<Self.cases {
            var world = Self.randomWorld(&rng)
            let plan = world.plan()
            world.machines.shuffle(using: &rng)
            let shuffled = world.plan()
            #expect(shuffled.actions == plan.actions)
            #expect(shuffled.waiting == plan.waiting && shuffled.nextCheck == plan.nextCheck)
            let classes = { (p: Plan) in
                Dictionary(p.machines.map { ($0.machine.name, "\($0.machineClass) \($0.why)") }, uniquingKeysWith: { a, _ in a })
            }
            #expect(classes(shuffled) == classes(plan))
        }
    }

    @Test func noMachineYoungerThanTheGraceIsDeletedAsAnOrphan() {
        var rng = SeededGenerator(seed: 1003)
        var deletions = 0
        for _ in 0..<Self.cases {
            let world = Self.randomWorld(&rng)
            let observed = Dictionary(world.machines.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            for case let .delete(name, reason) in world.plan().actions where reason == .orphan || reason == .foreign {
                deletions += 1
                let created = observed[name.description]?.createdAt
                #expect(created != nil, "\(name) has no readable age but was deleted")
                if let created { #expect(world.now.timeIntervalSince(created) >= world.settings.orphanGrace.seconds) }
            }
        }
        #expect(deletions > 100)  // the generator does produce old orphans
    }

    @Test func planningOverThePlannedStateSettles() {
        var rng = SeededGenerator(seed: 1004)
        var totalSteps = 0
        for _ in 0..<Self.cases {
            var world = Self.randomWorld(&rng)
            let steps = world.converge(limit: 12)
            #expect(steps != nil, "did not settle")
            totalSteps += steps ?? 0
            // Once settled, planning again over the same state plans nothing.
            #expect(world.plan().actions.isEmpty)
        }
        #expect(totalSteps > Self.cases)  // the worlds were not trivially converged
    }

    @Test func orphanClassesPartitionEveryMachine() {
        var rng = SeededGenerator(seed: 1005)
        for _ in 0..<Self.cases {
            let world = Self.randomWorld(&rng)
            let plan = world.plan()
            #expect(Set(plan.machines.map(\.machine.name)) == Set(world.machines.map(\.name)))
            for c in plan.machines {
                switch c.machineClass {
                case .unmanaged: #expect(MachineName(parsing: c.machine.name) == nil)
                case .foreign: #expect(MachineName(parsing: c.machine.name).map { $0.controlID != PlanWorld.cid } == true)
                case .owned, .orphan, .whitelisted: #expect(Self.isOurs(c.machine.name))
                }
                // The whitelist decides between the two classes of an unwanted machine of ours
                // (#21: this property never looked at it).
                if c.machineClass == .whitelisted { #expect(world.settings.whitelist.contains(c.machine.name), "\(c.machine.name)") }
                if c.machineClass == .orphan { #expect(!world.settings.whitelist.contains(c.machine.name), "\(c.machine.name)") }
            }
        }
    }
}
