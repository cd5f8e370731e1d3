import Foundation
@testable import OrbSim
import ReplCore
import ReplTestSupport
import ReplPlatform

/// A fresh emulator home per test, driven through the real `orbctl-sim` binary
/// (invoked as `orbctl` through a symlink) or in process through the same model.
final class SimHarness: @unchecked Sendable {
    let emulator: EmulatorHome
    var home: URL { emulator.root }
    var orbctl: String { emulator.orbctl }
    var environment: [String: String] {
        get { emulator.environment }
        set { emulator.environment = newValue }
    }

    struct Output: CustomStringConvertible {
        var exitCode: Int32
        var stdout: String
        var stderr: String
        var description: String { "exit \(exitCode)\nstdout: \(stdout)\nstderr: \(stderr)" }
    }

    static let simBinary = BuildProducts.orbctlSim

    init(fast: Bool = true) throws {
        emulator = try EmulatorHome(prefix: "orbsim-test", fast: fast)
    }

    deinit { emulator.remove() }

    var simHome: URL { URL(fileURLWithPath: environment["ORBSIM_HOME"]!) }

    /// Runs the binary; `timeout` kills it (SIGKILL) and reports exit 137.
    @discardableResult
    func run(_ args: [String], stdin: String? = nil, environment extra: [String: String] = [:], timeout: TimeInterval = 60) async throws -> Output {
        let result = try await emulator.sim(args, input: stdin.map { Data($0.utf8) }, environment: extra, timeout: timeout)
        return Output(exitCode: result.status, stdout: result.stdoutText, stderr: result.stderrText)
    }


    /// Runs the same model in this process.
    func inProcess(_ args: [String]) throws -> Output {
        let result = try emulator.simInProcess(args)
        return Output(exitCode: result.status, stdout: result.stdoutText, stderr: result.stderrText)
    }

    /// `orbctl list --format json`, decoded loosely.
    func machines() async throws -> [[String: Any]] {
        let out = try await run(["list", "--format", "json"])
        return try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [[String: Any]] ?? []
    }

    func state(_ name: String) async throws -> String? {
        try await machines().first { $0["name"] as? String == name }?["state"] as? String
    }

    func store() -> SimStore { SimStore(home: simHome) }

    /// The host ids of a machine's processes (its init left out), seen from the host.
    func machineProcesses(_ name: String) async throws -> [Int32] {
        guard let id = try await machines().first(where: { $0["name"] as? String == name })?["id"] as? String else { return [] }
        let sim = OrbSim(home: simHome, executable: SimHarness.simBinary, environment: environment)
        return MachineBoot(sim: sim).processes(String(id.dropFirst(10)))
    }

    /// Whether any of `pids` is still alive (a zombie is not).
    static func anyAlive(_ pids: [Int32]) -> Bool { pids.contains { kill($0, 0) == 0 && !Platform.isZombie($0) } }
}
