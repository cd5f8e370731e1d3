import Foundation
import ReplPlatform
import ReplTestSupport
import Testing

@testable import repl

/// The launchd agent for the sweep: what it records, how it is loaded, and that launchd's
/// bare environment is enough for it to find orbctl.
@Suite struct LaunchAgentTests {
    /// A home directory with a fake `launchctl` that records its arguments and answers `status`.
    final class Home: @unchecked Sendable {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("repl-launchd-\(UUID().uuidString)")
        var calls: URL { dir.appendingPathComponent("launchctl.calls") }
        var launchctl: String { dir.appendingPathComponent("launchctl").path }

        init(bootstrapStatus: Int = 0) throws {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let script = """
                #!/bin/sh
                echo "$*" >> '\(calls.path)'
                case "$1" in bootstrap) [ \(bootstrapStatus) = 0 ] || echo "Bootstrap failed: 5: Input/output error" >&2; exit \(bootstrapStatus);; esac
                exit 3

                """
            FileManager.default.createFile(atPath: launchctl, contents: Data(script.utf8), attributes: [.posixPermissions: 0o755])
        }

        deinit { try? FileManager.default.removeItem(at: dir) }

        func agent() -> LaunchAgent {
            LaunchAgent(home: dir.path, uid: 501, launchctl: launchctl, runner: SystemProcessRunner(environment: ["PATH": "/usr/bin:/bin"]))
        }

        func recorded() -> [String] {
            ((try? String(contentsOf: calls, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }

        func plist() throws -> [String: Any] {
            let data = try Data(contentsOf: URL(fileURLWithPath: agent().plistPath))
            return try #require(try PropertyListSerialization.propertyList(from: data, format: nil) as? [String: Any])
        }
    }

    @Test func installRecordsTheAbsoluteBinaryAndOrbStacksPathAndBootstrapsTheGUIDomain() async throws {
        let home = try Home()
        let state = home.dir.appendingPathComponent("state").path
        let lines = try await home.agent().install(program: BuildProducts.repl, stateDirectory: state, orbctl: "/Users/u/.orbstack/bin/orbctl")
        #expect(home.recorded() == ["bootout gui/501/dev.repl.sweep", "bootstrap gui/501 \(home.agent().plistPath)"])
        let plist = try home.plist()
        #expect(plist["Label"] as? String == "dev.repl.sweep")
        #expect(plist["ProgramArguments"] as? [String] == [BuildProducts.repl, "orphans", "sweep", "--quiet"])
        let env = try #require(plist["EnvironmentVariables"] as? [String: String])
        #expect(env["PATH"] == "\(home.dir.path)/.orbstack/bin:/usr/local/bin:/opt/homebrew/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        #expect(env["REPL_ORBCTL"] == "/Users/u/.orbstack/bin/orbctl")
        #expect(env["REPL_HOME"] == state && env["HOME"] == home.dir.path)
        #expect(plist["StandardOutPath"] as? String == state + "/sweep.log")
        #expect(plist["StartInterval"] as? Int == 60)
        #expect(lines.contains { $0.contains("--uninstall-launchd") })
        // Where an aws state directory's credentials are goes with it (never a secret: the
        // caller passes only the profile and its files).
        _ = try await home.agent().install(
            program: BuildProducts.repl, stateDirectory: state, orbctl: nil, extra: [("AWS_PROFILE", "work & play")])
        #expect((try home.plist()["EnvironmentVariables"] as? [String: String])?["AWS_PROFILE"] == "work & play")
    }

    @Test func aRelativeProgramIsRefused() async throws {
        let home = try Home()
        await #expect(throws: CLIError.self) {
            _ = try await home.agent().install(program: "repl", stateDirectory: home.dir.path, orbctl: nil)
        }
        #expect(home.recorded().isEmpty)
    }

    @Test func aFailedBootstrapSaysHowToLoadItByHand() async throws {
        let home = try Home(bootstrapStatus: 5)
        do {
            _ = try await home.agent().install(program: BuildProducts.repl, stateDirectory: home.dir.path, orbctl: nil)
            Issue.record("no error")
        } catch let error as CLIError {
            #expect(error.description.contains("Input/output error"))
            #expect(error.description.contains("launchctl bootstrap gui/501 \(home.agent().plistPath)"))
        }
    }

    @Test func uninstallBootsOutTheJobAndRemovesThePlist() async throws {
        let home = try Home()
        _ = try await home.agent().install(program: BuildProducts.repl, stateDirectory: home.dir.path, orbctl: nil)
        _ = try await home.agent().uninstall()
        #expect(home.recorded().last == "bootout gui/501/dev.repl.sweep")
        #expect(!FileManager.default.fileExists(atPath: home.agent().plistPath))
        await #expect(throws: CLIError.self) { _ = try await home.agent().uninstall() }
    }

    /// launchd runs the agent with only the plist's environment. With orbctl only in
    /// `~/.orbstack/bin` (OrbStack without its admin setup) the sweep still finds it.
    @Test func theAgentsEnvironmentIsEnoughForASweep() async throws {
        let home = try Home()
        let emulator = try EmulatorHome(prefix: "repl-launchd-sim")
        defer { emulator.remove() }
        let orbstackBin = home.dir.appendingPathComponent(".orbstack/bin")
        try FileManager.default.createDirectory(at: orbstackBin, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: orbstackBin.appendingPathComponent("orbctl").path, withDestinationPath: BuildProducts.orbctlSim)
        let state = home.dir.appendingPathComponent("state").path
        _ = try await home.agent().install(program: BuildProducts.repl, stateDirectory: state, orbctl: nil)
        let plist = try home.plist()
        let program = try #require(plist["ProgramArguments"] as? [String])
        var env = try #require(plist["EnvironmentVariables"] as? [String: String])
        env["ORBSIM_HOME"] = emulator.simDirectory.path  // the emulator's state, not part of the agent
        env["ORBSIM_LATENCY"] = "fast"
        let sweep = try await SystemProcessRunner.run(
            program[0], Array(program.dropFirst()), input: nil, timeout: 120, environment: env, limit: 1 << 20)
        #expect(sweep.status == 0, "\(sweep.stdoutText)\(sweep.stderrText)")
        #expect(FileManager.default.fileExists(atPath: state + "/state.db"))
    }
}
