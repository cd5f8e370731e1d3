import Foundation
import ReplCore

/// What the full-screen watch view shows, as plain values.
struct WatchSnapshot: Sendable {
    struct Instance: Sendable {
        var run: String
        var instance: String
        var machine: String
        var phase: InstancePhase
        var address: String?
        var age: TimeInterval?
        var timeLeft: TimeInterval?
        var exitCode: Int?
    }
    struct Waiting: Sendable {
        var name: String
        var machineClass: String
        var state: String
        /// Seconds until the grace ends; nil when it will not be deleted.
        var deletesIn: TimeInterval?
    }
    var orbctlVersion: String
    var controlID: String
    var stateDirectory: String
    var ticks: Int
    var lastTickMilliseconds: Int
    var lastTickCalls: Int
    /// nil when closed; otherwise what it says.
    var breaker: String?
    var lease: String
    var instances: [Instance]
    var waiting: [Waiting]
    var events: [String]
}

/// The full-screen view: a pure function from a snapshot and the terminal size to
/// exactly `height` lines, none wider than `width` (columns shorten, nothing wraps).
enum WatchView {
    static func color(_ phase: InstancePhase) -> String {
        switch phase {
        case .pending, .provisioning: return "\u{1B}[33m"  // yellow
        case .bootstrapping, .running: return "\u{1B}[36m"  // cyan
        case .succeeded: return "\u{1B}[32m"  // green
        case .failed, .timedOut: return "\u{1B}[31m"  // red
        case .cancelled: return "\u{1B}[90m"  // grey
        }
    }

    static func duration(_ t: TimeInterval?) -> String {
        guard let t else { return "-" }
        let s = Int(max(0, t.rounded()))
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(s % 60 == 0 ? "" : "\(s % 60)s")" }
        return "\(s / 3600)h\(s % 3600 / 60 == 0 ? "" : "\(s % 3600 / 60)m")"
    }

    static func fit(_ text: String, _ width: Int) -> String {
        guard width > 0 else { return "" }
        if text.count <= width { return text }
        return width == 1 ? "…" : String(text.prefix(width - 1)) + "…"
    }

    /// Columns of a table, each shortened to fit, with the last one taking the rest.
    static func table(_ header: [String], _ rows: [[String]], width: Int, minimums: [Int]) -> [String] {
        var widths = header.indices.map { i in ([header] + rows).map { $0[i].count }.max() ?? 0 }
        // Shorten the widest columns (never below their minimum) until the row fits.
        while widths.reduce(0, +) + 2 * (widths.count - 1) > width,
            let i = widths.indices.filter({ widths[$0] > minimums[$0] }).max(by: { widths[$0] < widths[$1] })
        {
            widths[i] -= 1
        }
        return ([header] + rows).map { row in
            fit(
                row.indices.map { i in fit(row[i], widths[i]).padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                    .joined(separator: "  ").trimmingCharacters(in: .whitespaces), width)
        }
    }

    static func render(_ s: WatchSnapshot, width: Int, height: Int, colour: Bool = false) -> [String] {
        var lines: [String] = []
        lines.append(fit("repl watch · OrbStack \(s.orbctlVersion) · control id \(s.controlID) · \(s.stateDirectory)", width))
        lines.append(
            fit(
                "tick \(s.ticks) · last \(s.lastTickMilliseconds) ms, \(s.lastTickCalls) orbctl call\(s.lastTickCalls == 1 ? "" : "s") · breaker \(s.breaker == nil ? "closed" : "OPEN") · lease \(s.lease)",
                width))
        // An open breaker gets a line of its own, advice included.
        if let breaker = s.breaker { lines.append(fit("! circuit breaker: \(breaker)", width)) }
        lines.append("")
        let runRows = s.instances.map { i in
            [
                i.run, i.instance, i.machine, i.phase.rawValue, i.address ?? "-", duration(i.age), duration(i.timeLeft),
                i.exitCode.map(String.init) ?? "-",
            ]
        }
        var runTable = table(
            ["RUN", "INST", "MACHINE", "PHASE", "ADDRESS", "AGE", "LEFT", "EXIT"], runRows, width: width,
            minimums: [4, 4, 7, 9, 7, 3, 4, 4])
        if runRows.isEmpty { runTable = ["No runs. Apply a manifest from another terminal: repl apply -f run.yaml"] }
        let waitRows = s.waiting.map { [$0.name, $0.machineClass, $0.state, $0.deletesIn.map { "deleted in \(duration($0))" } ?? "kept"] }
        let waitTable =
            waitRows.isEmpty ? [] : table(["ORPHAN/FOREIGN", "CLASS", "STATE", "GRACE"], waitRows, width: width, minimums: [14, 5, 5, 5])
        // Share the height: runs first, then orphans, then the latest events.
        let budget = max(0, height - lines.count)
        let eventsWanted = min(s.events.count, max(3, budget / 4)) + 2
        let runSpace = max(2, budget - (waitTable.isEmpty ? 0 : min(waitTable.count, 4) + 1) - eventsWanted)
        if runTable.count > runSpace {
            let hidden = runTable.count - runSpace + 1
            runTable = Array(runTable.prefix(runSpace - 1)) + [fit("… \(hidden) more", width)]
        }
        lines += runTable
        if !waitTable.isEmpty {
            lines.append("")
            let space = max(2, min(waitTable.count, height - lines.count - eventsWanted))
            lines += waitTable.count > space ? Array(waitTable.prefix(space - 1)) + [fit("… \(waitTable.count - space + 1) more", width)] : waitTable
        }
        let room = height - lines.count - 2
        if room > 0 {
            lines.append("")
            lines.append("EVENTS")
            lines += s.events.suffix(room).map { fit($0, width) }
        }
        lines = Array(lines.prefix(height))
        while lines.count < height { lines.append("") }
        guard colour else { return lines }
        // Colour the phase cells, after fitting, so widths stay exact.
        return lines.map { line in
            var out = line
            for phase in InstancePhase.allCases where out.contains("  \(phase.rawValue)  ") {
                out = out.replacingOccurrences(of: "  \(phase.rawValue)  ", with: "  \(color(phase))\(phase.rawValue)\u{1B}[0m  ")
            }
            return out
        }
    }
}
