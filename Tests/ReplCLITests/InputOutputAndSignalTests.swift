import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import OrbStack

/// Output a user reads is the command's, byte for byte (found by attacking the channel).
@Suite(.serialized) struct OutputBytesTests {
    func raw(_ home: CLITests.Home, _ args: [String]) async throws -> ProcessResult {
        try await SystemProcessRunner.run(CLITests.repl, args, input: nil, timeout: 120, environment: home.environment, limit: 1 << 24)
    }

    @Test(.machineCommands) func logsAndWaitAreByteForByteAndFollowEndsWithoutAController() async throws {
        let home = CLITests.Home()
        // Not UTF-8, and a valid character written in two pieces a second apart.
        let command = "printf '\\377\\376a\\342\\202'; sleep 1; printf '\\254\\n'"
        let expected = Data([0xFF, 0xFE, 0x61, 0xE2, 0x82, 0xAC, 0x0A])
        let job = home.dir.appendingPathComponent("job.yaml")
        try "kind: Run\nname: bytes\ncommand: \(command)\n".write(to: job, atomically: true, encoding: .utf8)
        let wait = try await raw(home, ["--orbctl", "sim", "apply", "-f", job.path, "--wait"])
        #expect(wait.status == 0, "\(wait.stderrText)")
        // With --wait, standard output is the command's output and nothing else (#18): what
        // repl did and how the run ended is progress, on standard error.
        #expect(wait.stdout == expected, "\(Array(wait.stdout))")
        #expect(
            wait.stderrText.contains("bytes: created") && wait.stderrText.contains("run started")
                && wait.stderrText.hasSuffix("bytes: Succeeded\n"), "\(wait.stderrText)")
        let logs = try await raw(home, ["logs", "bytes"])
        #expect(logs.stdout == expected, "\(Array(logs.stdout))")
        // `logs -f` on a run nothing is ticking: it ends once the command's status says so.
        let late = home.dir.appendingPathComponent("late.yaml")
        try "kind: Run\nname: late\ncommand: echo a; sleep 2; echo b\n".write(to: late, atomically: true, encoding: .utf8)
        // Without --wait the result is what changed, on standard output; the machines' progress is not.
        let applied = try await raw(home, ["--orbctl", "sim", "apply", "-f", late.path])
        #expect(applied.status == 0 && applied.stdoutText == "late: created\n", "\(applied.stdoutText)")
        #expect(applied.stderrText.contains("run started"), "\(applied.stderrText)")
        let started = Date()
        let follow = try await raw(home, ["logs", "late", "-f"])
        #expect(follow.stdoutText == "a\nb\n", "\(follow.stdoutText)")
        #expect(Date().timeIntervalSince(started) < 30)
    }

    @Test(.machineCommands) func waitWithReplicasPrefixesWholeLinesOnly() async throws {
        let home = CLITests.Home()
        let job = home.dir.appendingPathComponent("job.yaml")
        try "kind: Run\nname: w\nreplicas: 2\ncommand: printf a; sleep 2; printf 'b\\n'; printf tail\n".write(
            to: job, atomically: true, encoding: .utf8)
        let out = try await raw(home, ["--orbctl", "sim", "apply", "-f", job.path, "--wait"])
        #expect(out.status == 0, "\(out.stderrText)")
        let lines = out.stdoutText.split(separator: "\n", omittingEmptySubsequences: false).filter { $0.hasPrefix("[w/") }
        #expect(lines.count == 4, "\(out.stdoutText)")
        #expect(lines.filter { $0.hasSuffix("] ab") }.count == 2 && lines.filter { $0.hasSuffix("] tail") }.count == 2, "\(out.stdoutText)")
    }
}

/// Hostile values from the command line and in manifests get clear errors, never a crash.
@Suite(.serialized) struct HostileInputTests {
    // (A NUL byte cannot reach argv at all: exec ends C strings there. Manifests are checked for it below.)
    @Test(arguments: ["a/b", "..", "../etc", "has space", "$(reboot)", "`id`", "a;b", "UPPER", "-rf", String(repeating: "x", count: 300)])
    func hostileNames(_ name: String) async throws {
        let home = CLITests.Home()
        let out = try await CLITests.run(home, ["--orbctl", "sim", "run", "--name", name, "--command", "true"])
        #expect(out.status == 2, "\(name.debugDescription): \(out.stderr)")
        #expect(out.stderr.split(separator: "\n").count <= 4 && !out.stderr.contains("Fatal error"))
        await #expect(try CLITests.run(home, ["run", "list"]).stdout.contains("No runs yet"))  // nothing was recorded
    }

    @Test func aTenMegabyteCommandIsRefusedClearly() async throws {
        let home = CLITests.Home()
        let file = home.dir.appendingPathComponent("big.yaml")
        let big = String(repeating: "echo 0123456789abcdef; ", count: 10 * 1024 * 1024 / 23)
        try "kind: Run\nname: big\ncommand: \"\(big)\"\n".write(to: file, atomically: true, encoding: .utf8)
        let out = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", file.path])
        #expect(out.status == 2)
        #expect(out.stderr.contains("command: is 10239 KiB; at most 1024 KiB"))
    }

    /// Standard input that is a directory, or endless, is one clear line (exit 2), never a
    /// stack trace or gigabytes held (#16).
    @Test(arguments: ["< /", "yes 'kind: Run' |"])
    func hostileStandardInputIsOneClearLine(_ how: String) async throws {
        let home = CLITests.Home()
        let command = how.hasSuffix("|") ? "\(how) \"\(CLITests.repl)\" plan -f -" : "\"\(CLITests.repl)\" plan -f - \(how)"
        let out = try await SystemProcessRunner.run(
            "/bin/sh", ["-c", command], input: nil, timeout: 60, environment: home.environment, limit: 1 << 20)
        #expect(out.status == 2, "\(out.stderrText)")
        #expect(out.stderrText.split(separator: "\n").count == 1 && out.stderrText.contains("standard input"), "\(out.stderrText)")
        #expect(!out.stderrText.contains("Fatal error"))
    }

    @Test func nulBytesInAManifestAreRefused() async throws {
        let home = CLITests.Home()
        let file = home.dir.appendingPathComponent("nul.yaml")
        try Data("kind: Run\nname: a\u{0}b\n".utf8).write(to: file)
        let out = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", file.path])
        #expect(out.status == 2 && out.stderr.contains("NUL bytes"))
    }
}

/// A signal to repl (Ctrl-C, `kill`, `launchctl bootout`) ends the orbctl call it is waiting
/// for, which runs in its own process group and so does not get the signal itself.
@Suite(.serialized) struct SignalTests {
    @Test(.machineCommands, arguments: [SIGTERM, SIGINT, SIGHUP])
    func aSignalToReplEndsItsOrbctlCall(_ sig: Int32) async throws {
        let home = CLITests.Home()
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "doctor"]).status == 0)
        let simHome = home.dir.appendingPathComponent("state/sim").path
        var simEnv = home.environment
        simEnv["ORBSIM_HOME"] = simHome
        #expect(try await CLITests.exec(BuildProducts.orbctlSim, ["admin", "hang", "list", "--times", "5"], env: simEnv).status == 0)
        let sweep = try await BackgroundProcess.start(
            CLITests.repl, ["--orbctl", "sim", "orphans", "sweep"], environment: home.environment,
            outputPath: home.dir.appendingPathComponent("sweep.log").path)
        let mark = "ORBSIM_HOME=\(simHome)"
        var children: [Int32] = []
        for _ in 0..<200 where children.isEmpty {
            try await Task.sleep(nanoseconds: 25_000_000)
            children = Platform.processes(withEnvironmentEntry: mark).filter { !Platform.isZombie($0) }
        }
        #expect(!children.isEmpty, "the sweep never called orbctl list")
        sweep.signal(sig)
        #expect(try await sweep.wait() == 128 + sig)
        var left = children
        for _ in 0..<100 where !left.isEmpty {
            try await Task.sleep(nanoseconds: 20_000_000)
            left = Platform.processes(withEnvironmentEntry: mark).filter { !Platform.isZombie($0) }
        }
        #expect(left.isEmpty, "orbctl outlived repl: \(left)")
        for pid in left { kill(pid, SIGKILL) }
    }
}

/// Standard output closed or on a full disk (cron's `>> sweep.log`): a clear failure or a
/// harmless run, never a crash, and never the state database opened as standard output.
@Suite struct OutputStreamTests {
    static let devFull = FileManager.default.fileExists(atPath: "/dev/full")

    func shell(_ home: CLITests.Home, _ script: String) async throws -> ProcessResult {
        try await SystemProcessRunner.run("/bin/sh", ["-c", script], input: nil, timeout: 120, environment: home.environment, limit: 1 << 20)
    }

    @Test(
        .enabled(if: OutputStreamTests.devFull, "needs /dev/full (Linux)"),
        arguments: [["run", "list"], ["doctor"], ["orphans", "list"], ["--version"], ["--help"], ["--generate-completion-script", "bash"]])
    func aFullDiskIsExitOneWithOneLine(_ args: [String]) async throws {
        let home = CLITests.Home()
        let words = (["'\(CLITests.repl)'", "--orbctl", "sim"] + args).joined(separator: " ")
        let r = try await shell(home, "\(words) > /dev/full")
        #expect(r.status == 1, "\(r.stderrText)")
        #expect(r.stderrText.hasPrefix("repl: cannot write to standard output"), "\(r.stderrText)")
        #expect(r.stderrText.split(separator: "\n").count == 1, "\(r.stderrText)")
    }

    /// Output lost mid-apply does not stop the work: the run finishes, is recorded, and repl
    /// then says the output was lost.
    @Test(.machineCommands, .enabled(if: OutputStreamTests.devFull, "needs /dev/full (Linux)"))
    func anApplyWhoseOutputIsLostStillDoesItsWork() async throws {
        let home = CLITests.Home()
        let hello = CLITests.root.appendingPathComponent("examples/hello.yaml").path
        let r = try await shell(home, "'\(CLITests.repl)' --orbctl sim apply -f '\(hello)' --wait > /dev/full")
        #expect(r.status == 1, "\(r.stderrText)")
        #expect(r.stderrText.hasSuffix("hello: Succeeded\nrepl: cannot write to standard output (No space left on device)\n"), "\(r.stderrText)")
        let list = try await CLITests.run(home, ["--orbctl", "sim", "run", "list"])
        #expect(list.stdout.contains("Succeeded"), "\(list.stdout)")
    }

    @Test func closedStandardStreamsAreHarmless() async throws {
        let home = CLITests.Home()
        // (doctor exits 3 where the emulator cannot run machine commands, and says why.)
        let allWell: Int32 = machineCommandsAvailable ? 0 : 3
        let r = try await shell(home, "'\(CLITests.repl)' --orbctl sim doctor >&- 2>&-")
        #expect(r.status == allWell)
        let doctor = try await CLITests.run(home, ["--orbctl", "sim", "doctor"])
        #expect(doctor.status == allWell && doctor.stdout.contains("control id"), "\(doctor.stdout)\(doctor.stderr)")
    }
}
