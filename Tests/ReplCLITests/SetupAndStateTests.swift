import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import OrbStack

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
        // The emulator chosen with --orbctl sim is kept too: without it cron would sweep the
        // real OrbStack's machines with the emulator's store (found by an attacker).
        let sim = try await CLITests.run(home, ["--orbctl", "sim", "orphans", "sweep", "--print-crontab"])
        #expect(sim.stdout.contains("--orbctl 'sim' orphans sweep"), "\(sim.stdout)")
        // A line break in a path would end the crontab line and start another command there; a
        // `\` before a `%` is not one cron can keep (found by attacking): refused, nothing printed.
        for path in ["nl\n* * * * * touch /tmp/repl-owned #", "back\\%slash"] {
            env["REPL_HOME"] = home.dir.appendingPathComponent(path).path
            let refused = try await CLITests.exec(CLITests.repl, ["orphans", "sweep", "--print-crontab"], env: env)
            #expect(refused.status == 2 && refused.stdout.isEmpty && refused.stderr.contains("cron"), "\(refused.stdout)\(refused.stderr)")
        }
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
    @Test(.machineCommands) func doctorExitsOneWhenTheBreakerIsOpenOrTheStoreUnusableAndStillReports() async throws {
        let home = CLITests.Home()
        let ok = try await CLITests.run(home, ["--orbctl", "sim", "doctor", "--json"])
        #expect(ok.status == (machineCommandsAvailable ? 0 : 3), "\(ok.stdout)\(ok.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(ok.stdout.utf8)) as? [String: Any])
        #expect(json["ok"] as? Bool == machineCommandsAvailable && json["schemaVersion"] as? Int == 1 && json["repl"] is String)
        #expect((json["store"] as? [String: Any])?["schema"] as? String == Store.schemaVersion)
        // Where the emulator cannot run machine commands (apply and run refuse, exit 3), doctor
        // says so instead of "all well" (found by an attacker).
        var refusing = home.environment
        refusing["ORBSIM_NAMESPACES"] = "0"
        let cannot = try await CLITests.exec(CLITests.repl, ["--orbctl", "sim", "doctor"], env: refusing)
        #expect(cannot.status == 3 && cannot.stdout.contains("needs attention: orbctl: orbctl-sim runs machine commands"), "\(cannot.stdout)")

        // The breaker open: exit 1, and the report says why.
        let store = try Store(directory: home.dir.appendingPathComponent("state"))
        try store.saveBreaker(Admission.trip(.closed, message: "missing IP address", now: Date()))
        let open = try await CLITests.run(home, ["--orbctl", "sim", "doctor"])
        // (Exit 3 where the emulator cannot run machine commands: orbctl's problem comes first.)
        let needsAttention: Int32 = machineCommandsAvailable ? 1 : 3
        #expect(
            open.status == needsAttention && open.stdout.contains("breaker:       OPEN") && open.stdout.contains("needs attention"), "\(open.stdout)")

        // A corrupt store: still a report (orbctl, machines), exit 1.
        let db = home.dir.appendingPathComponent("state/state.db")
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: db.path + suffix) }
        try Data(repeating: 0x42, count: 8192).write(to: db)
        let corrupt = try await CLITests.run(home, ["--orbctl", "sim", "doctor", "--json"])
        #expect(corrupt.status == needsAttention, "\(corrupt.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(corrupt.stdout.utf8)) as? [String: Any])
        #expect(((report["store"] as? [String: Any])?["error"] as? String)?.contains("not a valid repl database") == true)
        #expect((report["orbctl"] as? [String: Any])?["version"] is String)
        #expect(report["ok"] as? Bool == false)
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
