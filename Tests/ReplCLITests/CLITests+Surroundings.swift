import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import OrbStack

/// The CLI where its surroundings fail or differ: the orbctl, the state directory, the disk,
/// a read-only store, an emulator that cannot run machine commands.
extension CLITests {
    @Test func anEmptyStateDirIsBadInput() async throws {
        // (A read command: before the fix it read the current directory as the state, writing nothing.)
        let out = try await Self.run(Home(), ["--state-dir", "", "--orbctl", "sim", "run", "list"])
        #expect(out.status == 2 && out.stderr.contains("--state-dir: empty"), "\(out.status) \(out.stderr)")
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
