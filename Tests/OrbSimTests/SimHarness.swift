import Foundation
@testable import OrbSim
import ReplCore

/// A fresh emulator home per test, driven through the real `orbctl-sim` binary
/// (invoked as `orbctl` through a symlink) or in process through the same model.
final class SimHarness: @unchecked Sendable {
    let home: URL
    let orbctl: String
    var environment: [String: String]

    struct Output: CustomStringConvertible {
        var exitCode: Int32
        var stdout: String
        var stderr: String
        var description: String { "exit \(exitCode)\nstdout: \(stdout)\nstderr: \(stderr)" }
    }

    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The built `orbctl-sim`, next to the test binary.
    static let simBinary: String = {
        if let explicit = ProcessInfo.processInfo.environment["ORBSIM_BIN"] { return explicit }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // On macOS the test binary sits inside an .xctest bundle.
        while dir.path.contains(".xctest") { dir.deleteLastPathComponent() }
        let candidate = dir.appendingPathComponent("orbctl-sim").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        return repositoryRoot.appendingPathComponent(".build/debug/orbctl-sim").path
    }()

    init(fast: Bool = true) throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("orbsim-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        orbctl = home.appendingPathComponent("bin/orbctl").path
        try FileManager.default.createDirectory(at: home.appendingPathComponent("bin"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: orbctl, withDestinationPath: SimHarness.simBinary)
        environment = ProcessInfo.processInfo.environment
        environment["ORBSIM_HOME"] = home.appendingPathComponent("sim").path
        environment["HOME"] = home.path
        if fast { environment["ORBSIM_LATENCY"] = "fast" }
    }

    deinit {
        _ = try? run(["admin", "reset"])
        try? FileManager.default.removeItem(at: home)
    }

    var simHome: URL { URL(fileURLWithPath: environment["ORBSIM_HOME"]!) }

    /// Runs the binary; `timeout` kills it (SIGKILL) and reports exit 137.
    @discardableResult
    func run(_ args: [String], stdin: String? = nil, environment extra: [String: String] = [:], timeout: TimeInterval = 60) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: orbctl)
        process.arguments = args
        process.environment = environment.merging(extra) { $1 }
        let outURL = home.appendingPathComponent("out-\(UUID().uuidString)")
        let errURL = home.appendingPathComponent("err-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL)
        let err = try FileHandle(forWritingTo: errURL)
        defer {
            try? out.close()
            try? err.close()
            try? FileManager.default.removeItem(at: outURL)
            try? FileManager.default.removeItem(at: errURL)
        }
        process.standardOutput = out
        process.standardError = err
        if let stdin {
            let inURL = home.appendingPathComponent("in-\(UUID().uuidString)")
            try Data(stdin.utf8).write(to: inURL)
            process.standardInput = try FileHandle(forReadingFrom: inURL)
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(2_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return Output(exitCode: 137, stdout: read(outURL), stderr: read(errURL))
        }
        process.waitUntilExit()
        return Output(exitCode: process.terminationStatus, stdout: read(outURL), stderr: read(errURL))
    }

    private func read(_ url: URL) -> String { (try? String(contentsOf: url, encoding: .utf8)) ?? "" }

    /// Runs the same model in this process.
    func inProcess(_ args: [String]) throws -> Output {
        let sim = OrbSim(home: simHome, executable: SimHarness.simBinary, environment: environment)
        let outURL = home.appendingPathComponent("ip-out-\(UUID().uuidString)")
        let errURL = home.appendingPathComponent("ip-err-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL)
        let err = try FileHandle(forWritingTo: errURL)
        let code = sim.main(args, io: SimIO(stdin: .nullDevice, stdout: out, stderr: err))
        try out.close()
        try err.close()
        defer {
            try? FileManager.default.removeItem(at: outURL)
            try? FileManager.default.removeItem(at: errURL)
        }
        return Output(exitCode: code, stdout: read(outURL), stderr: read(errURL))
    }

    /// `orbctl list --format json`, decoded loosely.
    func machines() throws -> [[String: Any]] {
        let out = try run(["list", "--format", "json"])
        return try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [[String: Any]] ?? []
    }

    func state(_ name: String) throws -> String? {
        try machines().first { $0["name"] as? String == name }?["state"] as? String
    }

    func store() -> SimStore { SimStore(home: simHome) }
}
