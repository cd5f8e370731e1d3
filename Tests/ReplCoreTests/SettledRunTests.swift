import Foundation
import Testing

@testable import ReplCore

/// Which runs a tick may stop reading: only those with nothing left to do.
struct SettledRunTests {
    typealias W = PlanWorld
    static func finished(_ id: InstanceID, ago: TimeInterval = 7200, logs: Bool = true, started: Bool = true) -> InstanceState {
        InstanceState(
            id: id, generation: 1, phase: .succeeded, createdAt: W.epoch.addingTimeInterval(-ago - 60),
            startedAt: started ? W.epoch.addingTimeInterval(-ago - 30) : nil, finishedAt: W.epoch.addingTimeInterval(-ago),
            exitCode: 0, logsCollected: logs)
    }

    func settled(_ w: W) -> [RunID] {
        Planner.settledRuns(w.desired, machines: w.machines, plan: w.plan(), controlID: W.cid, now: w.now, settleTime: 3600).map(\.id)
    }

    @Test func onlyRunsWithNothingLeftAreSettled() {
        typealias P = PlannerTests
        var w = W(
            runs: [
                P.run(1, "done", instances: [Self.finished(1)]),
                P.run(2, "recent", instances: [Self.finished(2, ago: 60)]),
                P.run(3, "nolog", instances: [Self.finished(3, logs: false)]),
                P.run(4, "machine", hold: .minutes(600), instances: [Self.finished(4)]),
                P.run(5, "running", instances: [P.running(5)]),
                P.run(6, "more", replicas: 2, instances: [Self.finished(6)]),
                P.run(7, "snapsource", instances: [Self.finished(7)]),
                P.run(8, "cancelled", cancelled: true, instances: [Self.finished(8, logs: false, started: false)]),
                P.run(9, "stray", instances: [Self.finished(9)]),
            ], snapshots: [DesiredSnapshot(id: 20, name: "snap", fromRun: "snapsource", instanceID: 21)])
        w.newMachine("repl-ab12cd-4-4", .running)
        w.newMachine("repl-ab12cd-5-5", .running)
        // A machine with run 9's id that is no instance of it (made by hand, or a list that
        // showed it late) keeps the run live until it is gone.
        w.newMachine("repl-ab12cd-9-30", .running)
        #expect(settled(w) == [1, 8])
    }
}
