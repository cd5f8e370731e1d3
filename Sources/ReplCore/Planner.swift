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
    case create(run: RunID, instance: InstanceID, machine: String, spec: Spec)
    /// `orbctl clone SNAPSHOT NAME` then `orbctl start NAME`.
    case clone(run: RunID, instance: InstanceID, machine: String, snapshotMachine: String)
    /// `orbctl start NAME` for a stopped machine that should run.
    case start(machine: String)
    /// `orbctl stop NAME` for a snapshot that someone started.
    case stop(machine: String)
    /// Write the wrapper and launch it detached.
    case startRun(run: RunID, instance: InstanceID, machine: String)
    /// Record a phase change (store only).
    case markPhase(run: RunID, instance: InstanceID, phase: InstancePhase, exitCode: Int?, reason: String?)
    /// Copy the run log to the state directory before the machine goes.
    case collectLogs(run: RunID, instance: InstanceID, machine: String)
    /// Stop, short grace, `orbctl delete -f NAME`.
    case delete(machine: String, reason: DeleteReason)
    /// `orbctl clone SOURCE NAME` then `orbctl stop NAME`.
    case takeSnapshot(snapshot: String, sourceMachine: String, machine: String)

    /// The machine the action concerns, if any; actions on one machine run in order.
    public var machine: String? {
        switch self {
        case .addInstance, .retireInstance, .markPhase: return nil
        case .create(_, _, let m, _), .clone(_, _, let m, _), .start(let m), .stop(let m), .startRun(_, _, let m),
            .collectLogs(_, _, let m), .delete(let m, _), .takeSnapshot(_, _, let m):
            return m
        }
    }

    /// Names of machines that must already exist for the action (a clone's or snapshot's source).
    public var sourceMachine: String? {
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
    public var observation: Observation
    /// Status reads of this tick, by machine name.
    public var probes: [String: ProbeResult]
    /// Machines with an open intent (an action in flight or interrupted): never acted on.
    public var inFlight: Set<String>
    public var now: Date
    public var settings: PlannerSettings

    public init(
        desired: DesiredState, observation: Observation, probes: [String: ProbeResult] = [:],
        inFlight: Set<String> = [], now: Date, settings: PlannerSettings
    ) {
        self.desired = desired
        self.observation = observation
        self.probes = probes
        self.inFlight = inFlight
        self.now = now
        self.settings = settings
    }
}

/// What the planner decided.
public struct Plan: Sendable, Equatable {
    public var actions: [Action]
    /// Every observed machine, classified; empty when the observation failed.
    public var machines: [ClassifiedMachine]
    /// Set when the list could not be trusted; then there are no actions.
    public var observationError: String?
    /// The earliest time at which something time-based becomes due (a deadline,
    /// the end of a hold or of an orphan's grace): "check again after".
    public var nextCheck: Date?
    /// Why instances that could not progress are waiting, by machine name.
    public var waiting: [String: String]

    public var isEmpty: Bool { actions.isEmpty }
}

/// The planner: a pure function from desired state, observed machines, probe
/// results, the time and settings to actions. No I/O, no clock, no randomness.
public enum Planner {
    /// How a snapshot's waiting reason begins when it can never be taken as things stand.
    public static let cannotBeTaken = "cannot be taken"

    public static func machineName(_ settings: PlannerSettings, run: RunID, instance: InstanceID) -> String {
        MachineName(controlID: settings.controlID, manifestID: run, instanceID: instance).description
    }

    public static func plan(_ input: PlanInput) -> Plan {
        guard case .machines(let observed) = input.observation else {
            if case .failed(let why) = input.observation {
                return Plan(actions: [], machines: [], observationError: why, nextCheck: nil, waiting: [:])
            }
            fatalError("unreachable")
        }
        var builder = PlanBuilder(input: input, observed: observed)
        builder.planRuns()
        builder.planSnapshots()
        builder.classify()
        return Plan(
            actions: builder.actions, machines: builder.classified, observationError: nil,
            nextCheck: builder.nextCheck, waiting: builder.waiting)
    }
}

private struct PlanBuilder {
    let input: PlanInput
    let settings: PlannerSettings
    let now: Date
    var byName: [String: ObservedMachine] = [:]
    /// The machines as listed, each name once (the first of a name wins, as in `byName`).
    let observed: [ObservedMachine]
    /// Names desired state accounts for (instances, snapshots, in-flight machines).
    var accounted: Set<String> = []
    var actions: [Action] = []
    var classified: [ClassifiedMachine] = []
    var nextCheck: Date?
    var waiting: [String: String] = [:]
    var nextInstanceID: InstanceID
    /// Snapshot name → its machine name, when the machine exists and is stopped.
    var readySnapshots: [String: String] = [:]

    init(input: PlanInput, observed: [ObservedMachine]) {
        self.input = input
        self.settings = input.settings
        self.now = input.now
        self.nextInstanceID = input.desired.nextInstanceID
        byName.reserveCapacity(observed.count)
        for m in observed where byName[m.name] == nil { byName[m.name] = m }
        // OrbStack's names are unique; a list that repeats one is read as its first.
        if byName.count == observed.count {
            self.observed = observed
        } else {
            var seen = Set<String>()
            self.observed = observed.filter { seen.insert($0.name).inserted }
        }
        accounted = input.inFlight
        for snap in input.desired.snapshots {
            let name = Planner.machineName(settings, run: snap.id, instance: snap.instanceID)
            accounted.insert(name)
            // Ready only once its taking was recorded whole: a clone interrupted midway may be partial.
            if !snap.deleted, snap.createdAt != nil, byName[name]?.state == .stopped, !input.inFlight.contains(name) {
                readySnapshots[snap.name] = name
            }
        }
    }

    mutating func due(_ date: Date) {
        if date > now, nextCheck == nil || date < nextCheck! { nextCheck = date }
    }

    // MARK: Runs

    mutating func planRuns() {
        for run in input.desired.runs {
            var instances = run.instances
            if !run.cancelled {
                let current = instances.filter { run.wants($0) }
                if current.count < run.manifest.replicas {
                    for _ in current.count..<run.manifest.replicas {
                        let id = nextInstanceID
                        nextInstanceID += 1
                        actions.append(.addInstance(run: run.id, instance: id, generation: run.generation))
                        instances.append(InstanceState(id: id, generation: run.generation))
                    }
                } else if current.count > run.manifest.replicas {
                    // Retire the newest first, so the longest-running machines are kept.
                    let excess = Set(current.map(\.id).sorted(by: >).prefix(current.count - run.manifest.replicas))
                    for i in instances.indices where excess.contains(instances[i].id) {
                        actions.append(
                            .retireInstance(
                                run: run.id, instance: instances[i].id,
                                reason: "replicas reduced to \(run.manifest.replicas)"))
                        instances[i].retired = true
                    }
                }
            }
            for instance in instances {
                let name = Planner.machineName(settings, run: run.id, instance: instance.id)
                accounted.insert(name)
                if input.inFlight.contains(name) {
                    waiting[name] = "an action on this machine is in flight"
                    continue
                }
                if run.wants(instance) {
                    planWanted(run, instance, name)
                } else {
                    planUnwanted(run, instance, name)
                }
            }
        }
    }

    /// Collect the log first when the command ran, then delete.
    mutating func removeMachine(_ run: DesiredRun, _ instance: InstanceState, _ name: String, _ reason: DeleteReason) {
        if instance.startedAt != nil && !instance.logsCollected {
            actions.append(.collectLogs(run: run.id, instance: instance.id, machine: name))
        }
        // A snapshot still to be taken from this instance keeps it (a short run would otherwise
        // be gone before its snapshot, and runs from the snapshot would wait for ever).
        if let snapshot = input.desired.snapshots.first(where: { !$0.deleted && $0.createdAt == nil && $0.fromRun == run.manifest.name }),
            Self.snapshotSource(of: run)?.id == instance.id, !run.cancelled
        {
            waiting[name] = "kept until snapshot \(snapshot.name) is taken from it"
            return
        }
        delete(name, reason)
    }

    /// The instance a snapshot of `run` is taken from: its first current one.
    static func snapshotSource(of run: DesiredRun) -> InstanceState? {
        run.instances.first { run.wants($0) || $0.phase.isTerminal && $0.generation == run.generation }
    }

    /// Every delete of a machine we account for goes through here: the whitelist protects
    /// every machine it names, ours included (kept for debugging), and the plan says so.
    mutating func delete(_ name: String, _ reason: DeleteReason) {
        if settings.whitelist.contains(name) {
            waiting[name] = "whitelisted: kept (\(reason.rawValue)) until `repl orphans unwhitelist \(name)`"
            return
        }
        actions.append(.delete(machine: name, reason: reason))
    }

    /// A machine gone from the list (deleted behind our back) may have left its logs in the
    /// host channel: they are kept all the same.
    mutating func collectLogsOfAGoneMachine(_ run: DesiredRun, _ instance: InstanceState, _ name: String) {
        if instance.startedAt != nil && !instance.logsCollected {
            actions.append(.collectLogs(run: run.id, instance: instance.id, machine: name))
        }
    }

    mutating func planUnwanted(_ run: DesiredRun, _ instance: InstanceState, _ name: String) {
        let why =
            run.cancelled
            ? "run cancelled"
            : instance.generation != run.generation ? "replaced by generation \(run.generation)" : "replicas reduced"
        if !instance.phase.isTerminal {
            actions.append(.markPhase(run: run.id, instance: instance.id, phase: .cancelled, exitCode: nil, reason: why))
        }
        if let machine = byName[name] {
            if machine.state != .deleting { removeMachine(run, instance, name, .retired) }
        } else {
            collectLogsOfAGoneMachine(run, instance, name)
        }
    }

    mutating func finish(
        _ run: DesiredRun, _ instance: InstanceState, _ name: String, _ phase: InstancePhase,
        exitCode: Int?, reason: String?
    ) {
        actions.append(.markPhase(run: run.id, instance: instance.id, phase: phase, exitCode: exitCode, reason: reason))
        if byName[name] == nil {
            collectLogsOfAGoneMachine(run, instance, name)
        } else if run.manifest.hold == .zero {
            if let machine = byName[name], machine.state != .deleting {
                removeMachine(run, instance, name, .finished)
            }
        } else {
            due(now.adding(run.manifest.hold))
        }
    }

    /// Why a machine that has the instance's name is not the instance's, or nil when it is: it
    /// must have been made after the instance's machine was asked for (its ULID time), and
    /// from the spec asked for. A machine made by hand under the next name (an alpine machine
    /// named like the next instance) is a conflict: never given the command, never deleted.
    static func conflict(_ run: DesiredRun, _ instance: InstanceState, _ machine: ObservedMachine) -> String? {
        let made = machine.createdAt
        guard let requested = instance.createdAt else {
            return "conflict: \(machine.name) exists, but repl never asked for it; delete or rename it, or delete run \(run.manifest.name)"
        }
        if let made, made < requested.addingTimeInterval(-5) {
            return "conflict: \(machine.name) was made before repl asked for it (at \(made)); delete or rename it, or delete run \(run.manifest.name)"
        }
        if case .spec(let spec) = run.manifest.source,
            (machine.distro, machine.version, machine.arch) != (spec.distro, spec.version, spec.arch)
        {
            return
                "conflict: \(machine.name) is \(machine.distro):\(machine.version):\(machine.arch), not \(spec); delete or rename it, or delete run \(run.manifest.name)"
        }
        return nil
    }

    /// Finishes an instance as its final status says.
    mutating func finish(_ run: DesiredRun, _ instance: InstanceState, _ name: String, _ status: ProbeResult) {
        switch status {
        case .exited(let code):
            finish(run, instance, name, code == 0 ? .succeeded : .failed, exitCode: code, reason: nil)
        default:
            finish(run, instance, name, .timedOut, exitCode: nil, reason: "maxDuration reached inside the machine")
        }
    }

    mutating func planWanted(_ run: DesiredRun, _ instance: InstanceState, _ name: String) {
        let machine = byName[name]
        if instance.phase.isTerminal {
            guard let machine else {
                collectLogsOfAGoneMachine(run, instance, name)
                return
            }
            guard machine.state != .deleting else { return }
            let until = (instance.finishedAt ?? now).adding(run.manifest.hold)
            if now >= until {
                removeMachine(run, instance, name, .finished)
            } else {
                due(until)
                waiting[name] = "held until \(until)"
            }
            return
        }
        let status = input.probes[name]
        // maxDuration counts from the launch in the running machine: a create that failed or
        // waited for addresses does not consume it, and nothing that never ran can succeed.
        if let max = run.manifest.maxDuration, let started = instance.startedAt {
            let deadline = started.adding(max)
            if now >= deadline {
                // The final status first: a command that ended in time is judged by its exit
                // code, however late this tick comes.
                if let status, status.isFinal {
                    finish(run, instance, name, status)
                } else if run.manifest.command != nil, byName[name]?.state == .running, now < deadline.adding(settings.deadlineGrace) {
                    // Its SIGTERM handler has the grace to clean up and write its last output.
                    due(deadline.adding(settings.deadlineGrace))
                    waiting[name] = "past its deadline; the command has until \(deadline.adding(settings.deadlineGrace)) to end"
                } else {
                    // Without a command, reaching maxDuration is the machine's planned end.
                    let phase: InstancePhase = run.manifest.command == nil ? .succeeded : .timedOut
                    finish(run, instance, name, phase, exitCode: nil, reason: "maxDuration \(max) reached")
                }
                return
            }
            due(deadline)
        }
        switch instance.phase {
        case .pending, .provisioning:
            // A launch whose record was lost (a crash after it, a locked store): the host
            // channel shows it, so it is recorded, never launched again.
            if let status, machine != nil || status.isFinal {
                if status.isFinal {
                    finish(run, instance, name, status)
                } else {
                    let phase: InstancePhase = status == .running ? .running : .bootstrapping
                    actions.append(
                        .markPhase(run: run.id, instance: instance.id, phase: phase, exitCode: nil, reason: "launch found in the host channel"))
                }
                return
            }
            guard let machine else {
                // Create (or clone) and start the run in one go: both calls leave the machine
                // running, so the run need not wait for the next tick's list.
                switch run.manifest.source {
                case .spec(let spec):
                    actions.append(.create(run: run.id, instance: instance.id, machine: name, spec: spec))
                    actions.append(.startRun(run: run.id, instance: instance.id, machine: name))
                case .snapshot(let snapshot):
                    if let source = readySnapshots[snapshot] {
                        actions.append(.clone(run: run.id, instance: instance.id, machine: name, snapshotMachine: source))
                        actions.append(.startRun(run: run.id, instance: instance.id, machine: name))
                    } else {
                        waiting[name] = "waiting for snapshot \(snapshot) to be ready"
                    }
                }
                return
            }
            if let conflict = Self.conflict(run, instance, machine) {
                waiting[name] = conflict
                return
            }
            switch machine.state {
            case .running: actions.append(.startRun(run: run.id, instance: instance.id, machine: name))
            case .stopped: actions.append(.start(machine: name))
            default: waiting[name] = "machine is \(machine.state)"
            }
        case .bootstrapping, .running:
            // A command that ended is judged by its status, wherever its machine is now.
            if let status, status.isFinal {
                finish(run, instance, name, status)
                return
            }
            guard let machine else {
                finish(run, instance, name, .failed, exitCode: nil, reason: "machine \(name) disappeared")
                return
            }
            switch machine.state {
            case .running:
                if case .gone(let why)? = status {
                    finish(run, instance, name, .failed, exitCode: nil, reason: why)
                } else if status == .running && instance.phase == .bootstrapping {
                    actions.append(.markPhase(run: run.id, instance: instance.id, phase: .running, exitCode: nil, reason: nil))
                }
            case .stopped:
                finish(run, instance, name, .failed, exitCode: nil, reason: "machine stopped before the command ended")
            default:
                waiting[name] = "machine is \(machine.state)"
            }
        default:
            break
        }
    }

    // MARK: Snapshots

    mutating func planSnapshots() {
        guard !input.desired.snapshots.isEmpty else { return }
        var runsByName: [String: DesiredRun] = [:]
        runsByName.reserveCapacity(input.desired.runs.count)
        for run in input.desired.runs { runsByName[run.manifest.name] = run }
        for snap in input.desired.snapshots {
            let name = Planner.machineName(settings, run: snap.id, instance: snap.instanceID)
            if input.inFlight.contains(name) { continue }
            let machine = byName[name]
            if snap.deleted {
                if let machine, machine.state != .deleting { delete(name, .snapshotDeleted) }
                continue
            }
            if let machine {
                if snap.createdAt == nil {
                    // Its taking was interrupted (the process died during the clone): what exists
                    // may be partial, so it is deleted and taken again.
                    if machine.state != .deleting { delete(name, .incomplete) }
                    continue
                }
                if machine.state == .running || machine.state == .starting {
                    if settings.whitelist.contains(name) {
                        waiting[name] = "whitelisted: left running until `repl orphans unwhitelist \(name)`"
                    } else {
                        actions.append(.stop(machine: name))
                    }
                }
                continue
            }
            guard let run = runsByName[snap.fromRun], let source = Self.snapshotSource(of: run) else {
                waiting[name] = "waiting for run \(snap.fromRun) to have an instance"
                continue
            }
            let sourceName = Planner.machineName(settings, run: run.id, instance: source.id)
            if source.phase.isTerminal && byName[sourceName] == nil && !input.inFlight.contains(sourceName) {
                waiting[name] =
                    "\(Planner.cannotBeTaken): \(snap.fromRun) finished and its machine \(sourceName) is gone; apply the run again (with hold: to keep its machine) and snapshot that"
                continue
            }
            guard source.phase >= .running, let sourceMachine = byName[sourceName],
                sourceMachine.state == .running || sourceMachine.state == .stopped
            else {
                waiting[name] = "waiting for \(sourceName) to finish bootstrapping"
                continue
            }
            if input.inFlight.contains(sourceName) || actions.contains(where: { $0.machine == sourceName && $0.isDestructive }) {
                waiting[name] = "\(sourceName) is being removed"
                continue
            }
            actions.append(.takeSnapshot(snapshot: snap.name, sourceMachine: sourceName, machine: name))
        }
    }

    // MARK: Orphans

    mutating func classify() {
        let grace = settings.orphanGrace
        let firstDelete = actions.count
        classified.reserveCapacity(observed.count)
        // In the list's order (sorting 10,000 names cost a seventh of a plan); the deletes
        // decided here are put in name order below, so the plan does not depend on it.
        for machine in observed {
            let parsed = MachineName(parsing: machine.name)
            let created = machine.createdAt
            let age = created.map { now.timeIntervalSince($0) }
            var entry = ClassifiedMachine(
                machine: machine, machineClass: .unmanaged, name: parsed, age: age,
                deletableAt: nil, why: "not a repl machine")
            guard let parsed else {
                classified.append(entry)
                continue
            }
            if parsed.controlID != settings.controlID {
                entry.machineClass = .foreign
                entry.why = "made by another installation (control id \(parsed.controlID))"
                if settings.whitelist.contains(machine.name) {
                    entry.why += "; whitelisted"
                } else if settings.includeForeign {
                    considerDeleting(&entry, created: created, grace: grace, reason: .foreign)
                }
            } else if accounted.contains(machine.name) {
                entry.machineClass = .owned
                entry.why = "wanted by desired state"
            } else if settings.whitelist.contains(machine.name) {
                entry.machineClass = .whitelisted
                entry.why = "whitelisted"
            } else {
                entry.machineClass = .orphan
                entry.why = "no run or snapshot accounts for it"
                considerDeleting(&entry, created: created, grace: grace, reason: .orphan)
            }
            classified.append(entry)
        }
        actions[firstDelete...].sort { ($0.machine ?? "") < ($1.machine ?? "") }
    }

    mutating func considerDeleting(_ entry: inout ClassifiedMachine, created: Date?, grace: TimeSpan, reason: DeleteReason) {
        guard let created else {
            entry.why += "; age unknown (id is not a ULID), so it is kept"
            return
        }
        let deletable = created.adding(grace)
        entry.deletableAt = deletable
        if now >= deletable {
            if entry.machine.state != .deleting && !input.inFlight.contains(entry.machine.name) {
                actions.append(.delete(machine: entry.machine.name, reason: reason))
            }
        } else {
            due(deletable)
        }
    }
}

extension Plan {
    /// The waits that need a person (a conflicting machine, a snapshot that cannot be taken):
    /// nothing repl does will end them.
    public var blocked: [(machine: String, why: String)] {
        waiting.filter { $0.value.hasPrefix("conflict:") || $0.value.hasPrefix(Planner.cannotBeTaken) }
            .sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}
