import Foundation
import OrbStack

/// The built products (`orbctl-sim`, `repl`) next to the test binary.
public enum BuildProducts {
    public static let directory: URL = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // On macOS the test binary sits inside an .xctest bundle.
        while dir.path.contains(".xctest") { dir.deleteLastPathComponent() }
        return dir
    }()

    /// The emulator binary (`ORBSIM_BIN` overrides it).
    public static let orbctlSim = ProcessInfo.processInfo.environment["ORBSIM_BIN"] ?? directory.appendingPathComponent("orbctl-sim").path
    public static let repl = directory.appendingPathComponent("repl").path
}

/// A fresh directory with the emulator reachable as `bin/orbctl`, its state under `sim/`,
/// and an environment pointing there (HOME set, fast latencies unless asked otherwise).
public final class EmulatorHome: @unchecked Sendable {
    public let root: URL
    public let orbctl: String
    public var environment: [String: String]

    public init(prefix: String, fast: Bool = true) throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("bin"), withIntermediateDirectories: true)
        orbctl = root.appendingPathComponent("bin/orbctl").path
        try FileManager.default.createSymbolicLink(atPath: orbctl, withDestinationPath: BuildProducts.orbctlSim)
        var env = ProcessInfo.processInfo.environment
        env["ORBSIM_HOME"] = root.appendingPathComponent("sim").path
        env["HOME"] = root.path
        if fast { env["ORBSIM_LATENCY"] = "fast" }
        environment = env
    }

    public var simDirectory: URL { root.appendingPathComponent("sim") }

    /// Runs the emulator binary; a timeout kills it and reports exit 137.
    @discardableResult
    public func sim(_ args: [String], input: Data? = nil, environment extra: [String: String] = [:], timeout: TimeInterval = 60) throws -> ProcessResult {
        try SystemProcessRunner.runBlocking(orbctl, args, input: input, timeout: timeout,
                                            environment: environment.merging(extra) { $1 }, limit: 1 << 24)
    }

    /// Ends every machine's processes and removes the directory.
    public func remove() {
        _ = try? sim(["admin", "reset"])
        try? FileManager.default.removeItem(at: root)
    }
}
