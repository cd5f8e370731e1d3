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
    @Flag(help: "One line per event instead of the full-screen view (the default when not on a terminal).") var plain = false
    @Flag(help: "With -f: start a new installation even though machines of another one exist (see `repl recover`).") var newInstallation = false

    func run() async throws {
        guard let every = TimeSpan(parsing: interval), every.milliseconds > 0 else {
            throw CLIError.input("--interval: \"\(interval)\" is not a duration (use 2s, 500ms or 1m)")
        }
        let context = Context(global)
        let screen = !plain && context.interactive
        // Applying to an empty store beside another installation's machines would start a second
        // fleet: refused, as `apply` refuses it.
        if !file.isEmpty && !newInstallation {
            try await Converger(context: context).refuseOverALostStore(try context.store(), engine: try await context.engine())
        }
        try await WatchLoop(context: context, files: file, interval: every.seconds, fullScreen: screen).run()
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
    var fullScreen = false

    static func clock(_ date: Date) -> String { DateFormats.clock(date) }

    static func stamp() -> String { DateFormats.clock(Date()) }

    /// One event: a timestamped line, or with `--json` one JSON object per line (NDJSON) with
    /// `at`, `kind`, `message` and the event's fields.
    func line(_ text: String, kind: String = "info", _ fields: [String: Any] = [:]) {
        if context.json {
            var object = fields
            object["at"] = DateFormats.iso8601(Date())
            object["kind"] = kind
            object["message"] = text
            context.out(JSONDocument(object).text(pretty: false) + "\n")
            return
        }
        let text = Console.visible(text)
        if fullScreen { events.append("\(Self.stamp()) \(text)") } else { context.out("\(Self.stamp()) \(text)\n") }
    }
    let events = EventBuffer()

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
        let manager = Manager(controller: controller, holder: "watch")
        defer { manager.release() }
        let stop = StopFlag()
        // Ctrl-C, SIGTERM and SIGHUP stop after the tick in progress: the lease is released and
        // the terminal restored.
        Interrupts.handle { _ in
            stop.set()
            manager.stop()
        }
        defer { Interrupts.restore() }
        let terminal = fullScreen ? Terminal.enter(stop: stop) : nil
        defer { terminal?.leave() }
        var addresses: [String: String] = [:]
        var applied: Date?
        line(
            "watching (control id \(try store.controlID()), state \(context.stateDirectory.path)); Ctrl-C to stop", kind: "started",
            ["controlId": try store.controlID().rawValue, "stateDirectory": context.stateDirectory.path])
        var ticks = 0
        var waitingFor: Int32?
        while !stop.isSet {
            // Changed manifests are recorded at once; whoever holds the lease acts on them.
            if !files.isEmpty, let changed = lastChange(), applied == nil || changed > applied! {
                applied = changed
                do {
                    let set = try context.manifests(files)
                    for change in try store.apply(set) where change.isChange { line("applied \(change)", kind: "applied", change.json) }
                } catch let error as ManifestError {
                    line("manifests not applied:\n\(error.description)", kind: "invalid", ["errors": error.diagnostics.map(\.description)])
                }
            }
            // Only one process acts: while a sweep or an apply holds the lease, wait for it.
            let turn = try await manager.turn()
            guard let report = turn.report else {
                if case .heldBy(let holder) = turn, waitingFor != holder.pid {
                    line(
                        "waiting: \(holder.holder) (pid \(holder.pid)) holds the controller lease", kind: "lease-held",
                        ["holder": holder.holder, "pid": Int(holder.pid)])
                    waitingFor = holder.pid
                }
                await manager.sleep(min(interval, 1))
                continue
            }
            waitingFor = nil
            ticks += 1
            if let e = report.observationError { line("cannot list machines (nothing was changed): \(e)", kind: "observe-failed", ["error": e]) }
            let phases = (report.plan?.actions ?? []).filter { if case .markPhase = $0 { return true } else { return false } }
            let runs = phases.isEmpty ? [:] : Dictionary((try? store.runs())?.map { ($0.run.id, $0.run) } ?? [], uniquingKeysWith: { a, _ in a })
            for case let .markPhase(run, instance, phase, code, reason) in phases {
                let who = runs[run].map { $0.label(instance) } ?? "run \(Base36.encode(run)) instance \(Base36.encode(instance))"
                line(
                    "\(who): \(phase.rawValue)\(code.map { " (exit \($0))" } ?? "")\(reason.map { ": \($0)" } ?? "")", kind: "phase",
                    [
                        "run": runs[run]?.manifest.name as Any, "instance": runs[run]?.number(of: instance) as Any, "phase": phase.rawValue,
                        "exitCode": code as Any, "reason": reason as Any,
                    ])
            }
            for (action, error) in report.outcomes {
                line(
                    error.map { "\(action) failed: \($0.description)" } ?? "\(action)", kind: "action",
                    ["action": "\(action)", "machine": action.machine as Any, "error": error?.description as Any])
            }
            for d in report.deferred where Admission.needsAddress(d.action) && d.why.hasPrefix("circuit breaker") && d.why.contains(" open: ") {
                line("waiting: \(d.why)", kind: "breaker", ["why": d.why])
                break
            }
            if let terminal {
                // One `info` per machine, once, for its address.
                for m in report.plan?.machines ?? [] where m.machineClass == .owned && m.machine.state == .running && addresses[m.machine.name] == nil
                {
                    guard let name = m.name else { continue }
                    addresses[m.machine.name] = (try? await controller.provider.address(name: name)) ?? "-"
                }
                let snapshot = try self.snapshot(report: report, ticks: ticks, addresses: addresses)
                terminal.draw { w, h in WatchView.render(snapshot, width: w, height: h, colour: true) }
            }
            // Sleep until the interval passes, something falls due, a key asks, or we are stopped.
            let until = Date().addingTimeInterval(Manager.pause(after: turn, idle: interval))
            while Date() < until && !stop.isSet && !(terminal?.takeRefresh() ?? false) {
                try await Task.sleep(nanoseconds: 50_000_000)
                terminal?.redrawIfResized()
            }
        }
        terminal?.leave()
        if fullScreen {
            context.out("\(Self.stamp()) stopped after \(ticks) ticks; machines stay as they are\n")
        } else {
            line("stopped after \(ticks) ticks; machines stay as they are", kind: "stopped", ["ticks": ticks])
        }
    }

    func snapshot(report: TickReport, ticks: Int, addresses: [String: String]) throws -> WatchSnapshot {
        let store = try context.store()
        let cid = try store.controlID()
        let now = Date()
        var instances: [WatchSnapshot.Instance] = []
        for record in try store.runs(includeDeleted: false) {
            let run = record.run
            for i in run.instances where run.wants(i) || (!i.phase.isTerminal && !i.retired) {
                let machine = MachineName(controlID: cid, manifestID: run.id, instanceID: i.id).description
                let left = run.manifest.maxDuration.flatMap { max in i.startedAt.map { $0.adding(max).timeIntervalSince(now) } }
                instances.append(
                    .init(
                        run: run.manifest.name, instance: run.number(of: i.id).map(String.init) ?? Base36.encode(i.id), machine: machine,
                        phase: i.phase,
                        address: addresses[machine], age: i.createdAt.map { now.timeIntervalSince($0) },
                        timeLeft: i.phase.isTerminal ? nil : left, exitCode: i.exitCode))
            }
        }
        let waiting = (report.plan?.machines ?? []).filter { $0.machineClass == .orphan || $0.machineClass == .foreign }
            .sorted { $0.machine.name < $1.machine.name }.map {
                WatchSnapshot.Waiting(
                    name: $0.machine.name, machineClass: $0.machineClass.rawValue, state: $0.machine.state.description,
                    deletesIn: $0.deletableAt.map { $0.timeIntervalSince(now) })
            }
        let open = try store.breakers(now: now).filter { $0.value.isOpen(at: now) }.sorted { $0.key < $1.key }
        let breaker = open.first.map { scope, b in
            scope.isEmpty
                ? "no creates until \(Self.clock(b.openUntil!)) (OrbStack ran out of machine addresses): \(ProviderError.resetAdvice)"
                : "no creates of \(scope) until \(Self.clock(b.openUntil!)) (EC2 has no capacity for it)\(open.count > 1 ? "; \(open.count - 1) more" : "")"
        }
        return WatchSnapshot(
            orbctlVersion: context.orbctlVersion?.version ?? "?", controlID: cid.rawValue, stateDirectory: context.stateDirectory.path,
            ticks: ticks, lastTickMilliseconds: Int(report.duration * 1000), lastTickCalls: report.calls,
            breaker: breaker,
            lease: "held by watch (pid \(getpid()))", instances: instances, waiting: waiting,
            events: events.lines + (report.observationError.map { ["cannot list machines: \($0)"] } ?? []))
    }
}

/// The latest events shown by the full-screen view.
final class EventBuffer: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func append(_ s: String) { lock.lock(); items.append(s); if items.count > 200 { items.removeFirst(items.count - 200) }; lock.unlock() }
    var lines: [String] { lock.lock(); defer { lock.unlock() }; return items }
}

/// The terminal in full-screen mode: alternate screen, hidden cursor, keys without Enter.
/// `leave()` restores everything (also on Ctrl-C, through the loop's stop flag).
final class Terminal: @unchecked Sendable {
    private var saved = termios()
    private let lock = NSLock()
    private var refresh = false
    private var left = false
    private var lastSize = (0, 0)
    private var lastDraw: ((Int, Int) -> [String])?

    static func enter(stop: StopFlag) -> Terminal {
        let t = Terminal()
        tcgetattr(0, &t.saved)
        var raw = t.saved
        raw.c_lflag &= ~tcflag_t(ICANON | ECHO)  // keys arrive at once; Ctrl-C still signals
        tcsetattr(0, TCSANOW, &raw)
        Console.out("\u{1B}[?1049h\u{1B}[?25l")
        Thread.detachNewThread {
            var byte: UInt8 = 0
            while read(0, &byte, 1) == 1 {
                if byte == UInt8(ascii: "q") || byte == UInt8(ascii: "Q") { stop.set(); return }
                if byte == UInt8(ascii: "r") || byte == UInt8(ascii: "R") { t.lock.lock(); t.refresh = true; t.lock.unlock() }
            }
        }
        return t
    }

    func takeRefresh() -> Bool {
        lock.lock(); defer { lock.unlock() }
        let r = refresh
        refresh = false
        return r
    }

    static func size() -> (Int, Int) {
        var w = winsize()
        if ioctl(1, UInt(TIOCGWINSZ), &w) == 0, w.ws_col > 0, w.ws_row > 0 { return (Int(w.ws_col), Int(w.ws_row)) }
        return (80, 24)
    }

    /// Redraws without clearing first: every line is overwritten in place, so nothing flickers.
    func draw(_ render: @escaping (Int, Int) -> [String]) {
        lastDraw = render
        let (w, h) = Self.size()
        lastSize = (w, h)
        let lines = render(w, h)
        let text = "\u{1B}[H" + lines.map { $0 + "\u{1B}[K" }.joined(separator: "\r\n") + "\u{1B}[J"
        Console.out(text)
    }

    func redrawIfResized() {
        if let render = lastDraw, Self.size() != lastSize { draw(render) }
    }

    func leave() {
        lock.lock(); defer { lock.unlock() }
        guard !left else { return }
        left = true
        Console.out("\u{1B}[?25h\u{1B}[?1049l")
        tcsetattr(0, TCSANOW, &saved)
    }
}
