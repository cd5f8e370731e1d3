import ArgumentParser
import Foundation
import ReplController
import ReplCore
import ReplStore

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the controller loop continuously, one line per event.",
        discussion: """
        Holds the controller lease and ticks every --interval (sooner when a deadline, hold or orphan \
        grace falls due). With -f, applies the manifests first and re-applies them when the files change \
        (an invalid edit is reported and not applied). Ctrl-C leaves cleanly: the lease is released and \
        machines stay as they are for the next tick.

        Example: repl watch -f examples/ --interval 2s
        """)

    @OptionGroup var global: GlobalOptions
    @Option(name: .shortAndLong, help: "Manifests to apply and keep applied (repeatable).") var file: [String] = []
    @Option(help: "Time between ticks: 2s, 500ms, 1m.") var interval: String = "2s"
    @Flag(help: "One line per event (the default; a full-screen view is planned).") var plain = false

    func run() async throws {
        guard let every = TimeSpan(parsing: interval), every.milliseconds > 0 else {
            throw CLIError.input("--interval: \"\(interval)\" is not a duration (use 2s, 500ms or 1m)")
        }
        try await WatchLoop(context: Context(global), files: file, interval: every.seconds).run()
    }
}

/// Set from a signal handler, read by the loop.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return stopped }
    func set() { lock.lock(); stopped = true; lock.unlock() }
}

struct WatchLoop {
    let context: Context
    let files: [String]
    let interval: TimeInterval

    static func stamp() -> String {
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss"
        return f.string(from: Date())
    }

    func line(_ text: String) { context.out("\(Self.stamp()) \(text)\n") }

    /// The newest modification time among the watched files.
    func lastChange() -> Date? {
        let fm = FileManager.default
        var newest: Date?
        for path in files where path != "-" {
            var paths = [path]
            if let entries = try? fm.contentsOfDirectory(atPath: path) { paths = entries.map { (path as NSString).appendingPathComponent($0) } }
            for p in paths {
                if let d = (try? fm.attributesOfItem(atPath: p))?[.modificationDate] as? Date, newest == nil || d > newest! { newest = d }
            }
        }
        return newest
    }

    func run() async throws {
        let store = try context.store()
        let controller = try await context.controller()
        defer { store.releaseLease() }
        let stop = StopFlag()
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let sources = [SIGINT, SIGTERM].map { sig -> DispatchSourceSignal in
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { stop.set() }
            source.resume()
            return source
        }
        defer { sources.forEach { $0.cancel() } }
        var applied: Date?
        line("watching (control id \(try store.controlID()), state \(context.stateDirectory.path)); Ctrl-C to stop")
        var ticks = 0
        var waitingFor: Int32?
        while !stop.isSet {
            // Only one process acts: while a sweep or an apply holds the lease, wait for it.
            if let holder = try store.acquireLease(holder: "watch") {
                if waitingFor != holder.pid { line("waiting: \(holder.holder) (pid \(holder.pid)) holds the controller lease") }
                waitingFor = holder.pid
                try await Task.sleep(nanoseconds: UInt64(min(interval, 1) * 1e9))
                continue
            }
            waitingFor = nil
            if !files.isEmpty, let changed = lastChange(), applied == nil || changed > applied! {
                applied = changed
                do {
                    let set = try context.manifests(files)
                    for change in try store.apply(set) where !"\(change)".hasPrefix("unchanged") { line("applied: \(change)") }
                } catch let error as ManifestError {
                    line("manifests not applied:\n\(error.description)")
                }
            }
            let report = await controller.tick()
            ticks += 1
            if let e = report.observationError { line("cannot list machines (nothing was changed): \(e)") }
            for case let .markPhase(run, instance, phase, code, reason) in report.plan?.actions ?? [] {
                line("run \(Base36.encode(run)) instance \(Base36.encode(instance)): \(phase.rawValue)\(code.map { " (exit \($0))" } ?? "")\(reason.map { ": \($0)" } ?? "")")
            }
            for (action, error) in report.outcomes {
                line(error.map { "\(action) failed: \($0.description)" } ?? "\(action)")
            }
            for d in report.deferred where Controller.needsAddress(d.action) && d.why.hasPrefix("circuit breaker open") {
                line("waiting: \(d.why)")
                break
            }
            // Sleep until the interval passes, something falls due, or we are stopped.
            var wait = report.didSomething ? 0.2 : interval
            if let due = report.plan?.nextCheck { wait = min(wait, max(0.05, due.timeIntervalSinceNow)) }
            let until = Date().addingTimeInterval(wait)
            while Date() < until && !stop.isSet { try await Task.sleep(nanoseconds: 50_000_000) }
        }
        line("stopped after \(ticks) ticks; machines stay as they are")
    }
}
