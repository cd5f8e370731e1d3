import Foundation

extension PlanBuilder {
    // MARK: Snapshots

    mutating func planSnapshots() {
        guard !input.desired.snapshots.isEmpty else { return }
        var runsByName: [String: DesiredRun] = [:]
        runsByName.reserveCapacity(input.desired.runs.count)
        for run in input.desired.runs { runsByName[run.manifest.name] = run }
        for snap in input.desired.snapshots {
            let name = Planner.machineName(settings, snapshot: snap.id, instance: snap.instanceID)
            if input.inFlight.contains(name.description) { continue }
            let machine = byName[name.description]
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
                    if settings.whitelist.contains(name.description) {
                        waiting[name.description] = "whitelisted: left running until `repl orphans unwhitelist \(name)`"
                    } else {
                        actions.append(.stop(machine: name))
                    }
                }
                continue
            }
            guard let run = runsByName[snap.fromRun], let source = Self.snapshotSource(of: run) else {
                waiting[name.description] = "waiting for run \(snap.fromRun) to have an instance"
                continue
            }
            let sourceName = Planner.machineName(settings, run: run.id, instance: source.id)
            if source.phase.isTerminal && byName[sourceName.description] == nil && !input.inFlight.contains(sourceName.description) {
                waiting[name.description] =
                    "\(Planner.cannotBeTaken): \(snap.fromRun) finished and its machine \(sourceName) is gone; apply the run again (with hold: to keep its machine) and snapshot that"
                continue
            }
            guard source.phase >= .running, let sourceMachine = byName[sourceName.description],
                sourceMachine.state == .running || sourceMachine.state == .stopped
            else {
                waiting[name.description] = "waiting for \(sourceName) to finish bootstrapping"
                continue
            }
            if input.inFlight.contains(sourceName.description) || actions.contains(where: { $0.machine == sourceName && $0.isDestructive }) {
                waiting[name.description] = "\(sourceName) is being removed"
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
        actions[firstDelete...].sort { ($0.machine?.description ?? "") < ($1.machine?.description ?? "") }
    }

    mutating func considerDeleting(_ entry: inout ClassifiedMachine, created: Date?, grace: TimeSpan, reason: DeleteReason) {
        guard let created else {
            entry.why += "; age unknown (id is not a ULID), so it is kept"
            return
        }
        let deletable = created.adding(grace)
        entry.deletableAt = deletable
        if now >= deletable {
            // Only a name that parsed as ours is ever deleted.
            if let name = entry.name, entry.machine.state != .deleting && !input.inFlight.contains(entry.machine.name) {
                actions.append(.delete(machine: name, reason: reason))
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
