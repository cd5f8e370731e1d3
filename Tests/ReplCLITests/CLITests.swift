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

    @Test(.enabled(if: machineCommandsAvailable, "runs machine commands, which the emulator does only on Linux as root"))
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
    }

    @Test(.enabled(if: machineCommandsAvailable, "runs machine commands, which the emulator does only on Linux as root"))
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

    @Test(.enabled(if: machineCommandsAvailable, "runs machine commands, which the emulator does only on Linux as root"))
    func waitExitsWithTheCommandsExitCode() async throws {
        let home = Home()
        let file = home.dir.appendingPathComponent("seven.yaml")
        try "kind: Run\nname: seven\ncommand: exit 7\n".write(to: file, atomically: true, encoding: .utf8)
        await #expect(try Self.run(home, ["--orbctl", "sim", "apply", "-f", file.path, "--wait"]).status == 7)
        let timeout = home.dir.appendingPathComponent("slow.yaml")
        try "kind: Run\nname: slow\ncommand: sleep 30\nmaxDuration: 1s\n".write(to: timeout, atomically: true, encoding: .utf8)
        await #expect(try Self.run(home, ["--orbctl", "sim", "apply", "-f", timeout.path, "--wait"]).status == 124)
    }

    @Test(.enabled(if: machineCommandsAvailable, "runs machine commands, which the emulator does only on Linux as root"))
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
            (["run", "--command", "x", "--provider", "aws"], "--provider: unknown provider \"aws\""),
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

    @Test(.enabled(if: machineCommandsAvailable, "runs machine commands, which the emulator does only on Linux as root"))
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

    @Test func anEmptyOrbctlIsBadInput() async throws {
        let home = Home()
        let out = try await Self.run(home, ["--orbctl", "", "apply", "-f", "examples/hello.yaml", "--dry-run"])
        #expect(out.status == 2, "\(out.stderr)")
        #expect(out.stderr.contains("--orbctl") && out.stderr.contains("empty"), "\(out.stderr)")
    }

    /// A whitelist entry that has already expired would protect nothing: refused, nothing recorded (#16).
    @Test func aWhitelistExpiryInThePastIsRefused() async throws {
        let home = Home()
        let out = try await Self.run(home, ["orphans", "whitelist", "repl-ab12cd-3-7", "--reason", "debugging", "--expires", "2020-01-01"])
        #expect(out.status == 2, "\(out.stderr)")
        #expect(out.stderr.contains("--expires") && out.stderr.contains("past"), "\(out.stderr)")
        let kept = try await Self.run(home, ["orphans", "whitelist", "repl-ab12cd-3-8", "--reason", "kept", "--expires", "2999-01-01"])
        #expect(kept.status == 0, "\(kept.stderr)")
        let entries = try Store(directory: home.dir.appendingPathComponent("state")).whitelist(now: .distantPast).map(\.name)
        #expect(entries == ["repl-ab12cd-3-8"])
    }

    @Test func anUnwritableStateDirectoryIsBadInput() async throws {
        let home = Home()
        // A directory cannot be made under a regular file, on any system and as any user.
        let file = home.dir.appendingPathComponent("a-file")
        try Data().write(to: file)
        // (A read command there has nothing to read and creates nothing; one that writes says why it cannot.)
        let out = try await Self.exec(
            Self.repl,
            [
                "--orbctl", "sim", "--state-dir", file.appendingPathComponent("state").path,
                "orphans", "whitelist", "repl-ab12cd-1-1", "--reason", "kept",
            ], env: home.environment)
        #expect(out.status == 2)
        #expect(out.stderr.contains("state directory"), "\(out.stderr)")
    }

    /// Store errors by kind (#16): on a full disk a write says so in one line, exit 1, never
    /// points at `repl recover`, and what was recorded before is still read. Walked on a small
    /// tmpfs, where one can be mounted (Linux as root); skipped elsewhere.
    @Test func aFullDiskSaysSoAndKeepsTheStore() async throws {
        let home = Home()
        let disk = home.dir.appendingPathComponent("disk")
        try FileManager.default.createDirectory(at: disk, withIntermediateDirectories: true)
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/bin/mount"),
            (try? await SystemProcessRunner.run(
                "/bin/mount", ["-t", "tmpfs", "-o", "size=512k", "tmpfs", disk.path],
                input: nil, timeout: 10, environment: [:], limit: 1 << 16))?.status == 0
        else {
            return  // no small filesystem to fill here
        }
        func walk() async throws {
            var env = home.environment
            env["REPL_HOME"] = disk.appendingPathComponent("state").path
            let first = try await Self.exec(Self.repl, ["orphans", "whitelist", "repl-ab12cd-3-7", "--reason", "kept"], env: env)
            #expect(first.status == 0, "\(first.stderr)")
            // Fill what is left.
            let fillerPath = disk.appendingPathComponent("filler").path
            FileManager.default.createFile(atPath: fillerPath, contents: nil)
            let filler = try #require(FileHandle(forWritingAtPath: fillerPath))
            while (try? filler.write(contentsOf: Data(count: 4096))) != nil {}
            try? filler.close()
            let out = try await Self.exec(
                Self.repl, ["orphans", "whitelist", "repl-ab12cd-3-8", "--reason", "more", "--expires", "2999-01-01"], env: env)
            #expect(out.status == 1, "\(out.stdout)\(out.stderr)")
            #expect(out.stderr.contains("full") && !out.stderr.contains("recover") && out.stderr.split(separator: "\n").count == 1, "\(out.stderr)")
            let list = try await Self.exec(Self.repl, ["run", "list"], env: env)
            #expect(list.status == 0, "\(list.stderr)")
            #expect(try Store(directory: disk.appendingPathComponent("state")).whitelist().map(\.name) == ["repl-ab12cd-3-7"])
        }
        let result: Result<Void, Error>
        do { try await walk(); result = .success(()) } catch { result = .failure(error) }
        _ = try? await SystemProcessRunner.run("/bin/umount", [disk.path], input: nil, timeout: 10, environment: [:], limit: 1 << 16)
        try result.get()
    }

    /// `--wait` on a run with `hold:` ends when the command ends, with its output and exit code;
    /// the machine stays for its hold (it waited for the hold to pass, its logs being collected
    /// only when the machine goes).
    /// `apply --wait --json`: each instance's exit code, phase and where its whole log is (#18).
    @Test(.machineCommands) func waitJSONCarriesExitCodesAndLogPaths() async throws {
        let home = Home()
        let file = home.dir.appendingPathComponent("j.yaml")
        try "kind: Run\nname: j\nreplicas: 2\ncommand: echo json-output; exit 4\n".write(to: file, atomically: true, encoding: .utf8)
        let out = try await Self.run(home, ["--orbctl", "sim", "apply", "-f", file.path, "--wait", "--json"])
        #expect(out.status == 4, "\(out.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any], "\(out.stdout)")
        #expect(json["exitCode"] as? Int == 4 && json["schemaVersion"] as? Int == 1)
        let runs = try #require(json["runs"] as? [[String: Any]])
        #expect(runs.compactMap { $0["instance"] as? Int }.sorted() == [1, 2])
        for r in runs {
            #expect(r["exitCode"] as? Int == 4 && r["phase"] as? String == "Failed")
            let log = try #require(r["log"] as? String)
            #expect(try String(contentsOfFile: log, encoding: .utf8) == "json-output\n")
        }
    }

    @Test(.machineCommands) func waitWithHoldEndsWhenTheCommandEnds() async throws {
        let home = Home()
        let file = home.dir.appendingPathComponent("held.yaml")
        try "kind: Run\nname: held\ncommand: echo held-output; exit 3\nhold: 1h\n".write(to: file, atomically: true, encoding: .utf8)
        let started = Date()
        let out = try await Self.run(home, ["--orbctl", "sim", "apply", "-f", file.path, "--wait", "--timeout", "60s"])
        #expect(out.status == 3, "\(out.stderr)")
        #expect(out.stdout.contains("held-output"))
        #expect(Date().timeIntervalSince(started) < 50)
        let list = try await Self.run(home, ["--orbctl", "sim", "orphans", "sweep", "--dry-run"])
        #expect(!list.stdout.contains("held"), "\(list.stdout)")
        let status = try await Self.run(home, ["run", "status", "held"])
        #expect(status.stdout.contains("Failed") && status.stdout.contains("3"), "\(status.stdout)")
    }

    /// Snapshots of short runs (#16): `snapshot create` of a run whose machine is gone says at
    /// once, exit 1, that it cannot be taken and why, instead of waiting and then calling it ready.
    @Test(.machineCommands) func aSnapshotThatCannotBeTakenIsReportedAtOnce() async throws {
        let home = Home()
        #expect(try await Self.run(home, ["--orbctl", "sim", "apply", "-f", "examples/hello.yaml", "--wait"]).status == 0)
        let started = Date()
        let out = try await Self.run(home, ["--orbctl", "sim", "snapshot", "create", "hello", "snap1", "--timeout", "60s"])
        #expect(out.status == 1, "\(out.stdout)\(out.stderr)")
        #expect(out.stderr.contains("cannot be taken") && out.stderr.contains("hello finished"), "\(out.stderr)")
        #expect(!out.stdout.contains("ready"))
        #expect(Date().timeIntervalSince(started) < 30)
        // Nothing half-done is left: the snapshot it recorded is gone again.
        let list = try await Self.run(home, ["snapshot", "list", "--json"])
        #expect(!list.stdout.contains("snap1"), "\(list.stdout)")
        // A run given by prefix is refused (it records something), and `--json` is one document.
        #expect(try await Self.run(home, ["snapshot", "create", "hel", "snap2"]).status == 2)
    }

    /// Store errors by kind (#16): a store that cannot be written (a read-only mount, another
    /// user's) still answers every read command; a write says "read-only" in one line, exit 1,
    /// never points at `repl recover`, and leaves the file as it was.
    @Test(.machineCommands) func aReadOnlyStoreStillAnswersReadCommands() async throws {
        let home = Home()
        let applied = try await Self.run(home, ["--orbctl", "sim", "apply", "-f", "examples/hello.yaml", "--wait"])
        #expect(applied.status == 0, "\(applied.stderr)")
        let state = home.dir.appendingPathComponent("state")
        let db = state.appendingPathComponent("state.db")
        let fm = FileManager.default
        // As root, permissions do not bind: the commands then run as nobody, from a copy of the
        // binary that nobody can reach.
        var prefix: [String] = []
        var binary = Self.repl
        if getuid() == 0 {
            binary = home.dir.appendingPathComponent("repl").path
            try fm.copyItem(atPath: Self.repl, toPath: binary)
            prefix = ["--reuid=65534", "--regid=65534", "--clear-groups", binary]
            binary = "/usr/bin/setpriv"
        }
        for path in try fm.subpathsOfDirectory(atPath: state.path).map({ state.appendingPathComponent($0).path }) + [state.path] {
            // Not through a symbolic link: the emulator's shims point at the built binaries.
            guard try fm.attributesOfItem(atPath: path)[.type] as? FileAttributeType != .typeSymbolicLink else { continue }
            var isDirectory: ObjCBool = false
            _ = fm.fileExists(atPath: path, isDirectory: &isDirectory)
            try fm.setAttributes([.posixPermissions: isDirectory.boolValue ? 0o555 : 0o444], ofItemAtPath: path)
        }
        defer { try? fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: state.path) }
        let before = try Data(contentsOf: db)
        func repl(_ args: [String]) async throws -> Output { try await Self.exec(binary, prefix + args, env: home.environment) }

        let list = try await repl(["run", "list"])
        #expect(list.status == 0 && list.stdout.contains("hello") && list.stdout.contains("Succeeded"), "\(list.stderr)")
        let logs = try await repl(["logs", "hello"])
        #expect(logs.status == 0 && logs.stdout == "hello\n", "\(logs.stderr)")
        let status = try await repl(["run", "status", "hello", "--json"])
        #expect(status.status == 0, "\(status.stderr)")
        for write in [["delete", "run", "hello"], ["orphans", "whitelist", "repl-abcdef-1-1", "--reason", "kept"]] {
            let out = try await repl(write)
            #expect(out.status == 1, "\(write): \(out.stdout) \(out.stderr)")
            #expect(out.stderr.contains("read-only") && !out.stderr.contains("recover") && !out.stderr.contains("Error:"), "\(out.stderr)")
            #expect(out.stderr.split(separator: "\n").count == 1, "\(out.stderr)")
        }
        // doctor names the store that cannot be written as a problem (it said "all well": found by
        // attacking); here it exits 3 for the missing orbctl, which comes first.
        let doctor = try await repl(["doctor"])
        #expect(
            doctor.status != 0 && doctor.stdout.contains("needs attention: ") && doctor.stdout.contains("state store: cannot be written"),
            "\(doctor.status) \(doctor.stdout) \(doctor.stderr)")
        #expect(try Data(contentsOf: db) == before)
    }

    /// Where the emulator cannot run machine commands (a Mac, Linux without root), `--orbctl sim`
    /// or an orbctl that is the emulator under another name says so in one line before recording
    /// anything, instead of runs that never start.
    @Test(arguments: ["sim", "symlink"])
    func theEmulatorRefusesRunsItCannotStartBeforeRecordingThem(_ how: String) async throws {
        let home = Home()
        var env = home.environment
        env["ORBSIM_NAMESPACES"] = "0"
        var orbctl = "sim"
        if how == "symlink" {
            let bin = home.dir.appendingPathComponent("bin")
            try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
            orbctl = bin.appendingPathComponent("orbctl").path
            try FileManager.default.createSymbolicLink(atPath: orbctl, withDestinationPath: BuildProducts.orbctlSim)
            env["ORBSIM_HOME"] = home.dir.appendingPathComponent("sim").path
        }
        let out = try await Self.exec(Self.repl, ["--orbctl", orbctl, "apply", "-f", "examples/hello.yaml", "--wait"], env: env, cwd: Self.root.path)
        #expect(out.status == 3)
        #expect(
            out.stderr.hasPrefix("repl: orbctl-sim runs machine commands only in a private namespace")
                || out.stderr.hasPrefix("repl: orbctl-sim runs machine commands on Linux only"))
        #expect(out.stderr.hasSuffix("without --orbctl sim, repl uses OrbStack's own orbctl\n"))
        #expect(out.stderr.split(separator: "\n").count == 1)
        let list = try await Self.exec(Self.repl, ["--orbctl", orbctl, "--json", "run", "list"], env: env)
        #expect(list.status == 0 && !list.stdout.contains("hello"), "\(list.stdout)")
    }

    static let orbStackInstalled = OrbctlCommand.installDirectories(home: "/nonexistent").contains {
        FileManager.default.fileExists(atPath: $0 + "/orbctl")
    }

    @Test(.enabled(if: !CLITests.orbStackInstalled, "OrbStack's orbctl is installed on this Mac, and repl finds it off PATH"))
    func aMissingOrbctlExitsThreeWithTheInstallAdvice() async throws {
        let home = Home()
        var env = home.environment
        env["PATH"] = "/nonexistent"
        let out = try await Self.exec(Self.repl, ["apply", "-f", "examples/hello.yaml"], env: env, cwd: Self.root.path)
        #expect(out.status == 3)
        #expect(out.stderr.contains("https://orbstack.dev"))
    }
}

/// `repl watch`: plain lines, the lease, and a clean stop on Ctrl-C.
@Suite(.serialized) struct WatchTests {
    @Test(.enabled(if: machineCommandsAvailable, "runs machine commands, which the emulator does only on Linux as root"))
    func watchAppliesConvergesAndStopsCleanly() async throws {
        let home = CLITests.Home()
        let log = home.dir.appendingPathComponent("watch.log").path
        var env = home.environment
        env["PATH"] = ProcessInfo.processInfo.environment["PATH"]
        let script =
            "exec \"\(CLITests.repl)\" --orbctl sim watch -f \"\(CLITests.root.path)/examples/hello.yaml\" --interval 300ms > \"\(log)\" 2>&1"
        let watch = try await BackgroundProcess.start("/bin/sh", ["-c", script], environment: env, outputPath: "/dev/null")
        let pid = watch.pid
        // Wait until the run has finished and its machine is gone.
        let deadline = Date().addingTimeInterval(60)
        var text = ""
        while Date() < deadline {
            text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if text.contains("(finished)") { break }
            try await Task.sleep(nanoseconds: UInt64(100_000) * 1000)
        }
        #expect(text.contains("Succeeded (exit 0)"))
        // Human sentences, never Swift's debug form (#18).
        #expect(text.contains("applied hello: created") && !text.contains("created(\""), "\(text)")
        // While it runs, another process may not act.
        let sweep = try await CLITests.run(home, ["--orbctl", "sim", "orphans", "sweep"])
        #expect(sweep.stdout.contains("watch (pid \(pid)) holds the controller lease"))
        watch.signal(SIGINT)
        #expect(try await watch.wait() == 0)
        text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.hasSuffix("machines stay as they are\n"))
        // Plain mode: every line is one timestamped event.
        #expect(text.split(separator: "\n").allSatisfy { $0.wholeMatch(of: /[0-9]{2}:[0-9]{2}:[0-9]{2} .+/) != nil })
        let doctor = try await CLITests.run(home, ["--orbctl", "sim", "doctor"])
        #expect(doctor.stdout.contains("lease:         free"))
    }
}

/// `apply --wait` while another process holds the controller lease (#16): it records its
/// manifests, follows its runs to their end, and exits with their real code and output.
/// `watch --json`: one JSON object per event, per line (NDJSON) (#18).
@Suite(.serialized) struct WatchJSONTests {
    @Test(.machineCommands) func watchJSONIsOneObjectPerEventLine() async throws {
        let home = CLITests.Home()
        let log = home.dir.appendingPathComponent("watch.ndjson").path
        var env = home.environment
        env["PATH"] = ProcessInfo.processInfo.environment["PATH"]
        let script =
            "exec \"\(CLITests.repl)\" --orbctl sim watch --json -f \"\(CLITests.root.path)/examples/hello.yaml\" --interval 300ms > \"\(log)\" 2>&1"
        let watch = try await BackgroundProcess.start("/bin/sh", ["-c", script], environment: env, outputPath: "/dev/null")
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("(finished)") {
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        watch.signal(SIGINT)
        #expect(try await watch.wait() == 0)
        let lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
        let events = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(events.count == lines.count && events.count >= 5, "\(lines)")
        let kinds = events.compactMap { $0["kind"] as? String }
        #expect(kinds.first == "started" && kinds.last == "stopped" && kinds.contains("applied") && kinds.contains("action"), "\(kinds)")
        let phase = events.first { $0["kind"] as? String == "phase" && $0["phase"] as? String == "Succeeded" }
        #expect(phase?["run"] as? String == "hello" && phase?["instance"] as? Int == 1 && phase?["exitCode"] as? Int == 0, "\(events)")
    }
}

@Suite(.serialized) struct LeaseFollowTests {
    @Test(.machineCommands) func applyWaitUnderAWatchFollowsTheRunToItsRealExitCode() async throws {
        let home = CLITests.Home()
        let log = home.dir.appendingPathComponent("watch.log").path
        var env = home.environment
        env["PATH"] = ProcessInfo.processInfo.environment["PATH"]
        let script = "exec \"\(CLITests.repl)\" --orbctl sim watch --interval 300ms > \"\(log)\" 2>&1"
        let watch = try await BackgroundProcess.start("/bin/sh", ["-c", script], environment: env, outputPath: "/dev/null")
        defer { watch.signal(SIGINT) }
        for _ in 0..<100 where !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("watching") {
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        let job = home.dir.appendingPathComponent("job.yaml")
        try "kind: Run\nname: job\ncommand: sleep 1; echo job-output; exit 3\n".write(to: job, atomically: true, encoding: .utf8)
        let out = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", job.path, "--wait"])
        #expect(out.status == 3, "\(out.stdout)\(out.stderr)")
        #expect(out.stdout == "job-output\n", "\(out.stdout)")
        #expect(out.stderr.contains("holds the controller lease"), "\(out.stderr)")
        watch.signal(SIGINT)
        #expect(try await watch.wait() == 0)
    }
}

/// Another command cancels or deletes a run that `apply --wait` follows (found by an attacker,
/// #16: the apply waited out its timeout claiming "not started yet", or exited 0 after a delete).
@Suite(.serialized) struct FollowedRunCancelledTests {
    /// Cancelled while its command runs, or while its machine is still being created (a create
    /// in flight when the cancel came: found by attacking).
    @Test(
        .machineCommands, arguments: [["--orbctl", "sim", "run", "cancel", "long"], ["--orbctl", "sim", "delete", "run", "long"]], [false, true])
    func applyWaitSaysTheRunWasCancelledAndExitsOne(_ other: [String], _ whileCreating: Bool) async throws {
        let home = CLITests.Home()
        let out = home.dir.appendingPathComponent("apply.out").path
        let job = home.dir.appendingPathComponent("long.yaml")
        try "kind: Run\nname: long\ncommand: echo begun; sleep 120\n".write(to: job, atomically: true, encoding: .utf8)
        var env = home.environment
        env["PATH"] = ProcessInfo.processInfo.environment["PATH"]
        if whileCreating { env["ORBSIM_LATENCY"] = nil }  // a create takes 1.5 s, as on a Mac
        let script = "exec \"\(CLITests.repl)\" --orbctl sim apply -f \"\(job.path)\" --wait > \"\(out)\" 2>&1"
        let apply = try await BackgroundProcess.start("/bin/sh", ["-c", script], environment: env, outputPath: "/dev/null")
        defer { apply.signal(SIGKILL) }
        let mark = whileCreating ? "long: created" : "begun"
        for _ in 0..<300 where !((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains(mark) {
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        if whileCreating { try await Task.sleep(nanoseconds: 300_000_000) }  // the create is under way
        let started = Date()
        let cancel = try await CLITests.run(home, other)
        #expect(cancel.status == 0, "\(cancel.stderr)")
        let limit = Task {
            try await Task.sleep(nanoseconds: 60_000_000_000)
            apply.signal(SIGKILL)  // a regression waits for ever: it fails here instead
        }
        defer { limit.cancel() }
        let code = try await apply.wait()
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(code == 1, "\(text)")
        #expect(text.contains("was cancelled or deleted by another command"), "\(text)")
        #expect(Date().timeIntervalSince(started) < 50)  // (it removes the machines first)
        // …and its machines are gone when it says so (found by attacking: they ran on until the
        // next sweep), and the run shows Cancelled.
        env["ORBSIM_HOME"] = home.dir.appendingPathComponent("state/sim").path
        let listed = try await CLITests.exec(BuildProducts.orbctlSim, ["list", "-q"], env: env)
        #expect(listed.stdout.isEmpty, "\(listed.stdout)")
        let status = try await CLITests.run(home, ["run", "list", "--all"])
        #expect(status.stdout.contains("Cancelled"), "\(status.stdout)")
    }

    /// Cancelling a run that has finished keeps its result, and an unchanged re-apply then does
    /// nothing (it ran the command again, reported as "changed").
    @Test(.machineCommands) func cancellingAFinishedRunKeepsItsResult() async throws {
        let home = CLITests.Home()
        let job = home.dir.appendingPathComponent("cf.yaml")
        try "kind: Run\nname: cf\ncommand: echo once >> /var/tmp/count; echo done\n".write(to: job, atomically: true, encoding: .utf8)
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", job.path, "--wait"]).status == 0)
        let cancel = try await CLITests.run(home, ["--orbctl", "sim", "run", "cancel", "cf"])
        #expect(cancel.status == 0 && cancel.stdout.contains("already finished (Succeeded)"), "\(cancel.stdout)\(cancel.stderr)")
        #expect(try await CLITests.run(home, ["run", "status", "cf"]).stdout.contains("Succeeded"))
        let again = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", job.path])
        #expect(again.status == 0 && again.stdout.contains("cf: unchanged") && !again.stdout.contains("created"), "\(again.stdout)")
    }
}

/// Every command the README shows exists (#18): each `repl SUB [SUB]` it names answers
/// `--help` with exit 0, and every flag it shows for that command is one the command knows.
@Suite struct ReadmeCommandTests {
    @Test func everyCommandTheReadmeShowsParses() async throws {
        let readme = try String(contentsOf: CLITests.root.appendingPathComponent("README.md"), encoding: .utf8)
        let groups: Set<String> = ["run", "snapshot", "orphans", "delete"]
        var shown: [String: Set<String>] = [:]  // command path → flags shown with it
        for match in readme.matches(
            of: /(?:`|\$ |^)repl ((?:--orbctl sim |--state-dir \S+ )?)([a-z][a-z-]*)(?: ([a-z]+))?([^`\n]*)/.anchorsMatchLineEndings())
        {
            var path = String(match.output.2)
            if let sub = match.output.3, groups.contains(path), !["run", "snapshot"].contains(String(sub)) || path != "delete" {
                path += " " + sub
            }
            let flags = String(match.output.4).matches(of: /(?:^|\s|\[)(--[a-z][a-z-]*)/).map { String($0.output.1) }
            shown[path, default: []].formUnion(flags)
        }
        #expect(shown.count >= 20, "\(shown.keys.sorted())")
        let home = CLITests.Home()
        for (path, flags) in shown.sorted(by: { $0.key < $1.key }) {
            var words = path.split(separator: " ").map(String.init)
            // `delete run NAME` and `run NAME …` (the bare `run`) take positional words, not subcommands.
            if words.first == "delete" || (words.first == "run" && !["list", "status", "cancel"].contains(words.last ?? "")) { words = [words[0]] }
            let help = try await CLITests.run(home, words + ["--help"])
            #expect(help.status == 0, "repl \(words.joined(separator: " ")) --help: \(help.stderr)")
            // Its own help, not the root's (an unknown word falls back to it).
            #expect(help.stdout.contains("USAGE: repl \(words.joined(separator: " "))"), "the README shows `repl \(path)`, which is no command")
            for flag in flags
            where !["--help", "--orbctl", "--state-dir", "--json", "--quiet", "--version", "--generate-completion-script"].contains(flag) {
                #expect(
                    help.stdout.contains(flag),
                    "the README shows `repl \(path) … \(flag)`, which `repl \(words.joined(separator: " ")) --help` does not list")
            }
        }
    }
}

/// The README's quick start shows what a real run prints (#18): its transcript of
/// `apply -f examples/hello.yaml --wait` is what the binary prints here, but for the control
/// id and the host's architecture.
@Suite(.serialized) struct ReadmeTranscriptTests {
    static func normalized(_ text: some StringProtocol) -> String {
        String(text).replacing(/repl-[0-9a-z]{6}-/, with: "repl-CID-").replacing(/:(amd64|arm64)\)/, with: ":ARCH)")
    }

    @Test(.machineCommands) func theQuickStartPrintsWhatTheReadmeShows() async throws {
        let readme = try String(contentsOf: CLITests.root.appendingPathComponent("README.md"), encoding: .utf8)
        let prompt = "$ repl --orbctl sim apply -f examples/hello.yaml --wait\n"
        let start = try #require(readme.range(of: prompt), "the README shows no quick-start transcript")
        let shown = readme[start.upperBound...].components(separatedBy: "\n\n")[0] + "\n"
        // Standard output is the command's own output, standard error the progress; how the two
        // interleave on a terminal depends on timing, so each is checked in its own order.
        let r = try await CLITests.run(CLITests.Home(), ["--orbctl", "sim", "apply", "-f", "examples/hello.yaml", "--wait"])
        #expect(r.status == 0 && r.stdout == "hello\n", "\(r.stdout)")  // the first screen's promise, too
        var progress = Self.normalized(shown).split(separator: "\n").map(String.init)
        let output = try #require(progress.firstIndex(of: "hello"), "the README's transcript shows no output")
        progress.remove(at: output)
        #expect(
            Self.normalized(r.stderr).split(separator: "\n").map(String.init) == progress,
            "printed on standard error:\n\(r.stderr)\nthe README shows:\n\(shown)")
        #expect(readme.contains("swift run repl --orbctl sim apply -f examples/hello.yaml --wait   # try it: prints \"hello\", exits 0"))
    }
}

/// One error format and a version (#18).
@Suite(.serialized) struct OutputFormatTests {
    /// Escape sequences in orbctl's stderr (or a machine's text) are shown, never interpreted.
    @Test(.machineCommands) func controlCharactersFromOrbctlAreMadeVisible() async throws {
        let home = CLITests.Home()
        let sim = home.dir.appendingPathComponent("state/sim/bin/orbctl").path
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "doctor"]).status >= 0)  // sets the emulator up
        var env = home.environment
        env["ORBSIM_HOME"] = home.dir.appendingPathComponent("state/sim").path
        let fail = try await CLITests.exec(
            sim, ["admin", "fail", "create", "--times", "9", "--message", "boom \u{1B}]0;pwned\u{07}\u{1B}[2J end"], env: env)
        #expect(fail.status == 0, "\(fail.stderr)")
        let file = home.dir.appendingPathComponent("x.yaml")
        try "kind: Run\nname: x\ncommand: \"true\"\n".write(to: file, atomically: true, encoding: .utf8)
        let out = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", file.path, "--timeout", "3s"])
        #expect(out.status == 1)
        #expect(out.stderr.contains("boom \\x1B]0;pwned\\x07\\x1B[2J end"), "\(out.stderr)")
        #expect(!out.stderr.contains("\u{1B}") && !out.stdout.contains("\u{1B}") && !out.stderr.contains("\u{07}"))
    }

    @Test func versionAndErrorsHaveOneForm() async throws {
        let home = CLITests.Home()
        let version = try await CLITests.run(home, ["--version"])
        #expect(version.status == 0 && version.stdout.wholeMatch(of: /[0-9]+\.[0-9]+\.[0-9]+\n/) != nil, "\(version.stdout)")
        for args in [["--bogus"], ["run", "list", "--nope"], ["logs"]] {
            let out = try await CLITests.run(home, args)
            #expect(out.status == 2, "\(args)")
            #expect(out.stderr.hasPrefix("repl: ") && !out.stderr.contains("Error:"), "\(args): \(out.stderr)")
            #expect(out.stdout.isEmpty)
        }
    }
}

/// Instances are numbered 1..replicas within their run wherever a user sees them; `logs`
/// takes `RUN/N` and `--tail N` (#18).
@Suite(.serialized) struct InstanceNumberTests {
    @Test(.machineCommands) func instancesAreNumberedPerRunAndLogsPicksAndTails() async throws {
        let home = CLITests.Home()
        let file = home.dir.appendingPathComponent("fan.yaml")
        try "kind: Run\nname: fan\nreplicas: 3\ncommand: echo \"out-$(hostname)\"; seq 1 5\n".write(to: file, atomically: true, encoding: .utf8)
        let wait = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", file.path, "--wait"])
        #expect(wait.status == 0, "\(wait.stderr)")
        for n in 1...3 { #expect(wait.stdout.contains("[fan/\(n)] 5\n"), "\(wait.stdout)") }
        #expect(!wait.stdout.contains("[fan/4]"))

        let status = try await CLITests.run(home, ["run", "status", "fan", "--json"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
        let instances = try #require(json["instances"] as? [[String: Any]])
        #expect(instances.compactMap { $0["number"] as? Int }.sorted() == [1, 2, 3])
        let second = try #require(instances.first { $0["number"] as? Int == 2 }?["machine"] as? String)

        let one = try await CLITests.run(home, ["logs", "fan/2"])
        #expect(one.status == 0 && one.stdout == "out-\(second)\n1\n2\n3\n4\n5\n", "\(one.stdout)\(one.stderr)")
        let tail = try await CLITests.run(home, ["logs", "fan", "--tail", "2"])
        #expect(tail.stdout.components(separatedBy: "4\n5\n").count == 4, "\(tail.stdout)")
        #expect(tail.stdout.contains("==> fan/2 (\(second)) <==") && !tail.stdout.contains("out-"), "\(tail.stdout)")
        let lastOfTwo = try await CLITests.run(home, ["logs", "fan/2", "--tail", "1"])
        #expect(lastOfTwo.stdout == "5\n")
        let none = try await CLITests.run(home, ["logs", "fan/4"])
        #expect(none.status == 2 && none.stderr.contains("has no instance 4"), "\(none.stderr)")
        let table = try await CLITests.run(home, ["run", "status", "fan"])
        let rows: [String] = table.stdout.split(separator: "\n").dropFirst(3).map { line -> String in
            String(line.split(separator: " ").first ?? "")
        }
        #expect(rows == ["1", "2", "3"], "\(table.stdout)")
    }
}

/// Phases that are true without a controller running (#18): read commands show what the
/// machines' own status says, marked as not yet recorded, and when it was last confirmed.
@Suite(.serialized) struct SeenPhaseTests {
    @Test(.machineCommands) func aFinishedCommandIsNotShownRunningWhenNoControllerRuns() async throws {
        let home = CLITests.Home()
        let applied = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", "examples/hello.yaml"])
        #expect(applied.status == 0, "\(applied.stderr)")
        var json: [String: Any] = [:]
        for _ in 0..<100 {
            let out = try await CLITests.run(home, ["run", "status", "hello", "--json"])
            json = (try? JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]) ?? [:]
            if json["observedPhase"] as? String == "Succeeded" { break }
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        #expect(json["observedPhase"] as? String == "Succeeded", "\(json)")
        #expect(json["phase"] as? String != "Succeeded")  // nothing recorded it: no controller ran
        let list = try await CLITests.run(home, ["run", "list"])
        #expect(list.stdout.contains("Succeeded*") && list.stdout.contains("not yet recorded"), "\(list.stdout)")
        // A sweep records it: the mark goes.
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "orphans", "sweep"]).status == 0)
        let after = try await CLITests.run(home, ["run", "list"])
        #expect(after.stdout.contains("Succeeded") && !after.stdout.contains("*"), "\(after.stdout)")
    }
}

/// `logs -l SELECTOR`: the output of every matching run, each instance headed (#18).
@Suite(.serialized) struct LogsBySelectorTests {
    @Test(.machineCommands) func logsBySelectorPrintsEveryMatchingRun() async throws {
        let home = CLITests.Home()
        let file = home.dir.appendingPathComponent("l.yaml")
        try
            "kind: Run\nname: one\nlabels: {team: x}\ncommand: printf 'a1\\na2\\n'\n---\nkind: Run\nname: two\nlabels: {team: x}\ncommand: printf 'b1\\nb2\\n'\n---\nkind: Run\nname: three\ncommand: echo c\n"
            .write(to: file, atomically: true, encoding: .utf8)
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", file.path, "--wait"]).status == 0)
        let all = try await CLITests.run(home, ["logs", "-l", "team=x"])
        #expect(all.status == 0, "\(all.stderr)")
        #expect(
            all.stdout.contains("==> one/1 (") && all.stdout.contains("a1\na2\n") && all.stdout.contains("==> two/1 (")
                && all.stdout.contains("b1\nb2\n"), "\(all.stdout)")
        #expect(!all.stdout.contains("c\n==>") && !all.stdout.hasSuffix("c\n"), "\(all.stdout)")
        let tail = try await CLITests.run(home, ["logs", "-l", "team=x", "--tail", "1"])
        #expect(
            tail.stdout.contains("a2\n") && !tail.stdout.contains("a1") && tail.stdout.contains("b2\n") && !tail.stdout.contains("b1"),
            "\(tail.stdout)")
        #expect(try await CLITests.run(home, ["logs", "-l", "team=nobody"]).status == 2)
        #expect(try await CLITests.run(home, ["logs", "-l", "team=x", "-f"]).status == 2)
    }
}

/// `repl wait RUN --for PHASE --timeout D` (#18), with no controller running.
@Suite(.serialized) struct WaitCommandTests {
    @Test(.machineCommands) func waitReturnsAtThePhaseAndFailsWhenItCannotComeOrTimesOut() async throws {
        let home = CLITests.Home()
        let file = home.dir.appendingPathComponent("w.yaml")
        try "kind: Run\nname: quick\ncommand: sleep 1; echo x\n---\nkind: Run\nname: long\ncommand: sleep 100\n".write(
            to: file, atomically: true, encoding: .utf8)
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", file.path]).status == 0)
        let ok = try await CLITests.run(home, ["wait", "quick", "--for", "Succeeded", "--timeout", "30s"])
        #expect(ok.status == 0 && ok.stdout == "quick: Succeeded\n", "\(ok.stdout)\(ok.stderr)")
        let finished = try await CLITests.run(home, ["wait", "quick", "--for", "finished"])
        #expect(finished.status == 0)
        let never = try await CLITests.run(home, ["wait", "quick", "--for", "Failed", "--timeout", "30s"])
        #expect(never.status == 1 && never.stderr.contains("ended Succeeded, not Failed"), "\(never.stderr)")
        let running = try await CLITests.run(home, ["wait", "long", "--for", "Running", "--timeout", "30s"])
        #expect(running.status == 0, "\(running.stderr)")
        let late = try await CLITests.run(home, ["wait", "long", "--for", "Succeeded", "--timeout", "1s"])
        #expect(late.status == 1 && late.stderr.contains("is Running, not Succeeded, after"), "\(late.stderr)")
        let bad = try await CLITests.run(home, ["wait", "long", "--for", "Done"])
        #expect(bad.status == 2 && bad.stderr.contains("is not a phase"), "\(bad.stderr)")
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "delete", "run", "long"]).status == 0)
    }
}

/// `plan` shows what changes field by field, counts that add up, snapshots; replacing a
/// long-lived machine needs `--yes` (#18).
@Suite(.serialized) struct PlanDiffTests {
    @Test(.machineCommands) func planShowsFieldDiffsAndReplacingABoxNeedsYes() async throws {
        let home = CLITests.Home()
        let v1 = home.dir.appendingPathComponent("v1.yaml"), v2 = home.dir.appendingPathComponent("v2.yaml")
        try "kind: Run\nname: box\nbootstrap: echo one\n---\nkind: Run\nname: job\ncommand: sleep 30\n".write(
            to: v1, atomically: true, encoding: .utf8)
        try
            "kind: Run\nname: box\nbootstrap: echo two\n---\nkind: Run\nname: job\ncommand: sleep 40\nreplicas: 2\n---\nkind: Snapshot\nname: s\nfrom: job\n"
            .write(to: v2, atomically: true, encoding: .utf8)
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", v1.path]).status == 0)
        let plan = try await CLITests.run(home, ["--orbctl", "sim", "plan", "-f", v2.path])
        #expect(plan.status == 0, "\(plan.stderr)")
        let text = plan.stdout
        #expect(text.contains("bootstrap: \"echo one\" → \"echo two\""), "\(text)")
        #expect(text.contains("command: \"sleep 30\" → \"sleep 40\"") && text.contains("replicas: 1 → 2"), "\(text)")
        #expect(text.contains("+ snapshot s"), "\(text)")
        #expect(!text.contains("~ start"), "\(text)")  // a new machine's start is part of its create line
        let lines = text.split(separator: "\n")
        let counts = ["+", "~", "-"].map { sign in lines.filter { $0.hasPrefix(sign + " ") }.count }
        #expect(text.contains("Plan: \(counts[0]) to add, \(counts[1]) to change, \(counts[2]) to delete."), "\(text)")
        // Replacing the long-lived box is refused without --yes (no terminal here), nothing recorded.
        let refused = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", v2.path])
        #expect(refused.status == 2 && refused.stderr.contains("long-lived machines of box") && refused.stderr.contains("--yes"), "\(refused.stderr)")
        #expect(try await CLITests.run(home, ["run", "status", "box"]).stdout.contains("generation 1"))
        let yes = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", v2.path, "--yes"])
        #expect(yes.status == 0, "\(yes.stderr)")
        #expect(try await CLITests.run(home, ["run", "status", "box"]).stdout.contains("generation 2"))
        _ = try await CLITests.run(home, ["--orbctl", "sim", "delete", "-f", v2.path])
    }
}

/// Shell completion of run names (#18): what the generated scripts call.
@Suite struct CompletionTests {
    @Test func runNamesComplete() async throws {
        let home = CLITests.Home()
        let store = try Store(directory: home.dir.appendingPathComponent("state"))
        try store.apply(
            try ManifestParser().parse(
                "kind: Run\nname: alpha\nreplicas: 0\n---\nkind: Run\nname: alps\nreplicas: 0\n---\nkind: Run\nname: beta\nreplicas: 0\n",
                file: "c.yaml"))
        let logs = try await CLITests.run(home, ["---completion", "logs", "--", "positional@0", "2", "2", "repl", "logs", "al"])
        #expect(logs.status == 0 && logs.stdout.split(separator: "\n") == ["alpha", "alps"], "\(logs.stdout)\(logs.stderr)")
        let status = try await CLITests.run(home, ["---completion", "run", "status", "--", "positional@0", "3", "1", "repl", "run", "status", "b"])
        #expect(status.stdout == "beta\n", "\(status.stdout)")
        // --state-dir on the line is where the names come from.
        var env = home.environment
        env["REPL_HOME"] = home.dir.appendingPathComponent("elsewhere").path
        let other = try await CLITests.exec(
            CLITests.repl,
            [
                "---completion", "wait", "--", "positional@0", "4", "1",
                "repl", "--state-dir", home.dir.appendingPathComponent("state").path, "wait", "a",
            ], env: env)
        #expect(other.stdout.split(separator: "\n") == ["alpha", "alps"], "\(other.stdout)\(other.stderr)")
        #expect(!FileManager.default.fileExists(atPath: home.dir.appendingPathComponent("elsewhere").path))
    }
}

/// Setting up on a Mac (#18): the crontab line names this binary and state directory, and a
/// `run` without a usable orbctl records nothing.
@Suite(.serialized) struct InstallTests {
    @Test func printCrontabNamesThisBinaryAndStateAndItsLineRuns() async throws {
        let home = CLITests.Home()
        let out = try await CLITests.run(home, ["orphans", "sweep", "--print-crontab"])
        #expect(out.status == 0, "\(out.stderr)")
        let line = out.stdout.trimmingCharacters(in: .newlines)
        let real = URL(fileURLWithPath: CLITests.repl).resolvingSymlinksInPath().path
        #expect(line.hasPrefix("* * * * * ") && line.contains("'\(real)' orphans sweep --quiet"), "\(line)")
        #expect(line.contains("REPL_HOME='\(home.dir.appendingPathComponent("state").path)'"), "\(line)")
        // The command part runs as cron would run it (sh, a bare PATH): with no orbctl here it
        // fails cleanly, and its log is where the line says.
        let command = String(line.dropFirst("* * * * * ".count))
        let r = try await SystemProcessRunner.run(
            "/bin/sh", ["-c", command], input: nil, timeout: 60,
            environment: ["HOME": home.dir.path, "PATH": "/usr/bin:/bin"], limit: 1 << 16)
        #expect(r.status == 3, "\(r.stderrText)")
        let log = (try? String(contentsOf: home.dir.appendingPathComponent("state/sweep.log"), encoding: .utf8)) ?? ""
        #expect(log.contains("orbctl not found"), "\(log)")
        // A `%` in the path (cron ends the command at an unescaped one, and drops the `\` of `\%`),
        // and the orbctl REPL_ORBCTL names (found by attacking).
        var env = home.environment
        env["REPL_HOME"] = home.dir.appendingPathComponent("st%te").path
        env["REPL_ORBCTL"] = "/nonexistent/orbctl"
        let odd = try await CLITests.exec(CLITests.repl, ["orphans", "sweep", "--print-crontab"], env: env)
        let oddLine = String(odd.stdout.trimmingCharacters(in: .newlines).dropFirst("* * * * * ".count))
        #expect(oddLine.contains("--orbctl '/nonexistent/orbctl'"), "\(oddLine)")
        let asCron = oddLine.replacingOccurrences(of: "\\%", with: "\u{0}").split(separator: "%", omittingEmptySubsequences: false)[0]
            .replacingOccurrences(of: "\u{0}", with: "%")
        _ = try await SystemProcessRunner.run(
            "/bin/sh", ["-c", String(asCron)], input: nil, timeout: 60,
            environment: ["HOME": home.dir.path, "PATH": "/usr/bin:/bin"], limit: 1 << 16)
        let oddLog = (try? String(contentsOf: home.dir.appendingPathComponent("st%te/sweep.log"), encoding: .utf8)) ?? ""
        #expect(oddLog.contains("/nonexistent/orbctl"), "\(oddLog)")
    }

    @Test func runWithoutAUsableOrbctlRecordsNothing() async throws {
        let home = CLITests.Home()
        // A store in use (an empty one is checked against the machines first, which fails too).
        let store = try Store(directory: home.dir.appendingPathComponent("state"))
        try store.apply(try ManifestParser().parse("kind: Run\nname: seed\nreplicas: 0\n", file: "seed.yaml"))
        let out = try await CLITests.run(home, ["--orbctl", "/nonexistent/orbctl", "run", "--name", "x", "--command", "true"])
        #expect(out.status == 3, "\(out.stderr)")
        #expect(try store.runs().map(\.run.manifest.name) == ["seed"])
    }
}

/// `doctor` reports what it can and says by its exit code whether all is well (#18).
@Suite(.serialized) struct DoctorTests {
    @Test func doctorExitsOneWhenTheBreakerIsOpenOrTheStoreUnusableAndStillReports() async throws {
        let home = CLITests.Home()
        let ok = try await CLITests.run(home, ["--orbctl", "sim", "doctor", "--json"])
        #expect(ok.status == 0, "\(ok.stdout)\(ok.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(ok.stdout.utf8)) as? [String: Any])
        #expect(json["ok"] as? Bool == true && json["schemaVersion"] as? Int == 1 && json["repl"] is String)
        #expect((json["store"] as? [String: Any])?["schema"] as? String == Store.schemaVersion)

        // The breaker open: exit 1, and the report says why.
        let store = try Store(directory: home.dir.appendingPathComponent("state"))
        try store.saveBreaker(Admission.trip(.closed, message: "missing IP address", now: Date()))
        let open = try await CLITests.run(home, ["--orbctl", "sim", "doctor"])
        #expect(open.status == 1 && open.stdout.contains("breaker:       OPEN") && open.stdout.contains("needs attention"), "\(open.stdout)")

        // A corrupt store: still a report (orbctl, machines), exit 1.
        let db = home.dir.appendingPathComponent("state/state.db")
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: db.path + suffix) }
        try Data(repeating: 0x42, count: 8192).write(to: db)
        let corrupt = try await CLITests.run(home, ["--orbctl", "sim", "doctor", "--json"])
        #expect(corrupt.status == 1, "\(corrupt.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(corrupt.stdout.utf8)) as? [String: Any])
        #expect(((report["store"] as? [String: Any])?["error"] as? String)?.contains("not a valid repl database") == true)
        #expect((report["orbctl"] as? [String: Any])?["version"] is String)
        #expect(report["ok"] as? Bool == false)
    }
}

/// kubectl-like querying on `run list` (#18): `-l`, `-o wide|json`, `--all`.
@Suite(.serialized) struct RunQueryTests {
    @Test(.machineCommands) func runListSelectsByLabelAndShowsDeletedOnlyWithAll() async throws {
        let home = CLITests.Home()
        let file = home.dir.appendingPathComponent("labelled.yaml")
        try """
        kind: Run
        name: a
        replicas: 0
        labels: {team: ml, tier: batch}
        ---
        kind: Run
        name: b
        replicas: 0
        labels: {team: web}
        ---
        kind: Run
        name: c
        replicas: 0
        """.write(to: file, atomically: true, encoding: .utf8)
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", file.path]).status == 0)
        func names(_ args: [String]) async throws -> [String] {
            let out = try await CLITests.run(home, ["run", "list", "-o", "json"] + args)
            #expect(out.status == 0, "\(out.stderr)")
            let json = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]
            return (json?["runs"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }.sorted()
        }
        #expect(try await names(["-l", "team=ml"]) == ["a"])
        #expect(try await names(["-l", "team"]) == ["a", "b"])
        #expect(try await names(["-l", "team!=ml"]) == ["b", "c"])
        #expect(try await names(["-l", "team=ml,tier=batch"]) == ["a"])
        #expect(try await names(["-l", "team=ml,tier=web"]) == [])
        let wide = try await CLITests.run(home, ["run", "list", "-o", "wide"])
        #expect(wide.stdout.contains("LABELS") && wide.stdout.contains("team=ml,tier=batch"), "\(wide.stdout)")
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "delete", "run", "b"]).status == 0)
        #expect(try await names([]) == ["a", "c"])
        #expect(try await names(["--all"]) == ["a", "b", "c"])
        // A deleted run is still read by its name, saying so.
        let status = try await CLITests.run(home, ["run", "status", "b"])
        #expect(status.status == 0 && status.stderr.contains("was deleted; showing its history"), "\(status.stdout)\(status.stderr)")
        let bad = try await CLITests.run(home, ["run", "list", "-l", "=x"])
        #expect(bad.status == 2 && bad.stderr.hasPrefix("repl: -l:"), "\(bad.stderr)")
        #expect(try await CLITests.run(home, ["run", "list", "-o", "yamlish"]).status == 2)
        // -o yaml: the JSON document as YAML (types kept: numbers, booleans, nulls).
        let yaml = try await CLITests.run(home, ["run", "list", "-l", "team=ml", "-o", "yaml"])
        #expect(
            yaml.status == 0 && yaml.stdout.hasPrefix("runs:\n- ") && yaml.stdout.contains("  name: a\n")
                && yaml.stdout.contains("  replicas: 0\n") && yaml.stdout.contains("  deleted: false\n") && yaml.stdout.contains("team: ml"),
            "\(yaml.stdout)")
        // run status -l: every match, text blocks or one document of runs.
        let many = try await CLITests.run(home, ["run", "status", "-l", "team!=web", "-o", "json"])
        let doc = try JSONSerialization.jsonObject(with: Data(many.stdout.utf8)) as? [String: Any]
        #expect((doc?["runs"] as? [[String: Any]])?.compactMap { $0["name"] as? String }.sorted() == ["a", "c"], "\(many.stdout)")
        let text = try await CLITests.run(home, ["run", "status", "-l", "team!=web"])
        #expect(text.stdout.contains("run 1 a:") && text.stdout.contains("run 3 c:") && !text.stdout.contains(" b:"), "\(text.stdout)")
        #expect(try await CLITests.run(home, ["run", "status"]).status == 2)
        let one = try await CLITests.run(home, ["run", "status", "a", "-o", "yaml"])
        #expect(one.status == 0 && one.stdout.contains("name: a\n") && one.stdout.contains("lastError: null\n"), "\(one.stdout)")
        // delete -l: every run whose labels match, exactly; none matching deletes nothing.
        let none = try await CLITests.run(home, ["--orbctl", "sim", "delete", "-l", "team=nobody"])
        #expect(none.status == 2 && none.stderr.contains("nothing was deleted"), "\(none.stderr)")
        let byLabel = try await CLITests.run(home, ["--orbctl", "sim", "delete", "-l", "tier=batch"])
        #expect(byLabel.status == 0 && byLabel.stdout.contains("run a: deleted"), "\(byLabel.stdout)\(byLabel.stderr)")
        #expect(try await names([]) == ["c"])
    }
}

/// `apply` without `--wait` gives up at its `--timeout`, naming what is stuck and why (#16).
@Suite(.serialized) struct ApplyTimeoutTests {
    @Test(.machineCommands) func applyGivesUpAtItsTimeoutNamingWhatIsStuck() async throws {
        let home = CLITests.Home()
        let job = home.dir.appendingPathComponent("job.yaml")
        try "kind: Run\nname: stuck\ncommand: \"true\"\n".write(to: job, atomically: true, encoding: .utf8)
        // The emulator exists once the first command has run; then every create fails.
        _ = try await CLITests.run(home, ["--orbctl", "sim", "orphans", "list"])
        var env = home.environment
        env["ORBSIM_HOME"] = home.dir.appendingPathComponent("state/sim").path
        _ = try await CLITests.exec(
            BuildProducts.orbctlSim, ["admin", "fail", "create", "--times", "1000", "--message", "disk image unavailable"], env: env)
        let started = Date()
        let out = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", job.path, "--timeout", "3s"])
        #expect(out.status == 1, "\(out.stdout)\(out.stderr)")
        #expect(Date().timeIntervalSince(started) < 30)
        let last = out.stderr.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last.contains("gave up after 3s") && last.contains("stuck") && last.contains("disk image unavailable"), "\(out.stderr)")
    }
}

/// A lost `state.db` does not silently duplicate the fleet (#16): `apply` on an empty store,
/// while machines of another control id exist, refuses and points at `repl recover`.
@Suite(.serialized) struct LostStateTests {
    @Test(.machineCommands) func applyOnALostStoreRefusesAndPointsAtRecover() async throws {
        let home = CLITests.Home()
        var env = home.environment
        env["ORBSIM_HOME"] = home.dir.appendingPathComponent("orbstack").path  // machines outlive the store
        let job = home.dir.appendingPathComponent("job.yaml")
        try "kind: Run\nname: web\nreplicas: 0\n".write(to: job, atomically: true, encoding: .utf8)
        // The old installation's fleet: one machine of control id oldcid.
        _ = try await CLITests.exec(BuildProducts.orbctlSim, ["create", "ubuntu", "repl-oldcid-1-1"], env: env)
        let refused = try await CLITests.exec(CLITests.repl, ["--orbctl", "sim", "apply", "-f", job.path], env: env)
        #expect(refused.status == 2, "\(refused.stdout)\(refused.stderr)")
        #expect(
            refused.stderr.contains("oldcid") && refused.stderr.contains("repl recover") && refused.stderr.contains("--new-installation"),
            "\(refused.stderr)")
        // `watch -f` re-applies its files: it refuses the same way (found by attacking).
        let watch = try await CLITests.exec(CLITests.repl, ["--orbctl", "sim", "watch", "-f", job.path, "--plain"], env: env)
        #expect(watch.status == 2 && watch.stderr.contains("repl recover"), "\(watch.stdout)\(watch.stderr)")
        let list = try await CLITests.exec(CLITests.repl, ["run", "list"], env: env)
        #expect(list.stdout.contains("No runs yet"))  // nothing was recorded
        let recover = try await CLITests.exec(CLITests.repl, ["--orbctl", "sim", "recover"], env: env)
        #expect(recover.stdout.contains("oldcid") || recover.stderr.contains("oldcid"), "\(recover.stdout)\(recover.stderr)")
        // On purpose: a second installation beside the old one.
        let fresh = CLITests.Home()
        var env2 = fresh.environment
        env2["ORBSIM_HOME"] = env["ORBSIM_HOME"]
        let again = try await CLITests.exec(CLITests.repl, ["--orbctl", "sim", "apply", "-f", job.path, "--new-installation"], env: env2)
        #expect(again.status == 0, "\(again.stderr)")
        _ = try await CLITests.exec(BuildProducts.orbctlSim, ["admin", "reset"], env: env)
    }
}

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
    @Test(.enabled(if: machineCommandsAvailable, "finds the orbctl child through /proc (Linux)"), arguments: [SIGTERM, SIGINT, SIGHUP])
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
    @Test(.enabled(if: OutputStreamTests.devFull && machineCommandsAvailable, "needs /dev/full and machine commands (Linux as root)"))
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
        let r = try await shell(home, "'\(CLITests.repl)' --orbctl sim doctor >&- 2>&-")
        #expect(r.status == 0)
        let doctor = try await CLITests.run(home, ["--orbctl", "sim", "doctor"])
        #expect(doctor.status == 0 && doctor.stdout.contains("control id"), "\(doctor.stdout)\(doctor.stderr)")
    }
}

/// OrbStack's own machine options from the manifest (#17): resources, isolated, user and
/// cloud-init user data reach `orbctl create`, and a too-old OrbStack is refused up front.
@Suite(.serialized) struct MachineOptionsTests {
    func sim(_ home: CLITests.Home, _ args: [String]) async throws -> CLITests.Output {
        var env = home.environment
        env["ORBSIM_HOME"] = home.dir.appendingPathComponent("state/sim").path
        return try await CLITests.exec(BuildProducts.orbctlSim, args, env: env)
    }

    static let userData = "userData: |\n  #cloud-config\n  write_files:\n    - path: /etc/hello.txt\n      content: from-cloud-init\n"

    @Test(.machineCommands) func optionsReachTheMachineAndUserDataComesBeforeTheBootstrap() async throws {
        let home = CLITests.Home()
        // A command in an isolated machine: the user data's file was there for the bootstrap,
        // and there is no /mnt/mac (nor a host channel: its status comes by probing).
        let job = home.dir.appendingPathComponent("job.yaml")
        try
            ("kind: Run\nname: job\nisolated: true\nbootstrap: cp /etc/hello.txt /root/seen\n"
            + "command: cat /root/seen; echo; test -e /mnt/mac && echo mac || echo no-mac\n" + Self.userData)
            .write(to: job, atomically: true, encoding: .utf8)
        let plan = try await CLITests.run(home, ["--orbctl", "sim", "plan", "-f", job.path])
        #expect(plan.stdout.contains("isolated: no host status channel, so its status is read by probing the machine"), "\(plan.stdout)")
        let out = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", job.path, "--wait"])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout == "from-cloud-init\nno-mac\n", "\(out.stdout)")
        // A long-lived box with limits and a default user: OrbStack's own config shows them.
        let box = home.dir.appendingPathComponent("box.yaml")
        try "kind: Run\nname: box\nresources: {cpus: 2, memory: 1536M, disk: 8G}\nuser: dev\n".write(to: box, atomically: true, encoding: .utf8)
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", box.path]).status == 0)
        let status = try await CLITests.run(home, ["--orbctl", "sim", "run", "status", "box", "--json"])
        let doc = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        let instance = try #require((doc?["instances"] as? [[String: Any]])?.first, "\(status.stdout)")
        let machine = try #require(instance["machine"] as? String, "\(status.stdout)")
        // Where to reach it: its name on the Mac and its address (#17).
        #expect(instance["host"] as? String == "\(machine).orb.local")
        #expect((instance["address"] as? String)?.hasPrefix("192.168.139.") == true, "\(instance)")
        await #expect(try CLITests.run(home, ["--orbctl", "sim", "run", "status", "box"]).stdout.contains("ADDRESS"))
        await #expect(try sim(home, ["config", "get", "machine.\(machine).cpu"]).stdout == "2\n")
        await #expect(try sim(home, ["config", "get", "machine.\(machine).memory_mib"]).stdout == "1536\n")
        let info = try await sim(home, ["info", machine, "-f", "json"])
        #expect(info.stdout.contains("\"default_username\": \"dev\""), "\(info.stdout)")
        // A change of any option replaces the machines, and plan names the field.
        try "kind: Run\nname: box\nresources: {cpus: 4, memory: 1536M, disk: 8G}\nuser: dev\n".write(to: box, atomically: true, encoding: .utf8)
        let change = try await CLITests.run(home, ["--orbctl", "sim", "plan", "-f", box.path])
        #expect(
            change.stdout.contains("~ replace run box")
                && change.stdout.contains("resources: {cpus: 2, memory: 1536M, disk: 8G} → {cpus: 4, memory: 1536M, disk: 8G}"),
            "\(change.stdout)")
        // Artifacts change in place, and plan names them too.
        try "kind: Run\nname: box\nresources: {cpus: 2, memory: 1536M, disk: 8G}\nuser: dev\nartifacts: [/srv/*.json]\n".write(
            to: box, atomically: true, encoding: .utf8)
        let inPlace = try await CLITests.run(home, ["--orbctl", "sim", "plan", "-f", box.path])
        #expect(inPlace.stdout.contains("~ update run box") && inPlace.stdout.contains("artifacts: none → /srv/*.json"), "\(inPlace.stdout)")
    }

    @Test(.machineCommands) func anOrbStackTooOldForAnOptionIsRefusedBeforeAnythingIsRecorded() async throws {
        let home = CLITests.Home()
        _ = try await CLITests.run(home, ["--orbctl", "sim", "doctor"])  // sets the emulator up
        #expect(try await sim(home, ["admin", "version", "2.1.0"]).status == 0)
        let job = home.dir.appendingPathComponent("job.yaml")
        try "kind: Run\nname: job\ncommand: echo hi\nresources:\n  cpus: 2\n".write(to: job, atomically: true, encoding: .utf8)
        let out = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", job.path])
        #expect(out.status == 2)
        #expect(
            out.stderr
                == "repl: \(job.path):1:1: resources: needs OrbStack 2.2.0 or later; this Mac has 2.1.0 (update OrbStack, or remove resources)\n",
            "\(out.stderr)")
        await #expect(try CLITests.run(home, ["run", "list"]).stdout.contains("No runs yet"))
        // plan says so too, rather than promise a create apply refuses (found by attacking).
        let plan = try await CLITests.run(home, ["--orbctl", "sim", "plan", "-f", job.path])
        #expect(plan.status == 2 && plan.stderr.contains("resources: needs OrbStack 2.2.0 or later"), "\(plan.stdout)\(plan.stderr)")
    }
}

/// What an attacker found in #18's commands, each as the user saw it.
@Suite(.serialized) struct QueryAttackTests {
    func raw(_ home: CLITests.Home, _ args: [String]) async throws -> ProcessResult {
        try await SystemProcessRunner.run(CLITests.repl, args, input: nil, timeout: 120, environment: home.environment, limit: 1 << 24)
    }

    @Test(.machineCommands) func finishedRunsKeepTheirResultAndOutputIsByteForByte() async throws {
        let home = CLITests.Home()
        // --wait added a newline the command never printed.
        let wait = try await raw(home, ["--orbctl", "sim", "run", "--name", "nonl", "--command", "printf 'x\\nabc'", "--wait"])
        #expect(wait.status == 0 && wait.stdout == Data("x\nabc".utf8), "\(Array(wait.stdout))")
        // A huge --tail crashed (arithmetic overflow).
        let tail = try await raw(home, ["logs", "nonl", "--tail", "9223372036854775807"])
        #expect(tail.status == 0 && tail.stdoutText == "x\nabc", "\(tail.status) \(tail.stderrText)")
        // Deleting a run that had finished rewrote its result to Cancelled.
        #expect(try await raw(home, ["--orbctl", "sim", "delete", "run", "nonl"]).status == 0)
        let status = try await raw(home, ["run", "status", "nonl"])
        #expect(status.stdoutText.hasPrefix("run 1 nonl: Succeeded"), "\(status.stdoutText)")
        #expect(try await raw(home, ["wait", "nonl", "--for", "Succeeded", "--timeout", "5s"]).status == 0)
    }

    /// Read commands on a state directory with no store create nothing (they made a new
    /// installation wherever HOME pointed).
    @Test func readCommandsCreateNoStore() async throws {
        let home = CLITests.Home()
        var env = home.environment
        let nowhere = home.dir.appendingPathComponent("nowhere")
        env["REPL_HOME"] = nowhere.path
        let list = try await CLITests.exec(CLITests.repl, ["run", "list"], env: env)
        #expect(list.status == 0 && list.stdout.hasPrefix("No runs yet"), "\(list.stderr)")
        for args in [["run", "status", "x"], ["logs", "x"], ["wait", "x", "--for", "Running", "--timeout", "1s"]] {
            let r = try await CLITests.exec(CLITests.repl, args, env: env)
            #expect(r.status == 2 && r.stderr.contains("nothing has been applied"), "\(args): \(r.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: nowhere.path))
    }

    /// A machine in the way of a run's instance: plan and the sweep say so, never "Nothing to do".
    @Test(.machineCommands) func aConflictingMachineIsShownAsBlocked() async throws {
        let home = CLITests.Home()
        let doctor = try await raw(home, ["--orbctl", "sim", "doctor", "--json"])
        let cid = try #require((try JSONSerialization.jsonObject(with: doctor.stdout) as? [String: Any])?["controlId"] as? String)
        var env = home.environment
        env["ORBSIM_HOME"] = home.dir.appendingPathComponent("state/sim").path
        _ = try await CLITests.exec(BuildProducts.orbctlSim, ["create", "ubuntu:jammy", "repl-\(cid)-1-1"], env: env)
        let job = home.dir.appendingPathComponent("a.yaml")
        try "kind: Run\nname: a\ncommand: echo hi\n".write(to: job, atomically: true, encoding: .utf8)
        let plan = try await raw(home, ["--orbctl", "sim", "plan", "-f", job.path])
        #expect(
            plan.stdoutText.contains("! blocked repl-\(cid)-1-1  (conflict: repl-\(cid)-1-1 exists, but repl never asked for it"),
            "\(plan.stdoutText)")
        #expect(plan.stdoutText.contains("1 blocked until you act"), "\(plan.stdoutText)")
        _ = try await raw(home, ["--orbctl", "sim", "apply", "-f", job.path, "--timeout", "2s"])
        let sweep = try await raw(home, ["--orbctl", "sim", "orphans", "sweep"])
        #expect(sweep.stdoutText.contains("blocked: repl-\(cid)-1-1: conflict") && !sweep.stdoutText.contains("Nothing to do"), "\(sweep.stdoutText)")
    }

    @Test(.machineCommands) func queriesSayWhatIsWrongAndShowNothingRaw() async throws {
        let home = CLITests.Home()
        let job = home.dir.appendingPathComponent("job.yaml")
        try "kind: Run\nname: fan\nreplicas: 2\ncommand: echo hi\nlabels: {k: \"\\e[31m\"}\n---\nkind: Run\nname: box\nmaxDuration: 1h\n"
            .write(to: job, atomically: true, encoding: .utf8)
        // A run without a command: --wait returns once it is up, saying there is nothing to wait for.
        let wait = try await raw(home, ["--orbctl", "sim", "apply", "-f", job.path, "--wait", "--timeout", "60s"])
        #expect(wait.status == 0 && wait.stderrText.contains("box has no command: nothing to wait for"), "\(wait.stderrText)")
        let follow = try await raw(home, ["logs", "box", "-f"])
        #expect(follow.status == 0 && follow.stderrText.contains("has no command, so no output to follow"), "\(follow.stderrText)")
        // RUN/N in run status, as in logs; an empty name is named as such.
        let one = try await raw(home, ["run", "status", "fan/2"])
        #expect(one.status == 0 && one.stdoutText.contains("\n2 ") && !one.stdoutText.contains("\n1 "), "\(one.stdoutText)")
        #expect(try await raw(home, ["run", "status", ""]).stderrText.contains("the run name is empty"))
        // Selector syntax repl does not read is an error, not a key that matches nothing.
        for (selector, why) in [("!k", "!key (absent) is not supported"), ("k in (a)", "set-based selectors"), (" k = v ", "the key has spaces")] {
            let r = try await raw(home, ["run", "list", "-l", selector])
            #expect(r.status == 2 && r.stderrText.contains(why), "\(selector): \(r.stderrText)")
        }
        // Label values and errors from orbctl are shown with their control characters visible.
        let wide = try await raw(home, ["run", "list", "-o", "wide"])
        #expect(!wide.stdout.contains(0x1B) && wide.stdoutText.contains("k=\\x1B[31m"), "\(wide.stdoutText)")
        var env = home.environment
        env["ORBSIM_HOME"] = home.dir.appendingPathComponent("state/sim").path
        _ = try await CLITests.exec(BuildProducts.orbctlSim, ["admin", "fail", "create", "--times", "50", "--message", "\u{1B}[2Jboom"], env: env)
        try "kind: Run\nname: bad\ncommand: echo\n".write(to: job, atomically: true, encoding: .utf8)
        _ = try await raw(home, ["--orbctl", "sim", "apply", "-f", job.path, "--timeout", "3s"])
        let status = try await raw(home, ["run", "status", "bad"])
        #expect(status.stdoutText.contains("\\x1B[2Jboom") && !status.stdout.contains(0x1B), "\(status.stdoutText)")
    }
}

/// Into the machines (#17): `exec` passes input, output and the exit code through; `ssh`
/// reaches OrbStack's SSH server for the machine; `ssh-config` has an entry per live instance.
@Suite(.serialized) struct IntoTheMachineTests {
    @Test(.machineCommands) func execSshAndSshConfig() async throws {
        let home = CLITests.Home()
        let job = home.dir.appendingPathComponent("fan.yaml")
        try "kind: Run\nname: done\ncommand: echo hi\n".write(to: job, atomically: true, encoding: .utf8)
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", job.path, "--wait"]).status == 0)
        try "kind: Run\nname: fan\nreplicas: 2\ncommand: sleep 300\n".write(to: job, atomically: true, encoding: .utf8)
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", job.path]).status == 0)
        // exec: standard input in, output out, the exit code through; global options before or after.
        let exec = try await CLITests.run(
            home, ["--orbctl", "sim", "exec", "fan/2", "--", "sh", "-c", "cat; hostname; exit 7"], stdin: "from-stdin\n")
        let status = try await CLITests.run(home, ["run", "status", "fan", "--json"])
        let doc = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        let machines = (doc?["instances"] as? [[String: Any]] ?? []).compactMap { $0["machine"] as? String }
        #expect(machines.count == 2)
        #expect(exec.status == 7, "\(exec.stderr)")
        #expect(exec.stdout == "from-stdin\n\(machines.last ?? "?")\n", "\(exec.stdout)")
        let root = try await CLITests.run(home, ["exec", "fan", "--user", "root", "--orbctl", "sim", "--", "id", "-un"])
        #expect(root.status == 0 && root.stdout == "root\n", "\(root.stdout)\(root.stderr)")
        // A finished run, an unknown one, a missing command: one line, exit 2.
        for (args, says) in [
            (["exec", "done", "--", "true"], "done has finished (Succeeded) and its machine is gone"),
            (["exec", "nosuch", "--", "true"], "no run matches \"nosuch\""),
            (["exec", "fan"], "give the command after --"),
            (["exec", "fan/3", "--", "true"], "run fan has no instance 3"),
        ] {
            let r = try await CLITests.run(home, ["--orbctl", "sim"] + args)
            #expect(
                r.status == 2 && r.stderr.hasPrefix("repl: ") && r.stderr.contains(says) && r.stderr.split(separator: "\n").count == 1,
                "\(args): \(r.status) \(r.stderr)")
        }
        // ssh: OrbStack's server on localhost:32222 with its key, the machine in the user name.
        let bin = home.dir.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        let fake = bin.appendingPathComponent("ssh")
        try "#!/bin/sh\nprintf '%s\\n' \"$@\"\n".write(to: fake, atomically: true, encoding: .utf8)
        chmod(fake.path, 0o755)
        var env = home.environment
        env["PATH"] = bin.path + ":" + (env["PATH"] ?? "/usr/bin:/bin")
        let ssh = try await CLITests.exec(CLITests.repl, ["--orbctl", "sim", "ssh", "fan/1", "--user", "root", "--", "uptime"], env: env)
        #expect(ssh.status == 0, "\(ssh.stderr)")
        #expect(
            ssh.stdout == [
                "-p", "32222", "-i", home.dir.path + "/.orbstack/ssh/id_ed25519", "-o", "IdentitiesOnly=yes",
                "-o", "UserKnownHostsFile=\(home.dir.path)/.orbstack/ssh/known_hosts", "root@\(machines[0])@localhost", "uptime",
            ]
            .joined(separator: "\n") + "\n", "\(ssh.stdout)")
        // A --user that ssh would read as an option is refused (found by attacking).
        let hostile = try await CLITests.exec(CLITests.repl, ["--orbctl", "sim", "ssh", "fan/1", "--user=-oProxyCommand=id"], env: env)
        #expect(hostile.status == 2 && hostile.stdout.isEmpty && hostile.stderr.contains("is not a Linux user name"), "\(hostile.stderr)")
        // ssh-config: a Host per live instance (the finished run has none), written with --write.
        let config = try await CLITests.run(home, ["ssh-config"])
        #expect(
            config.stdout.contains(
                "Host fan-1\n  HostName localhost\n  Port 32222\n  User \(machines[0])\n  IdentityFile ~/.orbstack/ssh/id_ed25519\n"),
            "\(config.stdout)")
        #expect(config.stdout.contains("Host fan-2\n") && config.stdout.contains("User \(machines[1])\n") && !config.stdout.contains("Host done"))
        let written = try await CLITests.run(home, ["ssh-config", "--write"])
        let file = home.dir.appendingPathComponent("state/ssh_config")
        #expect(written.status == 0 && written.stdout.contains("Include \(file.path)"), "\(written.stdout)")
        #expect(try String(contentsOf: file, encoding: .utf8) == config.stdout)
    }
}

/// Files in and results out (#17): a directory arrives whole and binary-exact before the
/// bootstrap, without what `exclude` names; artifacts come back before the machine goes and
/// stay; a glob that matched nothing is noted on the run.
@Suite(.serialized) struct FilesAndArtifactsTests {
    @Test(.machineCommands) func filesArriveWholeAndArtifactsComeBack() async throws {
        let home = CLITests.Home()
        let project = home.dir.appendingPathComponent("project")
        let src = project.appendingPathComponent("src")
        let fm = FileManager.default
        try fm.createDirectory(at: src.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try fm.createDirectory(at: src.appendingPathComponent(".git"), withIntermediateDirectories: true)
        var rng = SystemRandomNumberGenerator()
        let big = Data((0..<(20 << 20)).map { _ in UInt8.random(in: 0...255, using: &rng) })
        try big.write(to: src.appendingPathComponent("big.bin"))
        try "nested\n".write(to: src.appendingPathComponent("sub/a.txt"), atomically: true, encoding: .utf8)
        try "object".write(to: src.appendingPathComponent("x.o"), atomically: true, encoding: .utf8)
        try "[core]".write(to: src.appendingPathComponent(".git/config"), atomically: true, encoding: .utf8)
        try "one\n".write(to: project.appendingPathComponent("one.txt"), atomically: true, encoding: .utf8)
        let manifest = project.appendingPathComponent("ship.yaml")
        try """
        kind: Run
        name: ship
        files:
          - {from: ./src, to: /srv/app, exclude: [".git", "*.o"]}
          - {from: one.txt, to: /etc/ship/one.txt}
          - {from: ./src/sub, to: /tmp}
        bootstrap: ls -A /srv/app > /root/seen
        command: |
          cat /root/seen /etc/ship/one.txt /srv/app/sub/a.txt
          cmp -s /srv/app/big.bin /mnt/mac\(src.path)/big.bin && echo big-whole || echo big-differs
          stat -c %a /tmp
          mkdir -p /srv/out && printf '{"a":1}' > /srv/out/r.json && echo spaced > "/srv/out/my file.txt"
        artifacts: ["/srv/out/*.json", "/srv/none/*.txt", "/srv/out/my file.txt"]

        """.write(to: manifest, atomically: true, encoding: .utf8)
        // From another directory: `from` is relative to the manifest's.
        let out = try await CLITests.exec(CLITests.repl, ["--orbctl", "sim", "apply", "-f", manifest.path, "--wait"], env: home.environment)
        #expect(out.status == 0, "\(out.stderr)")
        // (/tmp keeps its mode: the archive carries the directory's entries, not its `.`.)
        #expect(out.stdout == "big.bin\nsub\none\nnested\nbig-whole\n1777\n", "\(out.stdout)")
        // The machine is gone; the artifact is kept, with its path.
        var env = home.environment
        env["ORBSIM_HOME"] = home.dir.appendingPathComponent("state/sim").path
        await #expect(try CLITests.exec(BuildProducts.orbctlSim, ["list", "-q"], env: env).stdout.isEmpty)
        let kept = home.dir.appendingPathComponent("state/artifacts/ship/1/srv/out/r.json")
        #expect(try String(contentsOf: kept, encoding: .utf8) == "{\"a\":1}")
        #expect(fm.fileExists(atPath: home.dir.appendingPathComponent("state/artifacts/ship/1/srv/out/my file.txt").path))  // a glob with a space
        // Never a copy into the store itself (it lost the files), nor instance 0.
        let inside = try await CLITests.run(home, ["artifacts", "ship", "--to", home.dir.appendingPathComponent("state/artifacts").path])
        #expect(inside.status == 2 && inside.stderr.contains("is inside the artifacts repl keeps"), "\(inside.stderr)")
        #expect(fm.fileExists(atPath: kept.path))
        #expect(try await CLITests.run(home, ["artifacts", "ship", "--instance", "0"]).status == 2)
        let listed = try await CLITests.run(home, ["artifacts", "ship"])
        #expect(listed.status == 0 && listed.stdout.contains("ship/1  /srv/out/r.json"), "\(listed.stdout)\(listed.stderr)")
        let copied = home.dir.appendingPathComponent("results")
        #expect(try await CLITests.run(home, ["artifacts", "ship", "--to", copied.path]).status == 0)
        #expect(fm.fileExists(atPath: copied.appendingPathComponent("ship/1/srv/out/r.json").path))
        let status = try await CLITests.run(home, ["run", "status", "ship"])
        #expect(status.stdout.contains("note: ship/1: artifacts: /srv/none/*.txt matched nothing"), "\(status.stdout)")
        // Still there once the run is deleted; a new run of the same name never shows them.
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "delete", "run", "ship"]).status == 0)
        #expect(fm.fileExists(atPath: kept.path))
        try "kind: Run\nname: ship\ncommand: \"true\"\nartifacts: [/srv/nothing/*]\n".write(to: manifest, atomically: true, encoding: .utf8)
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", manifest.path, "--wait"]).status == 0)
        let fresh = try await CLITests.run(home, ["artifacts", "ship"])
        #expect(fresh.status == 2 && !fresh.stdout.contains("r.json"), "\(fresh.stdout)")
    }

    /// A machine is not trusted with the host's files: links among its artifacts (which could
    /// point the next member out of the artifacts directory) keep nothing, and say so.
    @Test(.machineCommands) func artifactsWithLinksAreRefused() async throws {
        let home = CLITests.Home()
        let manifest = home.dir.appendingPathComponent("evil.yaml")
        try "kind: Run\nname: evil\ncommand: mkdir -p /srv/out && ln -s /etc /srv/out/etc && echo x > /srv/out/x.txt\nartifacts: [/srv/out/*]\n"
            .write(to: manifest, atomically: true, encoding: .utf8)
        let out = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", manifest.path, "--wait"])
        #expect(out.status == 0, "\(out.stderr)")
        let root = home.dir.appendingPathComponent("state/artifacts/evil/1")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []) == [".origin"])
        let status = try await CLITests.run(home, ["run", "status", "evil"])
        #expect(status.stdout.contains("note: evil/1: its artifacts hold links or special files; none were kept"), "\(status.stdout)")
    }

    @Test func aMissingFromIsBadInputNamingTheLine() async throws {
        let home = CLITests.Home()
        let manifest = home.dir.appendingPathComponent("ship.yaml")
        try "kind: Run\nname: ship\nfiles:\n  - {from: ./nope, to: /srv/app}\n  - {from: /etc/hostname, to: relative}\nartifacts: [out/*.json]\n"
            .write(to: manifest, atomically: true, encoding: .utf8)
        // (and, checked below: a device, the root, the Mac's files, a target given twice)
        let more = home.dir.appendingPathComponent("more.yaml")
        try
            "kind: Run\nname: more\nfiles:\n  - {from: /dev/zero, to: /srv/z}\n  - {from: /etc/hostname, to: /}\n  - {from: /etc/hostname, to: /mnt/mac/tmp/x}\n  - {from: /etc/hostname, to: /srv/h}\n  - {from: /etc/hosts, to: /srv/h/}\n"
            .write(to: more, atomically: true, encoding: .utf8)
        let refused = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", more.path])
        #expect(refused.status == 2)
        for says in [
            "files[0].from: /dev/zero is neither a file nor a directory", "files[1].to: / is the machine's root",
            "files[2].to: /mnt/mac/tmp/x is the Mac's own file system", "files[4].to: /srv/h is already the target of files[3]",
        ] {
            #expect(refused.stderr.contains(says), "\(says): \(refused.stderr)")
        }
        let out = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", manifest.path])
        #expect(out.status == 2)
        #expect(
            out.stderr == """
                \(manifest.path):4:12: files[0].from: \(home.dir.path)/nope does not exist (relative to the manifest's directory)
                \(manifest.path):5:31: files[1].to: "relative" is not an absolute path in the machine (as /srv/app)
                \(manifest.path):6:13: artifacts[0]: "out/*.json" is not an absolute path or glob in the machine (as /srv/out/*.json)

                """, "\(out.stderr)")
    }
}
