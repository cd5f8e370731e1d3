import Foundation

extension Planner {
    /// Runs with nothing left to do, which ticks need not read again (they are archived, and
    /// stay queryable as history). A run is settled when, in this tick's observation and plan:
    /// every instance has finished and had its log collected; no machine with the run's id is
    /// listed; the plan neither acts on it nor has it waiting; no snapshot still to be taken
    /// names it; and its last instance finished at least `settleTime` ago (a list that left a
    /// held machine out for a moment does not archive its run).
    /// Any later change to the run (apply, cancel, delete, a snapshot from it) brings it back.
    public static func settledRuns(
        _ desired: DesiredState, machines: [ObservedMachine], plan: Plan,
        controlID: ControlID, now: Date, settleTime: TimeInterval
    ) -> [DesiredRun] {
        var busy: Set<RunID> = []
        func note(_ name: MachineName?) {
            if let name, name.controlID == controlID, let run = name.runID { busy.insert(run) }
        }
        machines.forEach { note(MachineName(parsing: $0.name)) }
        plan.waiting.keys.forEach { note(MachineName(parsing: $0)) }
        for action in plan.actions {
            if let run = action.instance?.run { busy.insert(run) }
            note(action.machine)
            note(action.sourceMachine)
        }
        let pendingSnapshotSources = Set(desired.snapshots.filter { !$0.deleted && $0.createdAt == nil }.map(\.fromRun))
        let settledBefore = now.addingTimeInterval(-settleTime)
        return desired.runs.filter { run in
            guard !busy.contains(run.id), run.phase.isTerminal, !pendingSnapshotSources.contains(run.manifest.name) else { return false }
            return run.instances.allSatisfy { instance in
                instance.phase.isTerminal
                    && (instance.startedAt == nil || instance.logsCollected)
                    && (instance.finishedAt ?? .distantPast) <= settledBefore
            }
        }
    }
}
