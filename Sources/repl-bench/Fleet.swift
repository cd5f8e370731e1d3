import Foundation
import OrbSim
import OrbStack
import ReplController
import ReplCore
import ReplPlatform
import ReplStore

/// A fresh emulator home, store and controller for one benchmark section.
final class Fleet: @unchecked Sendable {
    let root: URL
    let orbctl: String
    let environment: [String: String]
    let store: Store
    let provider: OrbStackProvider

    init(self executable: String) throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("repl-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("bin"), withIntermediateDirectories: true)
        orbctl = root.appendingPathComponent("bin/orbctl").path
        try FileManager.default.createSymbolicLink(atPath: orbctl, withDestinationPath: executable)
        var env = ProcessInfo.processInfo.environment
        env["ORBSIM_HOME"] = root.appendingPathComponent("sim").path
        env["HOME"] = root.path
        env["REPL_HOME"] = root.appendingPathComponent("state").path
        env["ORBSIM_LATENCY"] = "fast"
        environment = env
        store = try Store(directory: root.appendingPathComponent("state"))
        provider = OrbStackProvider(client: OrbctlClient(command: OrbctlCommand(executable: orbctl), runner: SystemProcessRunner(environment: env)))
    }

    func controller(concurrency: Int, grace: TimeInterval = 1, channel: Bool = true) -> Controller {
        var settings = ControllerSettings(logsDirectory: root.appendingPathComponent("state/logs"))
        settings.channelDirectory = channel ? root.appendingPathComponent("state/machines") : nil
        settings.concurrency = concurrency
        settings.probeInterval = 0
        var client = provider.client
        client.deleteGrace = grace
        client.pollInterval = 0.05
        return Controller(store: store, provider: OrbStackProvider(client: client), settings: settings)
    }

    @discardableResult
    func sim(_ args: [String]) async throws -> ProcessResult {
        try await SystemProcessRunner.run(orbctl, args, input: nil, timeout: 120, environment: environment, limit: 1 << 26)
    }

    /// Runs `program` with the fleet's environment: its result, and its wall time in seconds.
    func timed(_ program: String, _ arguments: [String], timeout: TimeInterval = 60, limit: Int = 1 << 26) async throws -> (ProcessResult, Double) {
        let start = DispatchTime.now().uptimeNanoseconds
        let result = try await SystemProcessRunner.run(program, arguments, input: nil, timeout: timeout, environment: environment, limit: limit)
        return (result, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }

    func latency(_ verb: String, _ ms: Int) async throws { try await sim(["admin", "latency", verb, "\(ms)"]) }

    func calls() async throws -> Int {
        let out = try await sim(["admin", "calls", "--json"])
        return (try JSONSerialization.jsonObject(with: out.stdout) as? [String: Any])?["total"] as? Int ?? -1
    }

    func apply(_ yaml: String) throws {
        try store.apply(try ManifestParser().parse(yaml, file: "bench.yaml"))
    }

    /// Ticks until `done`, with no pause between ticks.
    func converge(_ controller: Controller, limit: TimeInterval = 900, until done: @Sendable () throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(limit)
        while Date() < deadline {
            let report = await controller.tick()
            if let e = report.observationError { throw BenchError("tick failed: \(e)") }
            if try done() { return }
            if !report.didSomething { try await Task.sleep(nanoseconds: 20_000_000) }
        }
        throw BenchError("did not converge within \(Int(limit)) s")
    }

    /// Ends the machines' processes (in this process, through the emulator's model, so a
    /// `defer` can call it) and removes the fleet's directory.
    func cleanUp() {
        let keep = environment["REPL_BENCH_KEEP"] == "1"
        if keep {
            let log = root.appendingPathComponent("sim/calls.jsonl")
            try? FileManager.default.copyItem(at: log, to: root.appendingPathComponent("calls.jsonl"))
        }
        if let io = SimIO.discarded {
            let sim = OrbSim(home: URL(fileURLWithPath: environment["ORBSIM_HOME"]!), executable: orbctl, environment: environment)
            _ = sim.main(["admin", "reset"], io: io)
        }
        // REPL_BENCH_KEEP=1 keeps the directory (its call log, store and logs) to look into a figure.
        if !keep { try? FileManager.default.removeItem(at: root) } else { FileHandle.standardError.write(Data("kept \(root.path)\n".utf8)) }
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func seconds(_ body: () async throws -> Void) async rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try await body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
