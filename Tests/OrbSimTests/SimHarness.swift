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
        let result = try ChildProcess.run(orbctl, args, environment: environment.merging(extra) { $1 },
                                          stdin: stdin.map { Data($0.utf8) }, scratch: home, timeout: timeout)
        return Output(exitCode: result.status, stdout: String(decoding: result.stdout, as: UTF8.self),
                      stderr: String(decoding: result.stderr, as: UTF8.self))
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

/// posix_spawn and waitpid, without Foundation's Process (whose exit monitoring
/// can miss a child's exit while other children come and go).
enum ChildProcess {
    struct Result {
        var status: Int32
        var stdout: Data
        var stderr: Data
    }

    static func run(_ path: String, _ args: [String], environment: [String: String], stdin: Data?, scratch: URL,
                    timeout: TimeInterval) throws -> Result {
        let id = UUID().uuidString
        let inPath = scratch.appendingPathComponent("in-\(id)").path
        let outPath = scratch.appendingPathComponent("out-\(id)").path
        let errPath = scratch.appendingPathComponent("err-\(id)").path
        try (stdin ?? Data()).write(to: URL(fileURLWithPath: inPath))
        defer { for p in [inPath, outPath, errPath] { unlink(p) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin == nil ? "/dev/null" : inPath, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv = ([path] + args).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in argv { free(p) }; for p in envp { free(p) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, path, &actions, nil, argv, envp)
        guard rc == 0 else { throw NSError(domain: "spawn", code: Int(rc)) }
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(timeout)
        var killed = false
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { break }
            if !killed && Date() >= deadline {
                kill(pid, SIGKILL)
                killed = true
            }
            usleep(1_000)
        }
        let out = FileManager.default.contents(atPath: outPath) ?? Data()
        let err = FileManager.default.contents(atPath: errPath) ?? Data()
        let signal = status & 0x7f
        let code: Int32 = killed ? 137 : (signal == 0 ? (status >> 8) & 0xff : 128 + signal)
        return Result(status: code, stdout: out, stderr: err)
    }
}
