import Foundation
import ReplPlatform
import Testing
@testable import OrbStack
import ReplCore
import ReplStore

/// The cron and launchd files for the sweep.
struct ScheduleTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func theLaunchdAgentIsAValidPlist() throws {
        let data = try Data(contentsOf: Self.root.appendingPathComponent("scaffold/cron/dev.repl.sweep.plist"))
        let plist = try #require(try PropertyListSerialization.propertyList(from: data, format: nil) as? [String: Any])
        #expect(plist["Label"] as? String == "dev.repl.sweep")
        #expect(plist["ProgramArguments"] as? [String] == ["/usr/local/bin/repl", "orphans", "sweep", "--quiet"])
        #expect(plist["StartInterval"] as? Int == 60)
        #expect(plist["StandardOutPath"] as? String != nil)
    }

    @Test func theCrontabLineRunsTheSweep() async throws {
        let w = try World()
        let text = try String(contentsOf: Self.root.appendingPathComponent("scaffold/cron/crontab"), encoding: .utf8)
        let line = try #require(text.split(separator: "\n").first { !$0.hasPrefix("#") && !$0.isEmpty })
        let fields = line.split(separator: " ", maxSplits: 5)
        #expect(fields.prefix(5) == ["*", "*", "*", "*", "*"])  // every minute
        // The command part, as cron's /bin/sh runs it, with this build's repl and the test's emulator.
        let command = String(fields[5]).replacingOccurrences(of: "/usr/local/bin/repl", with: "\(Paths.repl) --orbctl \(w.orbctl)")
        var env = w.environment
        env["HOME"] = w.root.path
        // The crontab's store is ~/.repl: an old orphan of its control id must go, a foreign machine stays.
        let cronStore = try ReplStore.Store(directory: w.root.appendingPathComponent(".repl"))
        let cid = try cronStore.controlID()
        try await w.sim(["create", "ubuntu", "repl-\(cid)-z9-z9"])
        try await w.sim(["create", "ubuntu", "repl-\(try w.store.controlID())-z8-z8"])
        try await w.sim(["admin", "clock", "advance", "5m"])
        let result = try await SystemProcessRunner.run("/bin/sh", ["-c", command], input: nil, timeout: 120, environment: env, limit: 1 << 20)
        #expect(result.status == 0)
        // It used ~/.repl as its state and removed the old orphan of that store's control id.
        let machines = try w.machines()
        let log = (try? String(contentsOf: w.root.appendingPathComponent(".repl/sweep.log"), encoding: .utf8)) ?? ""
        #expect(FileManager.default.fileExists(atPath: w.root.appendingPathComponent(".repl/state.db").path), "log: \(log)")
        #expect(machines.map(\.name) == ["repl-\(try w.store.controlID())-z8-z8"], "log: \(log)")
    }
}
