import Foundation
import OrbSim
import OrbStack
import ReplPlatform

/// The built products (`orbctl-sim`, `repl`) beside the tests (`REPL_BUILD_DIR` overrides).
///
/// On Linux the tests are one executable in `.build/debug`. On macOS they are a bundle
/// (`.build/debug/replPackageTests.xctest`) loaded by a toolchain program (`xctest`, the
/// testing helper), so neither `argv[0]` nor the running executable is beside the products:
/// the directory is the first one, walking out of any `.xctest`, that holds `orbctl-sim`.
public enum BuildProducts {
    private final class Marker {}

    public static let directory: URL = {
        if let dir = ProcessInfo.processInfo.environment["REPL_BUILD_DIR"], !dir.isEmpty { return URL(fileURLWithPath: dir) }
        let candidates =
            [
                Bundle(for: Marker.self).bundleURL, Bundle.main.bundleURL,
                URL(fileURLWithPath: Platform.executablePath()),
            ] + Bundle.allBundles.map(\.bundleURL)
        let found = directory(among: candidates) { dir in
            FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("orbctl-sim").path)
        }
        return found ?? URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(".build/debug")
    }()

    /// The first candidate directory, walking out of any `.xctest` bundle and from an
    /// executable to its directory, that holds the products.
    public static func directory(among candidates: [URL], holdsProducts: (URL) -> Bool) -> URL? {
        for candidate in candidates {
            var dir = candidate.standardizedFileURL
            while dir.path.contains(".xctest") { dir.deleteLastPathComponent() }
            if holdsProducts(dir) { return dir }
            if holdsProducts(dir.deletingLastPathComponent()) { return dir.deletingLastPathComponent() }  // an executable
        }
        return nil
    }

    /// The emulator binary (`ORBSIM_BIN` overrides it).
    public static let orbctlSim = ProcessInfo.processInfo.environment["ORBSIM_BIN"] ?? directory.appendingPathComponent("orbctl-sim").path
    public static let repl = directory.appendingPathComponent("repl").path
}

/// Whether the emulator runs machine commands here (Linux as root: each machine gets a
/// private mount and UTS namespace). Tests that start runs are gated on it, so `swift test`
/// on a Mac passes and names what it skipped.
public let machineCommandsPossible = Conformance.isReal || Platform.machineNamespaces

/// Whether the running test may run machine commands: it is marked `.machineCommands` and the
/// host can (an emulator home made outside such a test refuses them).
public var machineCommandsAvailable: Bool { Conformance.isReal || (machineCommandsPossible && MachineCommands.inScope) }

/// A fresh directory with the emulator reachable as `bin/orbctl`, its state under `sim/`,
/// and an environment pointing there (HOME set, fast latencies unless asked otherwise).
public final class EmulatorHome: @unchecked Sendable {
    public let root: URL
    public let orbctl: String
    public var environment: [String: String]
    /// This home's machine names get it against a real orbctl (see `Conformance`).
    public let token = Conformance.newToken()

    public init(prefix: String, fast: Bool = true) throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("bin"), withIntermediateDirectories: true)
        var env = ProcessInfo.processInfo.environment
        if let real = Conformance.realOrbctl {
            // OrbStack's own orbctl, with the user's own HOME.
            orbctl = real
            Conformance.sweepOnce(orbctl: real, environment: env)
        } else {
            orbctl = root.appendingPathComponent("bin/orbctl").path
            try FileManager.default.createSymbolicLink(atPath: orbctl, withDestinationPath: BuildProducts.orbctlSim)
            env["ORBSIM_HOME"] = root.appendingPathComponent("sim").path
            env["HOME"] = root.path
            if fast { env["ORBSIM_LATENCY"] = "fast" }
            // Only a test marked `.machineCommands` may run commands in machines (as on a Mac).
            if !MachineCommands.inScope { env["ORBSIM_NAMESPACES"] = "0" }
        }
        environment = env
    }

    /// The machine name a test's short name stands for here.
    public func name(_ short: String) -> String { Conformance.machineName(short, token: token) }

    /// `orbctl admin reset` on an emulator home, in this process: ends its machines' processes.
    public static func reset(simHome: URL, environment: [String: String]) {
        guard FileManager.default.fileExists(atPath: simHome.path), let io = SimIO.discarded else { return }
        var env = environment
        env["ORBSIM_HOME"] = simHome.path
        _ = OrbSim(home: simHome, executable: BuildProducts.orbctlSim, environment: env).main(["admin", "reset"], io: io)
    }

    /// Runs the emulator's model in this process (the same code as the binary; for reads
    /// such as `list`, which start no process and may run from synchronous code).
    @discardableResult
    public func simInProcess(_ args: [String]) throws -> ProcessResult {
        let out = try TemporaryOutput(), err = try TemporaryOutput()
        let sim = OrbSim(home: simDirectory, executable: BuildProducts.orbctlSim, environment: environment)
        let code = sim.main(args, io: SimIO(stdin: FileHandle.nullDevice, stdout: out.handle, stderr: err.handle))
        return ProcessResult(status: code, stdout: out.contents(), stderr: err.contents())
    }

    public var simDirectory: URL { root.appendingPathComponent("sim") }

    /// Runs the emulator binary; a timeout kills it and reports exit 137.
    @discardableResult
    public func sim(
        _ args: [String], input: Data? = nil, environment extra: [String: String] = [:],
        timeout: TimeInterval = 60
    ) async throws -> ProcessResult {
        try await SystemProcessRunner.run(
            orbctl, args, input: input, timeout: timeout,
            environment: environment.merging(extra) { $1 }, limit: 1 << 24)
    }

    /// Ends every machine's processes and removes the directory (in this process, through
    /// the emulator's own model, so that it can run from a `deinit`).
    public func remove() {
        if Conformance.isReal {
            Conformance.deleteMachines(named: name(""), orbctl: orbctl, environment: environment)
        } else {
            Self.reset(simHome: simDirectory, environment: environment)
        }
        try? FileManager.default.removeItem(at: root)
    }
}

/// A file for captured output that is removed as soon as it is opened.
private struct TemporaryOutput {
    let handle: FileHandle

    init() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("repl-capture-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: url.path, contents: nil)
        handle = try FileHandle(forUpdating: url)
        try FileManager.default.removeItem(at: url)
    }

    func contents() -> Data {
        try? handle.seek(toOffset: 0)
        defer { try? handle.close() }
        return (try? handle.readToEnd()) ?? Data()
    }
}
