import Foundation

/// Why a machine is deleted.
public enum DeleteReason: String, Hashable, Sendable, Codable {
    /// Its run ended and `hold` has passed.
    case finished
    /// Scaled down, replaced by a new generation, or its run cancelled.
    case retired
    /// Ours, but nothing wants it, and older than the grace period.
    case orphan
    /// Another installation's, deleted only with foreign deletion switched on.
    case foreign
    /// The snapshot was deleted.
    case snapshotDeleted
    /// A snapshot whose taking was interrupted (its clone may be partial): taken again.
    case incomplete
}

/// One thing the controller should do. Actions are values: the planner decides,
/// the controller carries them out in order per machine.
public enum Action: Hashable, Sendable, CustomStringConvertible {
    /// Record a new instance of a run (store only).
    case addInstance(run: RunID, instance: InstanceID, generation: Int)
    /// Mark an instance as no longer wanted (store only).
    case retireInstance(run: RunID, instance: InstanceID, reason: String)
    /// `orbctl create distro:version NAME -a arch`, wait until running.
    case create(run: RunID, instance: InstanceID, machine: MachineName, spec: MachineSpec)
    /// `orbctl clone SNAPSHOT NAME` then `orbctl start NAME`.
    case clone(run: RunID, instance: InstanceID, machine: MachineName, snapshotMachine: MachineName)
    /// `orbctl start NAME` for a stopped machine that should run.
    case start(machine: MachineName)
    /// `orbctl stop NAME` for a snapshot that someone started.
    case stop(machine: MachineName)
    /// Write the wrapper and launch it detached.
    case startRun(run: RunID, instance: InstanceID, machine: MachineName)
    /// Record a phase change (store only).
    case markPhase(run: RunID, instance: InstanceID, phase: InstancePhase, exitCode: Int?, reason: String?)
    /// Copy the run log to the state directory before the machine goes.
    case collectLogs(run: RunID, instance: InstanceID, machine: MachineName)
    /// Stop, short grace, `orbctl delete -f NAME`.
    case delete(machine: MachineName, reason: DeleteReason)
    /// `orbctl clone SOURCE NAME` then `orbctl stop NAME`.
    case takeSnapshot(snapshot: String, sourceMachine: MachineName, machine: MachineName)

    /// The machine the action concerns, if any; actions on one machine run in order.
    public var machine: MachineName? {
        switch self {
        case .addInstance, .retireInstance, .markPhase: return nil
        case .create(_, _, let m, _), .clone(_, _, let m, _), .start(let m), .stop(let m), .startRun(_, _, let m),
            .collectLogs(_, _, let m), .delete(let m, _), .takeSnapshot(_, _, let m):
            return m
        }
    }

    /// The circuit breaker the action answers to, when it takes capacity: an EC2 create's
    /// instance type and zone; "" for OrbStack's address pool (and a clone or start anywhere).
    public var capacityScope: String {
        if case .create(_, _, _, .aws(let spec)) = self { return spec.capacityScope }
        return ""
    }

    /// Names of machines that must already exist for the action (a clone's or snapshot's source).
    public var sourceMachine: MachineName? {
        switch self {
        case .clone(_, _, _, let s): return s
        case .takeSnapshot(_, let s, _): return s
        default: return nil
        }
    }

    /// Whether the action stops or deletes a machine.
    /// Whether it makes or starts something for an instance (a machine, its command).
    public var startsSomething: Bool {
        switch self {
        case .create, .clone, .startRun: return true
        default: return false
        }
    }

    public var isDestructive: Bool {
        switch self {
        case .delete, .stop: return true
        default: return false
        }
    }

    /// The instance the action belongs to, if any.
    public var instance: (run: RunID, instance: InstanceID)? {
        switch self {
        case .addInstance(let r, let i, _), .retireInstance(let r, let i, _), .create(let r, let i, _, _),
            .clone(let r, let i, _, _), .startRun(let r, let i, _), .markPhase(let r, let i, _, _, _),
            .collectLogs(let r, let i, _):
            return (r, i)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .addInstance(let r, let i, let g): return "add instance \(Base36.encode(i)) to run \(Base36.encode(r)) (generation \(g))"
        case .retireInstance(let r, let i, let why): return "retire instance \(Base36.encode(i)) of run \(Base36.encode(r)): \(why)"
        case .create(_, _, let m, let s): return "create \(m) (\(s))"
        case .clone(_, _, let m, let s): return "clone \(s) to \(m)"
        case .start(let m): return "start \(m)"
        case .stop(let m): return "stop \(m)"
        case .startRun(_, _, let m): return "start the run on \(m)"
        case .markPhase(_, let i, let p, let code, let why):
            return "instance \(Base36.encode(i)) is \(p.rawValue)\(code.map { " (exit \($0))" } ?? "")\(why.map { ": \($0)" } ?? "")"
        case .collectLogs(_, _, let m): return "collect logs of \(m)"
        case .delete(let m, let r): return "delete \(m) (\(r.rawValue))"
        case .takeSnapshot(let s, let src, let m): return "snapshot \(s): clone \(src) to \(m) and stop it"
        }
    }
}

/// How a machine in `orbctl list` relates to this installation.
public enum MachineClass: String, Hashable, Sendable, Codable {
    /// Our control id, accounted for by desired state.
    case owned
    /// Our control id, not accounted for: deleted once older than the grace period.
    case orphan
    /// Our control id, not accounted for, but kept on purpose.
    case whitelisted
    /// A `repl-` name of another control id: reported, deleted only when asked.
    case foreign
    /// Any other name: never touched.
    case unmanaged
}

/// One observed machine with its class and, for orphans and foreign machines,
/// when it may be deleted.
public struct ClassifiedMachine: Hashable, Sendable {
    public var machine: ObservedMachine
    public var machineClass: MachineClass
    /// Parsed name, when it is one of ours or another installation's.
    public var name: MachineName?
    /// Age from the ULID id; `nil` when unknown.
    public var age: TimeInterval?
    /// For orphans (and foreign machines with foreign deletion on): when the grace ends.
    public var deletableAt: Date?
    /// A short human reason for the class.
    public var why: String
}

/// Knobs of planning.
public struct PlannerSettings: Hashable, Sendable {
    public var controlID: ControlID
    /// Orphans younger than this are never deleted (default 2 minutes).
    public var orphanGrace: TimeSpan
    /// Delete other installations' machines too (`--include-foreign`).
    public var includeForeign: Bool
    /// Names kept on purpose even though nothing wants them.
    public var whitelist: Set<String>
    /// After a command's deadline, how long it has to end before it is judged without a final
    /// status: the wrapper's SIGTERM comes at the next whole second, its SIGKILL 5 s later.
    public var deadlineGrace: TimeSpan = .seconds(9)

    public init(controlID: ControlID, orphanGrace: TimeSpan = .minutes(2), includeForeign: Bool = false, whitelist: Set<String> = []) {
        self.controlID = controlID
        self.orphanGrace = orphanGrace
        self.includeForeign = includeForeign
        self.whitelist = whitelist
    }
}

/// Everything the planner looks at, as plain values.
public struct PlanInput: Sendable {
    public var desired: DesiredState
    /// The machines of one `orbctl list` that succeeded: a failed list never reaches the
    /// planner (the controller's tick ends at it), so it cannot be read as "no machines".
    public var machines: [ObservedMachine]
    /// Status reads of this tick, by machine name.
    public var probes: [String: ProbeResult]
    /// Machines with an open intent (an action in flight or interrupted): never acted on.
    public var inFlight: Set<String>
    public var now: Date
    public var settings: PlannerSettings

    public init(
        desired: DesiredState, machines: [ObservedMachine], probes: [String: ProbeResult] = [:],
        inFlight: Set<String> = [], now: Date, settings: PlannerSettings
    ) {
        self.desired = desired
        self.machines = machines
        self.probes = probes
        self.inFlight = inFlight
        self.now = now
        self.settings = settings
    }
}

/// What the planner decided.
public struct Plan: Sendable, Equatable {
    public var actions: [Action]
    /// Every observed machine, classified.
    public var machines: [ClassifiedMachine]
    /// The earliest time at which something time-based becomes due (a deadline,
    /// the end of a hold or of an orphan's grace): "check again after".
    public var nextCheck: Date?
    /// Why instances that could not progress are waiting, by machine name.
    public var waiting: [String: String]

    public var isEmpty: Bool { actions.isEmpty }
}
