import Foundation
import ReplCore

/// The planner alone: N desired instances against M observed machines.
enum PlannerBench {
    struct Result {
        var desired: Int
        var observed: Int
        var medianMilliseconds: Double
        var actions: Int
    }

    /// Builds a converged fleet of `desired` running instances (one per run, so
    /// every run is planned) with `observed` machines, the extra ones orphans and
    /// unmanaged, and times `Planner.plan` over several rounds.
    static func run(desired: Int, observed: Int, rounds: Int = 7) -> Result {
        let cid = ControlID("bench0")!
        let now = Date()
        var rng = SystemRandomNumberGenerator()
        let settings = PlannerSettings(controlID: cid)
        var runs: [DesiredRun] = []
        var machines: [ObservedMachine] = []
        runs.reserveCapacity(desired)
        for i in 0..<desired {
            let id = InstanceID(UInt64(i + 1))
            let instance = InstanceState(
                id: id, generation: 1, phase: .running, createdAt: now.addingTimeInterval(-60),
                startedAt: now.addingTimeInterval(-55))
            runs.append(DesiredRun(id: RunID(UInt64(i + 1)), manifest: RunManifest(name: "run\(i)", command: "sleep 1000"), instances: [instance]))
            if machines.count < observed {
                machines.append(
                    ObservedMachine(
                        id: ULID.make(at: now.addingTimeInterval(-60), using: &rng),
                        name: Planner.machineName(settings, run: RunID(UInt64(i + 1)), instance: id).description, state: .running))
            }
        }
        var extra = 0
        while machines.count < observed {
            extra += 1
            let name = extra % 2 == 0 ? "dev-\(extra)" : "repl-bench0-none-\(String(1_000_000 + extra, radix: 36))"
            machines.append(ObservedMachine(id: ULID.make(at: now.addingTimeInterval(-30), using: &rng), name: name, state: .running))
        }
        let input = PlanInput(
            desired: DesiredState(runs: runs, nextInstanceID: InstanceID(UInt64(desired + 1))),
            machines: machines, now: now, settings: settings)
        var times: [Double] = []
        var actions = 0
        for _ in 0..<rounds {
            let start = DispatchTime.now().uptimeNanoseconds
            let plan = Planner.plan(input)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            actions = plan.actions.count
        }
        times.sort()
        return Result(desired: desired, observed: observed, medianMilliseconds: times[times.count / 2], actions: actions)
    }
}
