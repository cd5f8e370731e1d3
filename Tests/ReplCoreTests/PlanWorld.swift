import Foundation
import ReplTestSupport

@testable import ReplCore

/// A tiny model of the world for planner tests: desired state plus machines,
/// with actions applied the way the controller and OrbStack would apply them.
struct PlanWorld {
    var desired: DesiredState
    var machines: [ObservedMachine]
    var now: Date
    var settings: PlannerSettings
    /// How each run's command behaves once started: (runtime, exit code).
    var behaviour: [RunID: (TimeInterval, Int)] = [:]
    var inFlight: Set<String> = []
    var rng = SeededGenerator(seed: 1)

    static let cid = ControlID("ab12cd")!
    static let epoch = Date(timeIntervalSince1970: 1_800_000_000)

    init(
        runs: [DesiredRun] = [], snapshots: [DesiredSnapshot] = [], machines: [ObservedMachine] = [], now: Date = epoch,
        settings: PlannerSettings = PlannerSettings(controlID: cid)
    ) {
        let maxID = (runs.flatMap { $0.instances.map(\.id) } + snapshots.map(\.instanceID)).max() ?? 0
        desired = DesiredState(runs: runs, snapshots: snapshots, nextInstanceID: maxID + 1)
        self.machines = machines
        self.now = now
        self.settings = settings
    }

    func name(_ run: RunID, _ instance: InstanceID) -> String {
        Planner.machineName(settings, run: run, instance: instance).description
    }

    func machine(_ run: RunID, _ instance: InstanceID) -> MachineName {
        Planner.machineName(settings, run: run, instance: instance)
    }

    func machine(snapshot: SnapshotID, _ instance: InstanceID) -> MachineName {
        Planner.machineName(settings, snapshot: snapshot, instance: instance)
    }

    func name(snapshot: SnapshotID, _ instance: InstanceID) -> String {
        Planner.machineName(settings, snapshot: snapshot, instance: instance).description
    }

    var probes: [String: ProbeResult] {
        var out: [String: ProbeResult] = [:]
        for run in desired.runs {
            for i in run.instances where i.startedAt != nil && !i.phase.isTerminal {
                let (runtime, code) = behaviour[run.id] ?? (.infinity, 0)
                out[name(run.id, i.id)] = now.timeIntervalSince(i.startedAt!) >= runtime ? .exited(code) : .running
            }
        }
        return out
    }

    func plan() -> Plan {
        Planner.plan(
            PlanInput(
                desired: desired, machines: machines, probes: probes,
                inFlight: inFlight, now: now, settings: settings))
    }

    mutating func newMachine(_ name: String, _ state: MachineState) {
        machines.append(ObservedMachine(id: ULID.make(at: now, using: &rng), name: name, state: state))
    }

    mutating func update(_ run: RunID, _ instance: InstanceID, _ change: (inout InstanceState) -> Void) {
        guard let r = desired.runs.firstIndex(where: { $0.id == run }),
            let i = desired.runs[r].instances.firstIndex(where: { $0.id == instance })
        else { return }
        change(&desired.runs[r].instances[i])
    }

    mutating func apply(_ actions: [Action]) {
        for action in actions {
            switch action {
            case let .addInstance(run, instance, generation):
                if let r = desired.runs.firstIndex(where: { $0.id == run }) {
                    desired.runs[r].instances.append(InstanceState(id: instance, generation: generation))
                }
                desired.nextInstanceID = max(desired.nextInstanceID, instance + 1)
            case let .retireInstance(run, instance, _):
                update(run, instance) { $0.retired = true }
            case let .create(run, instance, machine, _), let .clone(run, instance, machine, _):
                newMachine(machine.description, .running)
                let now = self.now
                update(run, instance) {
                    $0.phase = .provisioning; $0.createdAt = now
                }
            case let .start(machine):
                if let i = machines.firstIndex(where: { $0.name == machine.description }) { machines[i].state = .running }
            case let .stop(machine):
                if let i = machines.firstIndex(where: { $0.name == machine.description }) { machines[i].state = .stopped }
            case let .startRun(run, instance, _):
                let now = self.now
                update(run, instance) {
                    $0.phase = .bootstrapping; $0.startedAt = now
                }
            case let .markPhase(run, instance, phase, code, reason):
                let now = self.now
                update(run, instance) {
                    $0.phase = phase
                    $0.exitCode = code
                    $0.reason = reason
                    if phase.isTerminal { $0.finishedAt = now }
                }
            case let .collectLogs(run, instance, _):
                update(run, instance) { $0.logsCollected = true }
            case let .delete(machine, _):
                machines.removeAll { $0.name == machine.description }
            case let .takeSnapshot(snapshot, _, machine):
                newMachine(machine.description, .stopped)
                if let i = desired.snapshots.firstIndex(where: { $0.name == snapshot }) { desired.snapshots[i].createdAt = now }
            }
        }
    }

    /// Plans and applies until a plan is empty; returns the number of steps, or nil
    /// when it does not settle within `limit`.
    mutating func converge(limit: Int = 20) -> Int? {
        for step in 0..<limit {
            let plan = plan()
            if plan.actions.isEmpty { return step }
            apply(plan.actions)
        }
        return nil
    }
}
