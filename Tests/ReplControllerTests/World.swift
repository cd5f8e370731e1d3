import Foundation
@testable import OrbSim
@testable import OrbStack
@testable import ReplController
import ReplCore
import ReplStore

enum Paths {
    static let buildDirectory: URL = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        while dir.path.contains(".xctest") { dir.deleteLastPathComponent() }
        return dir
    }()
    static let sim = ProcessInfo.processInfo.environment["ORBSIM_BIN"] ?? buildDirectory.appendingPathComponent("orbctl-sim").path
    static let repl = buildDirectory.appendingPathComponent("repl").path
}

/// A store, an emulator and a controller over them, in a fresh directory.
final class World: @unchecked Sendable {
    let root: URL
    let orbctl: String
    let environment: [String: String]
    let store: Store
    let controller: Controller

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("repl-world-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("bin"), withIntermediateDirectories: true)
        orbctl = root.appendingPathComponent("bin/orbctl").path
        try FileManager.default.createSymbolicLink(atPath: orbctl, withDestinationPath: Paths.sim)
        var env = ProcessInfo.processInfo.environment
        env["ORBSIM_HOME"] = root.appendingPathComponent("sim").path
        env["ORBSIM_LATENCY"] = "fast"
        env["HOME"] = root.path
        env["REPL_HOME"] = root.appendingPathComponent("state").path
        environment = env
        store = try Store(directory: root.appendingPathComponent("state"))
        var client = OrbctlClient(command: OrbctlCommand(executable: orbctl), runner: SystemProcessRunner(environment: env))
        client.deleteGrace = 0.01
        client.pollInterval = 0.02
        var settings = ControllerSettings(logsDirectory: root.appendingPathComponent("state/logs"))
        settings.probeInterval = 0
        settings.deadlineMargin = 1
        controller = Controller(store: store, provider: OrbStackProvider(client: client), settings: settings)
    }

    deinit {
        _ = try? sim(["admin", "reset"])
        try? FileManager.default.removeItem(at: root)
    }

    @discardableResult
    func sim(_ args: [String]) throws -> ProcessResult {
        try SystemProcessRunner.runBlocking(orbctl, args, input: nil, timeout: 30, environment: environment, limit: 1 << 20)
    }

    func machines() throws -> [ObservedMachine] { try OrbctlClient.decodeList(try sim(["list", "-f", "json"]).stdout) }

    func apply(_ yaml: String) throws {
        let known = try store.knownNames()
        try store.apply(try ManifestParser(knownRuns: known.runs, knownSnapshots: known.snapshots).parse(yaml, file: "test.yaml"))
    }

    func run(_ name: String) throws -> DesiredRun { try require(try store.runs().first { $0.run.manifest.name == name }, "no run \(name)").run }

    /// Ticks until `done` holds (or fails after `seconds`).
    @discardableResult
    func tick(until done: () throws -> Bool, seconds: Double = 30) async throws -> Int {
        let deadline = Date().addingTimeInterval(seconds)
        var ticks = 0
        while Date() < deadline {
            let report = await controller.tick()
            ticks += 1
            if try done() { return ticks }
            if !report.didSomething { try await Task.sleep(nanoseconds: 50_000_000) }
        }
        throw WorldError("condition not reached after \(ticks) ticks")
    }

    func wanted(_ run: DesiredRun) -> [InstanceState] { run.instances.filter { run.wants($0) } }
}

struct WorldError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

import Testing
func require<T>(_ value: T?, _ message: String = "missing") throws -> T {
    guard let value else { throw WorldError(message) }
    return value
}
