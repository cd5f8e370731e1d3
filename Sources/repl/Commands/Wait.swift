import ArgumentParser
import Foundation
import ReplController
import ReplCore

/// `repl wait RUN --for PHASE`: blocks until the run is in that phase, as kubectl wait does.
/// It reads (the store and the host channel); it never acts, so it can wait beside a `watch`
/// or between cron sweeps.
struct Wait: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wait until a run reaches a phase (Running, Succeeded, Failed, TimedOut, Cancelled, or Finished for any end).",
        discussion: """
            Exits 0 once the run is in that phase; 1 when it ended in another phase (it will never get there) \
            or at --timeout. It only reads: a controller (watch, a sweep, an apply) moves the run.
            Example: repl wait hello --for Succeeded --timeout 5m
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Run id, name, or a unique prefix.", completion: RunNameCompletion.kind) var id: String
    @Option(name: .customLong("for"), help: "The phase to wait for.") var phase: String
    @Option(help: "How long to wait at most (default 10m).") var timeout: String = "10m"

    func run() async throws {
        let context = Context(global)
        guard let limit = TimeSpan(parsing: timeout) else {
            throw CLIError.input("--timeout: \"\(timeout)\" is not a duration (use 90s, 10m or 600000)")
        }
        let wanted = phase.lowercased()
        let phases = InstancePhase.allCases.map { $0.rawValue.lowercased() } + ["finished"]
        guard phases.contains(wanted) else {
            throw CLIError.input(
                "--for: \"\(phase)\" is not a phase (use \(InstancePhase.allCases.map(\.rawValue).joined(separator: ", ")) or Finished)")
        }
        let record = try context.findRun(id)
        let cid = try context.store().controlID()
        var seen = SeenPhases(channel: StatusChannel(directory: context.channelDirectory), cid: cid)
        let deadline = Date().addingTimeInterval(limit.seconds)
        var confirmed: Set<String> = [], heard: [String: (status: ProbeResult?, at: Date)] = [:]
        func reaches(_ phase: InstancePhase) -> Bool { wanted == "finished" ? phase.isTerminal : phase.rawValue.lowercased() == wanted }
        // A mirrored channel (EC2's, in S3) is brought up to date here every 2 s: no controller
        // need be running (found by attacking: wait never saw an end that was in S3).
        let mirrored = context.mirroredChannel
        var mirroredAt = Date.distantPast
        while true {
            guard let current = try context.store().runs().first(where: { $0.run.id == record.run.id }) else {
                throw CLIError.failure("run \(record.run.manifest.name) is gone")
            }
            if mirrored, Date().timeIntervalSince(mirroredAt) >= 2, let provider = try? await context.engine(checkVersion: false) {
                mirroredAt = Date()
                let live = current.run.instances.filter { current.run.wants($0) && !$0.phase.isTerminal && $0.startedAt != nil }
                _ = try? await StatusChannel(directory: context.channelDirectory).refresh(
                    live.map { MachineName(controlID: cid, manifestID: current.run.id, instanceID: $0.id) }, from: provider)
            }
            // What a machine said holds for a while; then it is asked again (its command may
            // have ended since).
            heard = heard.filter { Date().timeIntervalSince($0.value.at) < 5 }
            seen.heard = heard.mapValues(\.status)
            var now = seen.run(current.run).run.phase
            // The channel is a file anything on the Mac can write: an end no controller has
            // recorded is confirmed with the machine before it is the answer, or before it ends
            // the wait in another phase.
            let unconfirmed = reaches(now) || now.isTerminal ? seen.unrecordedEnds(current.run).filter { !confirmed.contains($0) } : []
            if !unconfirmed.isEmpty {
                for (machine, answer) in await ask(unconfirmed, context: context) {
                    switch answer {
                    case .notRunning: confirmed.insert(machine)  // the channel is all there is
                    case .said(let status) where status.isFinal: confirmed.insert(machine)
                    case .said(let status): heard[machine] = (status, Date())
                    case .silent: heard[machine] = (nil, Date())
                    }
                }
                seen.heard = heard.mapValues(\.status)
                now = seen.run(current.run).run.phase
            }
            if reaches(now) {
                if context.json {
                    context.printJSON(["run": record.run.manifest.name, "phase": now.rawValue, "reached": true])
                } else {
                    context.say("\(record.run.manifest.name): \(now.rawValue)")
                }
                return
            }
            if now.isTerminal || (current.deleted && wanted != "cancelled") {
                throw CLIError.failure("\(record.run.manifest.name) ended \(now.rawValue), not \(phase)")
            }
            if Date() > deadline {
                throw CLIError.failure("\(record.run.manifest.name) is \(now.rawValue), not \(phase), after \(limit)")
            }
            try await Task.sleep(nanoseconds: 250_000_000)
        }
    }

    enum Answer {
        /// Stopped or gone, or orbctl is not usable: it cannot be asked, and its channel is what
        /// any controller judges by.
        case notRunning
        /// Its own status file.
        case said(ProbeResult)
        /// It could not be asked now.
        case silent
    }

    /// What each running machine says of its command (one `orbctl run` reading its own status file).
    func ask(_ machines: [String], context: Context) async -> [(String, Answer)] {
        // Without a usable orbctl no machine can be asked, and no controller can judge any
        // other way: the channel is all there is.
        guard let provider = try? await context.engine(checkVersion: false) else { return machines.map { ($0, .notRunning) } }
        let listed: [ObservedMachine]
        do {
            listed = try await provider.list()
        } catch {
            return machines.map { ($0, error.kind == .unavailable ? .notRunning : .silent) }
        }
        var answers: [(String, Answer)] = []
        for machine in machines {
            guard let name = MachineName(parsing: machine), listed.contains(where: { $0.name == machine && $0.state == .running }) else {
                answers.append((machine, .notRunning))
                continue
            }
            answers.append((machine, (try? await provider.probe(name: name)).map(Answer.said) ?? .silent))
        }
        return answers
    }
}
