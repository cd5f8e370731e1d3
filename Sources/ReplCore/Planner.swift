import Foundation

/// The planner: a pure function from desired state, observed machines, probe
/// results, the time and settings to actions. No I/O, no clock, no randomness.
public enum Planner {
    /// How a snapshot's waiting reason begins when it can never be taken as things stand.
    public static let cannotBeTaken = "cannot be taken"

    public static func machineName(_ settings: PlannerSettings, run: RunID, instance: InstanceID) -> MachineName {
        MachineName(controlID: settings.controlID, manifestID: run, instanceID: instance)
    }

    public static func machineName(_ settings: PlannerSettings, snapshot: SnapshotID, instance: InstanceID) -> MachineName {
        MachineName(controlID: settings.controlID, manifestID: snapshot, instanceID: instance)
    }

    public static func plan(_ input: PlanInput) -> Plan {
        var builder = PlanBuilder(input: input, observed: input.machines)
        builder.planRuns()
        builder.planSnapshots()
        builder.classify()
        return Plan(
            actions: builder.actions, machines: builder.classified, nextCheck: builder.nextCheck, waiting: builder.waiting)
    }
}

struct PlanBuilder {
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
    var readySnapshots: [String: MachineName] = [:]

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
            let name = Planner.machineName(settings, snapshot: snap.id, instance: snap.instanceID)
            accounted.insert(name.description)
            // Ready only once its taking was recorded whole: a clone interrupted midway may be partial.
            if !snap.deleted, snap.createdAt != nil, byName[name.description]?.state == .stopped, !input.inFlight.contains(name.description) {
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
                        nextInstanceID = nextInstanceID.next
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
                accounted.insert(name.description)
                if input.inFlight.contains(name.description) {
                    waiting[name.description] = "an action on this machine is in flight"
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
    mutating func removeMachine(_ run: DesiredRun, _ instance: InstanceState, _ name: MachineName, _ reason: DeleteReason) {
        // A machine under the instance's name that repl did not make is not the instance's to
        // remove (found by attacking: scaling to 0 deleted a hand-made one as "retired").
        if let machine = byName[name.description], instance.startedAt == nil, let conflict = Self.conflict(run, instance, machine) {
            waiting[name.description] = "\(conflict); left as it is"
            return
        }
        if instance.startedAt != nil && !instance.logsCollected {
            actions.append(.collectLogs(run: run.id, instance: instance.id, machine: name))
        }
        // A snapshot still to be taken from this instance keeps it (a short run would otherwise
        // be gone before its snapshot, and runs from the snapshot would wait for ever).
        if let snapshot = input.desired.snapshots.first(where: { !$0.deleted && $0.createdAt == nil && $0.fromRun == run.manifest.name }),
            Self.snapshotSource(of: run)?.id == instance.id, !run.cancelled
        {
            waiting[name.description] = "kept until snapshot \(snapshot.name) is taken from it"
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
    mutating func delete(_ name: MachineName, _ reason: DeleteReason) {
        if settings.whitelist.contains(name.description) {
            waiting[name.description] = "whitelisted: kept (\(reason.rawValue)) until `repl orphans unwhitelist \(name)`"
            return
        }
        actions.append(.delete(machine: name, reason: reason))
    }

    /// A machine gone from the list (deleted behind our back) may have left its logs in the
    /// host channel: they are kept all the same.
    mutating func collectLogsOfAGoneMachine(_ run: DesiredRun, _ instance: InstanceState, _ name: MachineName) {
        if instance.startedAt != nil && !instance.logsCollected {
            actions.append(.collectLogs(run: run.id, instance: instance.id, machine: name))
        }
    }

    mutating func planUnwanted(_ run: DesiredRun, _ instance: InstanceState, _ name: MachineName) {
        let why =
            run.cancelled
            ? "run cancelled"
            : instance.generation != run.generation ? "replaced by generation \(run.generation)" : "replicas reduced"
        if !instance.phase.isTerminal {
            actions.append(.markPhase(run: run.id, instance: instance.id, phase: .cancelled, exitCode: nil, reason: why))
        }
        if let machine = byName[name.description] {
            if machine.state != .deleting { removeMachine(run, instance, name, .retired) }
        } else {
            collectLogsOfAGoneMachine(run, instance, name)
        }
    }

    mutating func finish(
        _ run: DesiredRun, _ instance: InstanceState, _ name: MachineName, _ phase: InstancePhase,
        exitCode: Int?, reason: String?
    ) {
        actions.append(.markPhase(run: run.id, instance: instance.id, phase: phase, exitCode: exitCode, reason: reason))
        if byName[name.description] == nil {
            collectLogsOfAGoneMachine(run, instance, name)
        } else if run.manifest.hold == .zero {
            if let machine = byName[name.description], machine.state != .deleting {
                removeMachine(run, instance, name, .finished)
            }
        } else {
            due(now.adding(run.manifest.hold))
            collectArtifactsBeforeTheHold(run, instance, name)
        }
    }

    /// A held instance's artifacts (and logs) are copied when its command has ended, while its
    /// machine runs, not when the hold is over: a machine stopped during the hold (its own
    /// timer, a restart) would keep them out of reach.
    mutating func collectArtifactsBeforeTheHold(_ run: DesiredRun, _ instance: InstanceState, _ name: MachineName) {
        guard !run.manifest.artifacts.isEmpty, instance.startedAt != nil, !instance.logsCollected,
            byName[name.description]?.state == .running,
            !actions.contains(.collectLogs(run: run.id, instance: instance.id, machine: name))
        else { return }
        actions.append(.collectLogs(run: run.id, instance: instance.id, machine: name))
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
    mutating func finish(_ run: DesiredRun, _ instance: InstanceState, _ name: MachineName, _ status: ProbeResult) {
        switch status {
        case .exited(let code):
            finish(run, instance, name, code == 0 ? .succeeded : .failed, exitCode: code, reason: nil)
        default:
            finish(run, instance, name, .timedOut, exitCode: nil, reason: "maxDuration reached inside the machine")
        }
    }

    mutating func planWanted(_ run: DesiredRun, _ instance: InstanceState, _ name: MachineName) {
        let machine = byName[name.description]
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
                waiting[name.description] = "held until \(until)"
                collectArtifactsBeforeTheHold(run, instance, name)
            }
            return
        }
        let status = input.probes[name.description]
        // maxDuration counts from the launch in the running machine: a create that failed or
        // waited for addresses does not consume it, and nothing that never ran can succeed.
        if let max = run.manifest.maxDuration, let started = instance.startedAt {
            let deadline = started.adding(max)
            if now >= deadline {
                // The final status first: a command that ended in time is judged by its exit
                // code, however late this tick comes.
                if let status, status.isFinal {
                    finish(run, instance, name, status)
                } else if run.manifest.command != nil, byName[name.description]?.state == .running, now < deadline.adding(settings.deadlineGrace) {
                    // Its SIGTERM handler has the grace to clean up and write its last output.
                    due(deadline.adding(settings.deadlineGrace))
                    waiting[name.description] = "past its deadline; the command has until \(deadline.adding(settings.deadlineGrace)) to end"
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
                case .spec, .aws:
                    actions.append(.create(run: run.id, instance: instance.id, machine: name, spec: run.manifest.source.machineSpec!))
                    actions.append(.startRun(run: run.id, instance: instance.id, machine: name))
                case .snapshot(let snapshot):
                    if let source = readySnapshots[snapshot] {
                        actions.append(.clone(run: run.id, instance: instance.id, machine: name, snapshotMachine: source))
                        actions.append(.startRun(run: run.id, instance: instance.id, machine: name))
                    } else {
                        waiting[name.description] = "waiting for snapshot \(snapshot) to be ready"
                    }
                }
                return
            }
            if let conflict = Self.conflict(run, instance, machine) {
                waiting[name.description] = conflict
                return
            }
            switch machine.state {
            case .running: actions.append(.startRun(run: run.id, instance: instance.id, machine: name))
            case .stopped: actions.append(.start(machine: name))
            default: waiting[name.description] = "machine is \(machine.state)"
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
                waiting[name.description] = "machine is \(machine.state)"
            }
        default:
            break
        }
    }
}
