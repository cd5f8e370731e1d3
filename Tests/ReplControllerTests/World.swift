import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import OrbSim
@testable import OrbStack
@testable import ReplController

enum Paths {
    static let sim = BuildProducts.orbctlSim
    static let repl = BuildProducts.repl
}

/// A store, an emulator and a controller over them, in a fresh directory.
final class World: @unchecked Sendable {
    let emulator: EmulatorHome
    var root: URL { emulator.root }
    var orbctl: String { emulator.orbctl }
    var environment: [String: String] { emulator.environment }

    /// The built `repl` against this world's orbctl (or `orbctl`), with `REPL_TEST_CRASH` set to
    /// `crash` and `extra` added to the environment.
    func repl(
        _ args: [String], crash: String? = nil, orbctl: String? = nil, extra: [String: String] = [:], timeout: TimeInterval = 180
    ) async throws -> ProcessResult {
        var env = environment.merging(extra) { $1 }
        if let crash { env["REPL_TEST_CRASH"] = crash }
        return try await SystemProcessRunner.run(
            Paths.repl, ["--orbctl", orbctl ?? self.orbctl] + args, input: nil, timeout: timeout, environment: env, limit: 1 << 22)
    }
    let store: Store
    let controller: Controller

    /// `inProcess`: the controller's twins, for tests of the controller alone: its store in
    /// memory and its orbctl calls answered by the emulator's model in this process (no
    /// process per call). Such a world has no state directory for `repl` commands to share.
    init(channel: Bool = true, concurrency: Int? = nil, inProcess: Bool = false) throws {
        emulator = try EmulatorHome(prefix: "repl-world")
        emulator.environment["REPL_HOME"] = emulator.root.appendingPathComponent("state").path
        let root = emulator.root, env = emulator.environment
        store = inProcess ? try Store(inMemory: ()) : try Store(directory: root.appendingPathComponent("state"))
        let runner: any ProcessRunner =
            inProcess ? InProcessRunner(home: emulator.simDirectory, environment: env) : SystemProcessRunner(environment: env)
        var client = OrbctlClient(command: OrbctlCommand(executable: emulator.orbctl), runner: runner)
        client.deleteGrace = 0.01
        client.pollInterval = 0.02
        var settings = ControllerSettings(logsDirectory: root.appendingPathComponent("state/logs"))
        settings.probeInterval = 0
        // (Past the SIGTERM and a loaded machine's skew between the launch and its record.)
        settings.deadlineMargin = 3
        settings.heartbeatTimeout = 5
        settings.channelDirectory = channel ? root.appendingPathComponent("state/machines") : nil
        if let concurrency { settings.concurrency = concurrency }
        controller = Controller(store: store, provider: OrbStackProvider(client: client), settings: settings)
    }

    deinit { emulator.remove() }

    @discardableResult
    func sim(_ args: [String]) async throws -> ProcessResult { try await emulator.sim(args, timeout: 30) }

    /// The emulator's machines, read through its model in this process.
    func machines() throws -> [ObservedMachine] { try OrbctlClient.decodeList(try emulator.simInProcess(["list", "-f", "json"]).stdout) }

    func apply(_ yaml: String) throws {
        let known = try store.knownNames()
        try store.apply(try ManifestParser(knownRuns: known.runs, knownSnapshots: known.snapshots).parse(yaml, file: "test.yaml"))
    }

    func run(_ name: String) throws -> DesiredRun { try require(try store.runs().first { $0.run.manifest.name == name }, "no run \(name)").run }

    /// Ticks until `done` holds (or fails after `seconds` and at least `minimumTicks`: on a loaded
    /// machine one tick that creates and boots machines can take longer than the whole budget).
    @discardableResult
    func tick(until done: () async throws -> Bool, seconds: Double = 30, minimumTicks: Int = 3) async throws -> Int {
        let deadline = Date().addingTimeInterval(seconds)
        var ticks = 0
        while Date() < deadline || ticks < minimumTicks {
            let report = await controller.tick()
            ticks += 1
            if try await done() { return ticks }
            if !report.didSomething { try await Task.sleep(nanoseconds: 50_000_000) }
        }
        // Say what the world looked like, so that a failure on a loaded machine can be read.
        let runs =
            (try? store.runs().map { r in
                "\(r.run.manifest.name): "
                    + r.run.instances.map {
                        "\($0.id) \($0.phase.rawValue) exit \($0.exitCode.map(String.init) ?? "-")\($0.reason.map { " (\($0))" } ?? "")"
                    }.joined(separator: ", ")
            }) ?? []
        let last = await controller.tick()
        let plan = last.plan.map { "actions \($0.actions.map { "\($0)" }), waiting \($0.waiting)" } ?? "no plan: \(last.observationError ?? "?")"
        throw WorldError(
            "condition not reached after \(ticks) ticks; runs: \(runs.joined(separator: "; ")); last tick: \(plan); machines: \((try? machines().map { "\($0.name) \($0.state)" }) ?? [])"
        )
    }

    func wanted(_ run: DesiredRun) -> [InstanceState] { run.instances.filter { run.wants($0) } }
}

struct WorldError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

func require<T>(_ value: T?, _ message: String = "missing") throws -> T {
    guard let value else { throw WorldError(message) }
    return value
}
