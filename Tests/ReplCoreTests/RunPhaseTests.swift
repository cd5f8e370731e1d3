import Foundation
import ReplCore
import Testing

/// A run's phase from its instances (found by the attack on #20): scaling a finished run down
/// does not rewrite how it ended, and a command that never ran never succeeds.
struct RunPhaseTests {
    func run(replicas: Int, command: String? = "exit 3", _ instances: [InstanceState]) -> DesiredRun {
        DesiredRun(id: 1, manifest: RunManifest(name: "job", command: command, replicas: replicas), instances: instances)
    }

    @Test func aFinishedRunScaledDownKeepsItsResult() {
        let failed = InstanceState(id: 2, generation: 1, phase: .failed, retired: true, exitCode: 1)
        let succeeded = InstanceState(id: 1, generation: 1, phase: .succeeded, exitCode: 0)
        #expect(run(replicas: 1, [succeeded, failed]).phase == .failed)
        #expect(run(replicas: 0, [InstanceState(id: 1, generation: 1, phase: .failed, retired: true, exitCode: 3)]).phase == .failed)
        // One cut short by the scaling is not a result: the rest decide.
        let cut = InstanceState(id: 2, generation: 1, phase: .cancelled, retired: true, reason: "replicas reduced")
        #expect(run(replicas: 1, [succeeded, cut]).phase == .succeeded)
    }

    @Test func aCommandScaledToNothingBeforeItRanNeverSucceeds() {
        #expect(run(replicas: 0, []).phase == .cancelled)
        #expect(run(replicas: 0, command: nil, []).phase == .succeeded)
        #expect(run(replicas: 1, []).phase == .pending)
    }
}
