import Foundation
import ReplCore
import ReplPlatform
import ReplTestSupport
import Testing

@testable import OrbStack
@testable import repl

/// The full-screen watch view, rendered without a terminal and compared with recorded screens.
/// `RECORD_SNAPSHOTS=1 swift test --filter WatchViewTests` records them anew.
struct WatchViewTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Snapshots")

    /// A fleet with runs in every phase, orphans and foreign machines, and an open circuit breaker.
    static let fleet: WatchSnapshot = {
        let phases = InstancePhase.allCases
        let instances = phases.enumerated().map { i, phase in
            WatchSnapshot.Instance(
                run: ["hello", "train-model-large", "fanout"][i % 3], instance: Base36.encode(UInt64(i + 1)),
                machine: "repl-ab12cd-\(i % 3 + 1)-\(Base36.encode(UInt64(i + 1)))", phase: phase,
                address: phase >= .provisioning && !phase.isTerminal ? "192.168.139.\(10 + i)" : nil,
                age: Double(30 * (i + 1)), timeLeft: phase.isTerminal ? nil : Double(3600 - 300 * i),
                exitCode: phase == .succeeded ? 0 : phase == .failed ? 7 : nil)
        }
        return WatchSnapshot(
            orbctlVersion: "2.2.3", controlID: "ab12cd", stateDirectory: "/home/dev/.repl", ticks: 42, lastTickMilliseconds: 37,
            lastTickCalls: 1,
            breaker:
                "no creates until 20:30:00 (OrbStack ran out of machine addresses): run `bash scaffold/scripts/orbstack-reset-networking.sh` on the macOS host (not inside a machine), then try again",
            lease: "held by watch (pid 4242)", instances: instances,
            waiting: [
                .init(name: "repl-ab12cd-9-z", machineClass: "orphan", state: "running", deletesIn: 75),
                .init(name: "repl-ab12cd-none-y", machineClass: "orphan", state: "stopped", deletesIn: 0),
                .init(name: "repl-zz99zz-1-1", machineClass: "foreign", state: "running", deletesIn: nil),
            ],
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

/// `repl watch` in a real terminal (tmux): the view follows a run from running to succeeded,
/// `q` leaves, the terminal is restored and the exit status is 0.
@Suite(.serialized) struct WatchTerminalTests {
    static let tmuxPath = ["/usr/bin/tmux", "/usr/local/bin/tmux", "/opt/homebrew/bin/tmux"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    func tmux(_ args: [String]) async throws -> String {
        let r = try await SystemProcessRunner.run(
            Self.tmuxPath!, args, input: nil, timeout: 30,
            environment: ProcessInfo.processInfo.environment, limit: 1 << 20)
        return r.stdoutText
    }

    @Test(
        .machineCommands,
        .enabled(if: WatchTerminalTests.tmuxPath != nil, "needs tmux"))
    func watchInATerminal() async throws {
        let home = CLITests.Home()
        let session = "repl-watch-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        let exitFile = home.dir.appendingPathComponent("exit").path
        let env = home.environment
        let command =
            "cd '\(home.dir.path)' && env REPL_HOME='\(env["REPL_HOME"]!)' HOME='\(env["HOME"]!)' ORBSIM_LATENCY=fast TERM=xterm "
            + "'\(CLITests.repl)' --orbctl sim watch --interval 300ms; echo $? > '\(exitFile)'; sleep 30"
        _ = try await tmux(["new-session", "-d", "-s", session, "-x", "120", "-y", "30", command])
        let outcome = await Result(catching: { try await drive(home: home, session: session, exitFile: exitFile) })
        _ = try? await tmux(["kill-session", "-t", session])
        try outcome.get()
    }

    private func drive(home: CLITests.Home, session: String, exitFile: String) async throws {
        func screen() async -> String { (try? await tmux(["capture-pane", "-p", "-t", session])) ?? "" }
        func waitFor(_ text: String, seconds: Double = 30) async throws -> (Bool, String) {
            let deadline = Date().addingTimeInterval(seconds)
            var shown = ""
            while Date() < deadline {
                shown = await screen()
                if shown.contains(text) { return (true, shown) }
                try await Task.sleep(nanoseconds: 100_000_000)
            }
            return (false, shown)
        }
        let view = try await waitFor("repl watch · OrbStack")
        #expect(view.0, "no view: \(view.1)")
        // Apply from another process: it records the manifest and leaves the acting to watch.
        let file = home.dir.appendingPathComponent("demo.yaml")
        try "kind: Run\nname: demo\ncommand: sleep 6\nhold: 30s\n".write(to: file, atomically: true, encoding: .utf8)
        let apply = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", file.path])
        #expect(apply.status == 0 && apply.stderr.contains("holds the controller lease"))  // progress: standard error
        let running = try await waitFor("Running")
        #expect(running.0, "never running: \(running.1)")
        let succeeded = try await waitFor("Succeeded")
        #expect(succeeded.0, "never succeeded: \(succeeded.1)")
        _ = try await tmux(["send-keys", "-t", session, "q"])
        let deadline = Date().addingTimeInterval(15)
        while !FileManager.default.fileExists(atPath: exitFile) && Date() < deadline { try await Task.sleep(nanoseconds: 100_000_000) }
        #expect((try? String(contentsOfFile: exitFile, encoding: .utf8)) == "0\n")
        // The alternate screen is gone: the view is no longer on the terminal.
        let after = await screen()
        #expect(!after.contains("repl watch · OrbStack") && after.contains("stopped after"), "terminal not restored: \(after)")
    }
}
