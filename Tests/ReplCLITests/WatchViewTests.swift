import Foundation
import Testing
@testable import repl
import ReplCore

/// The full-screen watch view, rendered without a terminal and compared with recorded screens.
/// `RECORD_SNAPSHOTS=1 swift test --filter WatchViewTests` records them anew.
struct WatchViewTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Snapshots")

    /// A fleet with runs in every phase, orphans and foreign machines, and an open circuit breaker.
    static let fleet: WatchSnapshot = {
        let phases = InstancePhase.allCases
        let instances = phases.enumerated().map { i, phase in
            WatchSnapshot.Instance(run: ["hello", "train-model-large", "fanout"][i % 3], instance: Base36.encode(UInt64(i + 1)),
                                   machine: "repl-ab12cd-\(i % 3 + 1)-\(Base36.encode(UInt64(i + 1)))", phase: phase,
                                   address: phase >= .provisioning && !phase.isTerminal ? "192.168.139.\(10 + i)" : nil,
                                   age: Double(30 * (i + 1)), timeLeft: phase.isTerminal ? nil : Double(3600 - 300 * i),
                                   exitCode: phase == .succeeded ? 0 : phase == .failed ? 7 : nil)
        }
        return WatchSnapshot(
            orbctlVersion: "2.2.3", controlID: "ab12cd", stateDirectory: "/home/dev/.repl", ticks: 42, lastTickMilliseconds: 37,
            lastTickCalls: 1,
            breaker: "no creates until 20:30:00 (OrbStack ran out of machine addresses): run `bash scaffold/scripts/orbstack-reset-networking.sh` on the macOS host (not inside a machine), then try again",
            lease: "held by watch (pid 4242)", instances: instances,
            waiting: [.init(name: "repl-ab12cd-9-z", machineClass: "orphan", state: "running", deletesIn: 75),
                      .init(name: "repl-ab12cd-none-y", machineClass: "orphan", state: "stopped", deletesIn: 0),
                      .init(name: "repl-zz99zz-1-1", machineClass: "foreign", state: "running", deletesIn: nil)],
            events: (0..<30).map { "20:1\($0 / 10):\(String(format: "%02d", $0 * 2)) event number \($0): created repl-ab12cd-1-\($0)" })
    }()

    @Test(arguments: [(80, 24), (160, 50)])
    func snapshot(_ width: Int, _ height: Int) throws {
        let lines = WatchView.render(Self.fleet, width: width, height: height)
        #expect(lines.count == height)
        #expect(lines.allSatisfy { $0.count <= width }, "a line is wider than \(width)")
        let text = lines.joined(separator: "\n") + "\n"
        let file = Self.directory.appendingPathComponent("watch-\(width)x\(height).txt")
        if ProcessInfo.processInfo.environment["RECORD_SNAPSHOTS"] == "1" {
            try FileManager.default.createDirectory(at: Self.directory, withIntermediateDirectories: true)
            try text.write(to: file, atomically: true, encoding: .utf8)
        }
        #expect(text == (try String(contentsOf: file, encoding: .utf8)))
    }

    @Test func everyPhaseAndTheBreakerAndOrphansAreShown() {
        let text = WatchView.render(Self.fleet, width: 160, height: 50).joined(separator: "\n")
        for phase in InstancePhase.allCases { #expect(text.contains(phase.rawValue)) }
        #expect(text.contains("breaker OPEN") && text.contains("orbstack-reset-networking.sh"))
        #expect(text.contains("deleted in 1m15s") && text.contains("kept"))
        #expect(text.contains("event number 29"))  // the latest events
    }

    @Test func colourDoesNotChangeWidths() {
        let plain = WatchView.render(Self.fleet, width: 100, height: 30)
        let coloured = WatchView.render(Self.fleet, width: 100, height: 30, colour: true)
        let stripped = coloured.map { $0.replacingOccurrences(of: "\u{1B}\\[[0-9;]*m", with: "", options: .regularExpression) }
        #expect(stripped == plain)
        #expect(coloured.joined().contains("\u{1B}[32mSucceeded"))
    }

    @Test func tinyTerminalsStillFit() {
        for (w, h) in [(20, 5), (40, 10), (1, 1)] {
            let lines = WatchView.render(Self.fleet, width: w, height: h)
            #expect(lines.count == h && lines.allSatisfy { $0.count <= w })
        }
    }
}
