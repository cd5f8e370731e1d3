import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import Testing

@testable import OrbStack

/// The cron and launchd files for the sweep, run the way cron and launchd run them: a bare
/// environment (PATH=/usr/bin:/bin) and orbctl only in `~/.orbstack/bin`, where OrbStack puts
/// it when its admin setup is off.
struct ScheduleTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// An old orphan of the `~/.repl` store's control id and a foreign machine; orbctl reachable
    /// only through `~/.orbstack/bin`. Returns the environment cron or launchd would give.
    func scheduledWorld(_ w: World) async throws -> (env: [String: String], orphan: String, foreign: String) {
        let bin = w.root.appendingPathComponent(".orbstack/bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: bin.appendingPathComponent("orbctl").path, withDestinationPath: Paths.sim)
        let cronStore = try ReplStore.Store(directory: w.root.appendingPathComponent(".repl"))
        let orphan = "repl-\(try cronStore.controlID())-z9-z9"
        let foreign = "repl-\(try w.store.controlID())-z8-z8"
        try await w.sim(["create", "ubuntu", orphan])
        try await w.sim(["create", "ubuntu", foreign])
        try await w.sim(["admin", "clock", "advance", "5m"])
        let env = ["HOME": w.root.path, "PATH": "/usr/bin:/bin", "ORBSIM_HOME": w.environment["ORBSIM_HOME"]!, "ORBSIM_LATENCY": "fast"]
        return (env, orphan, foreign)
    }

    /// The sweep used `~/.repl` and removed the orphan of that store's control id; the foreign machine stays.
    func expectSwept(_ w: World, foreign: String, exit: Int32, output: String) throws {
        let log = (try? String(contentsOf: w.root.appendingPathComponent(".repl/sweep.log"), encoding: .utf8)) ?? ""
        #expect(exit == 0, "\(output)\(log)")
        #expect(FileManager.default.fileExists(atPath: w.root.appendingPathComponent(".repl/state.db").path), "log: \(log)")
        #expect(try w.machines().map(\.name) == [foreign], "log: \(log)")
    }

    /// The command part of the crontab line, as cron's /bin/sh runs it, with this build's repl in
    /// place of the installed one.
    func cronCommand() throws -> String {
        let text = try String(contentsOf: Self.root.appendingPathComponent("scaffold/cron/crontab"), encoding: .utf8)
        let line = try #require(text.split(separator: "\n").first { !$0.hasPrefix("#") && !$0.isEmpty })
        let fields = line.split(separator: " ", maxSplits: 5)
        #expect(fields.prefix(5) == ["*", "*", "*", "*", "*"])  // every minute
        let command = String(fields[5]).replacingOccurrences(of: " repl orphans", with: " '\(Paths.repl)' orphans")
        #expect(command.contains(Paths.repl))
        return command
    }

    /// A new user's first minute: no `~/.repl` yet. The line makes it (else the shell cannot open
    /// the log and repl never runs) and the sweep creates its store there.
    @Test func theCrontabLineWorksBeforeReplHasEverRun() async throws {
        let w = try World()
        let command = try cronCommand()
        let bin = w.root.appendingPathComponent(".orbstack/bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: bin.appendingPathComponent("orbctl").path, withDestinationPath: Paths.sim)
        #expect(!FileManager.default.fileExists(atPath: w.root.appendingPathComponent(".repl").path))
        let env = ["HOME": w.root.path, "PATH": "/usr/bin:/bin", "ORBSIM_HOME": w.environment["ORBSIM_HOME"]!, "ORBSIM_LATENCY": "fast"]
        let result = try await SystemProcessRunner.run("/bin/sh", ["-c", command], input: nil, timeout: 120, environment: env, limit: 1 << 20)
        #expect(result.status == 0, "\(result.stderrText)")
        #expect(FileManager.default.fileExists(atPath: w.root.appendingPathComponent(".repl/state.db").path))
        #expect(FileManager.default.fileExists(atPath: w.root.appendingPathComponent(".repl/sweep.log").path))
    }

    @Test func theCrontabLineSweepsWithCronsBarePath() async throws {
        let w = try World()
        let command = try cronCommand()
        let (env, _, foreign) = try await scheduledWorld(w)
        let result = try await SystemProcessRunner.run("/bin/sh", ["-c", command], input: nil, timeout: 120, environment: env, limit: 1 << 20)
        try expectSwept(w, foreign: foreign, exit: result.status, output: result.stdoutText + result.stderrText)
    }

    @Test func theStaticLaunchdAgentSweepsWithLaunchdsBareEnvironment() async throws {
        let w = try World()
        let data = try Data(contentsOf: Self.root.appendingPathComponent("scaffold/cron/dev.repl.sweep.plist"))
        let plist = try #require(try PropertyListSerialization.propertyList(from: data, format: nil) as? [String: Any])
        #expect(plist["Label"] as? String == "dev.repl.sweep")
        #expect(plist["StartInterval"] as? Int == 60)
        let program = try #require(plist["ProgramArguments"] as? [String])
        #expect(program.count == 3 && program[0] == "/bin/sh" && program[1] == "-c")
        let script = program[2].replacingOccurrences(of: "exec repl ", with: "exec '\(Paths.repl)' ")
        #expect(script.contains(Paths.repl))
        let (env, _, foreign) = try await scheduledWorld(w)
        let result = try await SystemProcessRunner.run(program[0], [program[1], script], input: nil, timeout: 120, environment: env, limit: 1 << 20)
        try expectSwept(w, foreign: foreign, exit: result.status, output: result.stdoutText + result.stderrText)
    }
}
