import Foundation
import ReplController
import ReplCore

/// Phases as the machines last showed them, for read commands run when no controller is: the
/// store's phase moves only when a tick records it, while the host channel shows what each
/// machine's wrapper wrote (a command that ended an hour ago is not `Running` to the user).
struct SeenPhases {
    let channel: StatusChannel
    /// None before any machine was made: then nothing is seen.
    let cid: ControlID?
    /// What machines said of themselves when their channel was doubted: believed in place of
    /// the channel. A machine doubted but not heard from keeps its instance's recorded phase.
    var heard: [String: ProbeResult?] = [:]

    struct Seen {
        var phase: InstancePhase
        var exitCode: Int?
        /// The wrapper's last heartbeat: when the machine last confirmed it.
        var confirmed: Date?
        /// The phase is the machine's, not yet recorded by a controller.
        var unrecorded = false
        /// The machine whose channel showed it.
        var machine: String?
    }

    func seen(_ run: DesiredRun, _ instance: InstanceState) -> Seen {
        var seen = Seen(phase: instance.phase, exitCode: instance.exitCode)
        guard let cid, run.wants(instance), !instance.phase.isTerminal else { return seen }
        let machine = MachineName(controlID: cid, manifestID: run.id, instanceID: instance.id).description
        seen.confirmed = channel.heartbeat(machine)
        seen.machine = machine
        // A run without a command succeeds at its deadline, counted from its launch, as the
        // controller judges it; its machine stops then, and its status is left saying running.
        if run.manifest.command == nil, let started = instance.startedAt, let max = run.manifest.maxDuration, Date() >= started.adding(max) {
            seen.phase = .succeeded
            seen.unrecorded = true
            return seen
        }
        guard let status = heard[machine] ?? channel.status(machine) else { return seen }
        let phase: InstancePhase
        switch status {
        case .bootstrapping: phase = .bootstrapping
        case .running: phase = .running
        case .exited(let code):
            // Ended after its deadline: a timeout, as the controller will judge it.
            if let ended = channel.times(machine)["ended"], let started = instance.startedAt, let max = run.manifest.maxDuration,
                Date(timeIntervalSince1970: ended) > started.adding(max)
            {
                phase = .timedOut
            } else {
                phase = code == 0 ? .succeeded : .failed
                seen.exitCode = code
            }
        case .timedOut: phase = .timedOut
        default: return seen
        }
        if phase > instance.phase {
            seen.phase = phase
            seen.unrecorded = true
        }
        return seen
    }

    /// The run with its instances as seen (for the run's own phase).
    func run(_ run: DesiredRun) -> (run: DesiredRun, unrecorded: Bool) {
        var copy = run
        var unrecorded = false
        copy.instances = run.instances.map { instance in
            let s = seen(run, instance)
            unrecorded = unrecorded || s.unrecorded
            var i = instance
            i.phase = s.phase
            i.exitCode = s.exitCode
            return i
        }
        return (copy, unrecorded)
    }

    /// The machines whose end (as their channel shows it) no controller has recorded yet: what
    /// a command that answers on it should confirm with the machine first.
    func unrecordedEnds(_ run: DesiredRun) -> [String] {
        run.instances.compactMap { instance in
            let s = seen(run, instance)
            return s.unrecorded && s.phase.isTerminal ? s.machine : nil
        }
    }

    static let footnote =
        "* as the machines' own status shows; not yet recorded (a controller records it: `repl watch`, or the next `repl orphans sweep`)"
}
