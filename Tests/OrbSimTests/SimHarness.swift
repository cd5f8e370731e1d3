import Foundation
import ReplCore
import ReplPlatform
import ReplTestSupport

@testable import OrbSim

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

    /// Runs the binary; `timeout` kills it (SIGKILL) and reports exit 137. Against a real
    /// orbctl (`ORBCTL_CONFORMANCE`), the test's machine names are mapped to this test's own
    /// `repl-cnform-…` names on the way in and back on the way out, and `list` shows
    /// only this test's machines: the expectations read the same either way.
    @discardableResult
    func run(_ args: [String], stdin: String? = nil, environment extra: [String: String] = [:], timeout: TimeInterval = 60) async throws -> Output {
        let real = Conformance.isReal
        let argv = real ? args.map(mapArgument) : args
        let result = try await emulator.sim(argv, input: stdin.map { Data($0.utf8) }, environment: extra, timeout: timeout)
        var out = Output(exitCode: result.status, stdout: result.stdoutText, stderr: result.stderrText)
        if real {
            let prefix = emulator.name("")
            if OrbSim.verb(of: argv) == "list" { out.stdout = SimHarness.onlyMachines(named: prefix, in: out.stdout) }
            out.stdout = out.stdout.replacingOccurrences(of: prefix, with: "")
            out.stderr = out.stderr.replacingOccurrences(of: prefix, with: "")
        }
        return out
    }

    /// The machine names tests use: mapped to this test's own names against a real orbctl.
    static let testNames: Set<String> = [
        "m1", "m2", "m3", "src", "copy", "old", "new", "alpha", "bravo", "base", "normal",
        "iso", "ghost", "x2", "snap",
    ]

    func mapArgument(_ arg: String) -> String {
        if SimHarness.testNames.contains(arg) { return emulator.name(arg) }
        if arg.hasPrefix("-"), let eq = arg.firstIndex(of: "="), SimHarness.testNames.contains(String(arg[arg.index(after: eq)...])) {
            return arg[...eq] + emulator.name(String(arg[arg.index(after: eq)...]))
        }
        let parts = arg.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if parts.count == 3, parts[0] == "machine", SimHarness.testNames.contains(parts[1]) {
            return "machine.\(emulator.name(parts[1])).\(parts[2])"
        }
        return arg
    }

    /// `list` output (text, names or Go-style JSON) with only the machines named `prefix…`.
    static func onlyMachines(named prefix: String, in text: String) -> String {
        guard text.hasPrefix("[") else {
            return text.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { $0.hasPrefix(prefix) || $0.hasPrefix("NAME") }.map { $0 + "\n" }.joined()
        }
        // Elements are "  {" … "  }" blocks, one per machine.
        var blocks: [[Substring]] = [], current: [Substring] = []
        for line in text.split(separator: "\n") {
            if line == "  {" {
                current = [line]
            } else if line.hasPrefix("  }") {
                current.append("  }")
                blocks.append(current)
                current = []
            } else if !current.isEmpty {
                current.append(line)
            }
        }
        let kept = blocks.filter { $0.contains { $0.contains("\"name\": \"\(prefix)") } }
        guard !kept.isEmpty else { return "[]\n" }
        return "[\n" + kept.map { $0.joined(separator: "\n") }.joined(separator: ",\n") + "\n]\n"
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
