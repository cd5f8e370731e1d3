import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import OrbStack

/// The built `repl` binary run as a new user would, against the built-in emulator.
@Suite(.serialized) struct CLITests {
    static let repl = BuildProducts.repl
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    final class Home: @unchecked Sendable {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("repl-cli-\(UUID().uuidString)")
        /// Made in a test marked `.machineCommands`: only then may its emulator run machine commands.
        let machineCommands = MachineCommands.inScope || Conformance.isReal
        init() { try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) }
        deinit {
            EmulatorHome.reset(simHome: dir.appendingPathComponent("state/sim"), environment: environment)
            try? FileManager.default.removeItem(at: dir)
        }
        var environment: [String: String] {
            var env = ProcessInfo.processInfo.environment
            env["REPL_HOME"] = dir.appendingPathComponent("state").path
            env["HOME"] = dir.path
            env["ORBSIM_LATENCY"] = "fast"
            env["ORBSIM_HOME"] = nil
            env["REPL_ORBCTL"] = nil
            if !machineCommands { env["ORBSIM_NAMESPACES"] = "0" }
            return env
        }
    }

    static func exec(_ path: String, _ args: [String], env: [String: String], stdin: String? = nil, cwd: String? = nil) async throws -> Output {
        // Relative example paths are given from the repository root.
        let args = args.map { $0.hasPrefix("examples/") ? root.appendingPathComponent($0).path : $0 }
        let r = try await SystemProcessRunner.run(path, args, input: stdin.map { Data($0.utf8) }, timeout: 120, environment: env, limit: 1 << 24)
        return Output(status: r.status, stdout: r.stdoutText, stderr: r.stderrText)
    }

    @discardableResult
    static func run(_ home: Home, _ args: [String], stdin: String? = nil) async throws -> Output {
        try await exec(repl, args, env: home.environment, stdin: stdin, cwd: root.path)
    }

    @Test(.machineCommands)
    func helloWaitPrintsHelloAndExitsZero() async throws {
        let home = Home()
        let out = try await Self.run(home, ["--orbctl", "sim", "apply", "-f", "examples/hello.yaml", "--wait"])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout == "hello\n", "\(out.stdout)")  // as the README's first line promises
        // plan on the unchanged manifest has nothing to do
        let plan = try await Self.run(home, ["--orbctl", "sim", "plan", "-f", "examples/hello.yaml"])
        #expect(plan.status == 0 && plan.stdout.contains("Nothing to do"))
        // logs work after the machine is gone
        let logs = try await Self.run(home, ["logs", "hello"])
        #expect(logs.stdout == "hello\n")
        // A collected log that cannot be read is a failure, not "no output yet" (found by attacking).
        let logsDirectory = home.dir.appendingPathComponent("state/logs")
        let collected = try #require(try FileManager.default.contentsOfDirectory(atPath: logsDirectory.path).first { $0.hasPrefix("hello-") })
        try FileManager.default.removeItem(at: logsDirectory.appendingPathComponent(collected))
        try FileManager.default.createDirectory(at: logsDirectory.appendingPathComponent(collected), withIntermediateDirectories: false)
        let unreadable = try await Self.run(home, ["logs", "hello"])
        #expect(unreadable.status == 1 && unreadable.stderr.contains("is not a regular file"), "\(unreadable.status) \(unreadable.stderr)")
        // A deleted run keeps its exit code in the list (found by attacking: `-`).
        #expect(try await Self.run(home, ["--orbctl", "sim", "delete", "run", "hello"]).status == 0)
        let all = try await Self.run(home, ["run", "list", "--all"])
        let row = all.stdout.split(separator: "\n").first { $0.contains("hello") }.map(String.init) ?? ""
        #expect(row.split(separator: " ").contains("0") && row.contains("deleted"), "\(all.stdout)")
    }

    @Test(.machineCommands)
    func theGuidesCommandsWorkAsShown() async throws {
        let home = Home()
        let run = try await Self.run(
            home,
            [
                "--orbctl", "sim", "run", "--provider", "orbstack", "--spec", "ubuntu:noble:arm64",
                "--command", "echo hello", "--max-duration", "60000",
            ])
        #expect(run.status == 0, "\(run.stderr)")
        let id = try #require(run.stdout.split(separator: "\n").last?.split(separator: " ").dropFirst().first)
        let list = try await Self.run(home, ["run", "list"])
        #expect(list.status == 0)
        #expect(list.stdout.contains("ubuntu:noble:arm64"))
        #expect(list.stdout.split(separator: "\n").dropFirst().contains { $0.hasPrefix(id + " ") })
    }

    /// A clone inherits its snapshot's disk, logs and status included: `--wait` on it shows
    /// its own output only, and its status is its own (#15).
    @Test(.machineCommands) func waitOnACloneShowsOnlyItsOwnOutput() async throws {
        let home = Home()
        let base = home.dir.appendingPathComponent("base.yaml"), fast = home.dir.appendingPathComponent("fast.yaml")
        try "kind: Run\nname: base\nbootstrap: echo base-bootstrap\ncommand: echo base-output; sleep 600\n"
            .write(to: base, atomically: true, encoding: .utf8)
        try "kind: Run\nname: fast\nfrom: snap\ncommand: echo own-output; exit 3\n".write(to: fast, atomically: true, encoding: .utf8)
        #expect(try await Self.run(home, ["--orbctl", "sim", "apply", "-f", base.path]).status == 0)
        let ready = try await Self.run(home, ["--orbctl", "sim", "snapshot", "create", "base", "snap"])
        #expect(ready.status == 0, "\(ready.stderr)")
        let out = try await Self.run(home, ["--orbctl", "sim", "apply", "-f", fast.path, "--wait"])
        #expect(out.status == 3, "\(out.stdout)\(out.stderr)")
        #expect(out.stdout.contains("own-output") && !out.stdout.contains("base-output"), "\(out.stdout)")
        let boot = try await Self.run(home, ["logs", "fast", "--bootstrap"])
        #expect(!boot.stdout.contains("base-bootstrap"))
    }

    /// `--wait` streams output in pieces of 1 MiB (#20): lines that straddle two pieces arrive
    /// whole, byte for byte with one instance and each with its prefix with two, and an
    /// unterminated last line is kept.
    @Test(.machineCommands) func waitStreamsALargeOutputWholeInPieces() async throws {
        let home = Home()
        let pad = String(repeating: "a", count: 60)
        let command = "seq -f 'line-%06g-\(pad)' 1 50000; printf tail"
        let lines = (1...50000).map { String(format: "line-%06d-", $0) + pad }
        let one = try await Self.run(home, ["--orbctl", "sim", "run", "--name", "big", "--command", command, "--wait"])
        #expect(one.status == 0, "\(one.stderr)")
        #expect(one.stdout.utf8.count > 3 << 20)
        #expect(one.stdout == lines.joined(separator: "\n") + "\ntail", "\(one.stdout.utf8.count) bytes")
        let two = try await Self.run(home, ["--orbctl", "sim", "run", "--name", "twin", "--replicas", "2", "--command", command, "--wait"])
        #expect(two.status == 0, "\(two.stderr)")
        let got = two.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        for n in [1, 2] {
            let mine = got.filter { $0.hasPrefix("[twin/\(n)] ") }.map { String($0.dropFirst("[twin/\(n)] ".count)) }
            #expect(mine == lines + ["tail"], "instance \(n): \(mine.count) lines")
        }
    }

    @Test(.machineCommands)
    func waitExitsWithTheCommandsExitCode() async throws {
        let home = Home()
        let file = home.dir.appendingPathComponent("seven.yaml")
        try "kind: Run\nname: seven\ncommand: exit 7\n".write(to: file, atomically: true, encoding: .utf8)
        await #expect(try Self.run(home, ["--orbctl", "sim", "apply", "-f", file.path, "--wait"]).status == 7)
        let timeout = home.dir.appendingPathComponent("slow.yaml")
        try "kind: Run\nname: slow\ncommand: sleep 30\nmaxDuration: 1s\n".write(to: timeout, atomically: true, encoding: .utf8)
        await #expect(try Self.run(home, ["--orbctl", "sim", "apply", "-f", timeout.path, "--wait"]).status == 124)
    }

    @Test(.machineCommands)
    func jsonOfEveryCommandParses() async throws {
        let home = Home()
        try await Self.run(home, ["--orbctl", "sim", "apply", "-f", "examples/hello.yaml", "--wait"])
        let commands: [[String]] = [
            ["apply", "-f", "examples/hello.yaml"], ["plan", "-f", "examples/hello.yaml"], ["run", "list"], ["run", "status", "hello"],
            ["logs", "hello"], ["snapshot", "list"], ["orphans"], ["orphans", "sweep"], ["doctor"],
            ["run", "--command", "true", "--name", "j1"], ["run", "cancel", "j1"], ["delete", "run", "j1"],
        ]
        for args in commands {
            let out = try await Self.run(home, ["--orbctl", "sim", "--json"] + args)
            #expect(out.status == 0, "\(args): \(out.stderr)")
            #expect((try? JSONSerialization.jsonObject(with: Data(out.stdout.utf8))) != nil, "\(args) printed \(out.stdout)")
        }
    }

    /// Bad input gives one clear line and exit 2, never a stack trace.
    @Test(
        arguments: [
            (["apply", "-f", "/nonexistent/run.yaml"], "/nonexistent/run.yaml: no such file or directory"),
            (["apply", "-f", "-"], "<stdin>:1:1: a manifest must be a mapping"),
            (["apply", "-f", "examples/hello.yaml", "--frobnicate"], "Unknown option '--frobnicate'"),
            (["run", "status", "nosuchrun"], "no run matches \"nosuchrun\""),
            (["run", "--command", "x", "--max-duration", "5 minutes"], "--max-duration: \"5 minutes\" is not a duration"),
            (["run", "--command", "x", "--name", "../etc"], "--name: \"../etc\" may only contain"),
            (["run", "--command", "x", "--spec", "redhat"], "--spec: distro \"redhat\" is not one OrbStack offers"),
            (["run", "--command", "x", "--cpus", "0"], "--cpus: 0 is out of range (1–256)"),
            (["run", "--command", "x", "--memory", "4"], "--memory: \"4\" is not a size (it has no unit); use 4G, 512M or 1T"),
            (["run", "--command", "x", "--user", "Bad"], "--user: \"Bad\" is not a Linux user name"),
            (["run", "--command", "x", "--user-data", "/nonexistent/ud.yaml"], "--user-data: cannot read /nonexistent/ud.yaml"),
            (["run", "--command", "x", "--from", "nosnap"], "--from: no Snapshot named \"nosnap\""),
            (["run", "--command", "x", "--from", "nosnap", "--spec", "ubuntu"], "--from: cannot be combined with --spec"),
            (["run", "--command", "  "], "--command: is empty"),
            (["run", "--command", "x", "--replicas", "1001"], "--replicas: 1001 is out of range (0–1000)"),
            (["run", "--command", "x", "--max-duration", "0"], "--max-duration: must be longer than 0"),
            (["run", "--command", "x", "--provider", "gcp"], "--provider: unknown provider \"gcp\""),
            (["run", "--command", "x", "--provider", "aws"], "--provider: aws runs are written as manifests (provider: aws with its spec: mapping)"),
        ] as [([String], String)])
    func badInputIsOneClearLine(_ args: [String], _ message: String) async throws {
        let home = Home()
        let out = try await Self.run(home, ["--orbctl", "sim"] + args, stdin: "[not, a, mapping]\n")
        #expect(out.status == 2, "\(args): \(out.stderr)")
        #expect(out.stderr.contains(message), "\(args): \(out.stderr)")
        #expect(!out.stderr.contains("Fatal error") && !out.stderr.contains("Stack dump"))
    }

    /// `repl run` checks its flags with the manifest's own field checks (#21): every bad flag is
    /// named at once, and nothing is recorded.
    @Test func everyBadFlagOfRunIsNamedAtOnceAndNothingIsRecorded() async throws {
        let home = Home()
        let out = try await Self.run(home, ["--orbctl", "sim", "run", "--name", "Job", "--cpus", "0", "--memory", "1K", "--command", "x"])
        #expect(out.status == 2)
        #expect(out.stderr.contains("--name: \"Job\" has uppercase letters; use \"job\""), "\(out.stderr)")
        #expect(out.stderr.contains("--cpus: 0 is out of range (1–256)"), "\(out.stderr)")
        #expect(out.stderr.contains("--memory: 1K is too small; at least 512M"), "\(out.stderr)")
        let list = try await Self.run(home, ["run", "list", "--json"])
        #expect(list.status == 0 && !list.stdout.contains("\"name\""), "a run was recorded: \(list.stdout)")
    }

    @Test(.machineCommands)
    func anAmbiguousRunPrefixIsBadInput() async throws {
        let home = Home()
        try await Self.run(home, ["--orbctl", "sim", "run", "--name", "job-a", "--command", "true"])
        try await Self.run(home, ["--orbctl", "sim", "run", "--name", "job-b", "--command", "true"])
        let out = try await Self.run(home, ["run", "status", "job"])
        #expect(out.status == 2)
        #expect(out.stderr.contains("matches 2 runs"))
    }

    /// An empty `--orbctl` names nothing: one line, not a directory of PATH taken for a program (#18).
    /// Destructive commands take exact names (or `#ID`), never a prefix or a guess (#16).
    @Test(.machineCommands) func destructiveCommandsTakeExactNamesOnly() async throws {
        let home = Home()
        let applied = home.dir.appendingPathComponent("applied.yaml"), other = home.dir.appendingPathComponent("other.yaml")
        // replicas: 0, so no machine is needed: only the store is looked at.
        try ["hello-world", "web-2", "1", "keep"].map { "kind: Run\nname: \"\($0)\"\nreplicas: 0\n" }.joined(separator: "---\n")
            .write(to: applied, atomically: true, encoding: .utf8)
        try "kind: Run\nname: hello\nreplicas: 0\n---\nkind: Run\nname: keep\nreplicas: 0\n".write(to: other, atomically: true, encoding: .utf8)
        #expect(try await Self.run(home, ["--orbctl", "sim", "apply", "-f", applied.path]).status == 0)
        func live() async throws -> Set<String> {
            let out = try await Self.run(home, ["--json", "run", "list"])
            let runs = (try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any])?["runs"] as? [[String: Any]] ?? []
            return Set(runs.filter { ($0["phase"] as? String) != "Cancelled" }.compactMap { $0["name"] as? String })
        }
        // A file naming a run that was never applied deletes nothing at all, not a look-alike.
        let file = try await Self.run(home, ["--orbctl", "sim", "delete", "-f", other.path])
        #expect(file.status == 2 && file.stderr.contains("hello"), "\(file.stdout)\(file.stderr)")
        #expect(try await live() == ["hello-world", "web-2", "1", "keep"])
        for args in [["delete", "run", "web"], ["run", "cancel", "web"], ["delete", "run", "hello"]] {
            let out = try await Self.run(home, ["--orbctl", "sim"] + args)
            #expect(out.status == 2, "\(args): \(out.stdout)\(out.stderr)")
        }
        #expect(try await live() == ["hello-world", "web-2", "1", "keep"])
        // A run named `1` is that run, never run id 1; `#ID` names an id.
        #expect(try await Self.run(home, ["--orbctl", "sim", "delete", "run", "1"]).status == 0)
        #expect(try await live() == ["hello-world", "web-2", "keep"])
        #expect(try await Self.run(home, ["--orbctl", "sim", "delete", "run", "#1"]).status == 0)  // hello-world's id
        #expect(try await live() == ["web-2", "keep"])
        // Read commands may take a prefix, and say which run they picked.
        let logs = try await Self.run(home, ["logs", "web"])
        #expect(logs.stderr.contains("web-2"), "\(logs.stderr)")
    }

}
