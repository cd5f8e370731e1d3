import Foundation
import ReplPlatform
import ReplTestSupport
import Testing

/// Found by the attack on #20's changes, each a scenario on the built binaries. `.ci/run` also
/// runs these suites against the optimized build (`REPL_BUILD_DIR=.build/release`): the first
/// crashed only there.
@Suite(.serialized) struct AttackTwentyTests {
    func sim(_ home: CLITests.Home, _ args: [String]) async throws -> CLITests.Output {
        var env = home.environment
        env["ORBSIM_HOME"] = home.dir.appendingPathComponent("state/sim").path
        return try await CLITests.exec(BuildProducts.orbctlSim, args, env: env)
    }

    /// A running instance's machine deleted behind repl's back: every command that ticks asks
    /// `info` for it, and none may crash (an optimized build died of SIGILL or SIGSEGV in the
    /// task group that asks). The machine confirmed gone fails its instance.
    @Test(.machineCommands) func aMachineDeletedBehindReplsBackCrashesNothing() async throws {
        let home = CLITests.Home()
        let applied = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", "examples/long-lived.yaml"])
        try #require(applied.status == 0, "\(applied.stderr)")
        let machine = try #require(try await sim(home, ["list", "-q"]).stdout.split(separator: "\n").first.map(String.init))
        try #require(try await sim(home, ["delete", "-f", machine]).status == 0)
        for args in [
            ["orphans", "list"], ["orphans", "sweep", "--dry-run"], ["plan", "-f", "examples/long-lived.yaml"],
            ["doctor"], ["orphans", "sweep"],
        ] {
            let out = try await CLITests.run(home, ["--orbctl", "sim"] + args)
            #expect(out.status < 2, "repl \(args.joined(separator: " ")) exited \(out.status): \(out.stderr)")
            #expect(!out.stderr.contains("Fatal error") && !out.stderr.contains("Crash"), "\(out.stderr)")
        }
        let status = try await CLITests.run(home, ["run", "status", "devbox", "--json"])
        #expect(status.status == 0 && status.stdout.contains("\"Failed\""), "\(status.stdout)")
    }

    /// An orphan whose id is not a ULID (its age cannot be read) is kept, and the sweep says
    /// so rather than "no orphan is left".
    @Test(.machineCommands) func anOrphanOfUnknownAgeIsKeptAndNamed() async throws {
        let home = CLITests.Home()
        let job = home.dir.appendingPathComponent("job.yaml")
        try "kind: Run\nname: web\nreplicas: 0\n".write(to: job, atomically: true, encoding: .utf8)
        try #require(try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", job.path]).status == 0)
        let doctor = try await CLITests.run(home, ["--orbctl", "sim", "doctor"]).stdout
        let cid = try #require(doctor.split(separator: "\n").first { $0.contains("control id") }?.split(separator: " ").last.map(String.init))
        let orphan = "repl-\(cid)-50-1"
        let fake = home.dir.appendingPathComponent("orbctl")
        try """
        #!/bin/sh
        if [ "$1" = list ]; then
          printf '[{"id":"hello","name":"\(orphan)","state":"running","image":{"distro":"ubuntu","version":"noble","arch":"amd64"}}]\\n'
          exit 0
        fi
        exec '\(BuildProducts.orbctlSim)' "$@"

        """.write(to: fake, atomically: true, encoding: .utf8)
        chmod(fake.path, 0o755)
        for args in [["orphans", "sweep", "--dry-run"], ["orphans", "sweep"]] {
            let out = try await CLITests.run(home, ["--orbctl", fake.path] + args)
            #expect(out.status == 0, "\(out.stderr)")
            #expect(out.stdout.contains("\(orphan): orphan, kept: its age is unknown"), "\(out.stdout)")
            #expect(!out.stdout.contains("no orphan is left"), "\(out.stdout)")
        }
    }

    /// `repl wait` reads the host channel, which anything on the Mac can write: an end it shows
    /// while the command still runs is confirmed with the machine before wait answers. A forged
    /// `exited 0` is not `Succeeded`; the real end, unrecorded by any controller, still is.
    @Test(.machineCommands) func waitConfirmsAnEndTheChannelShowsWithTheMachine() async throws {
        let home = CLITests.Home()
        let marker = "/tmp/repl-wait-\(UUID().uuidString)"
        let started = try await CLITests.run(
            home,
            [
                "--orbctl", "sim", "run", "--name", "lr", "--command",
                "while [ ! -e \(marker) ]; do sleep 0.2; done",
            ])
        try #require(started.status == 0, "\(started.stderr)")
        try #require(try await CLITests.run(home, ["--orbctl", "sim", "wait", "lr", "--for", "Running", "--timeout", "60s"]).status == 0)
        let machine = try #require(try await sim(home, ["list", "-q"]).stdout.split(separator: "\n").first.map(String.init))
        let status = home.dir.appendingPathComponent("state/machines/\(machine)/status")
        try "exited 0\nlaunched=1\n".write(to: status, atomically: true, encoding: .utf8)
        // Nor an end in another phase than the one waited for (the second attack).
        for phase in ["Succeeded", "Finished", "Failed", "TimedOut"] {
            let forged = try await CLITests.run(home, ["--orbctl", "sim", "wait", "lr", "--for", phase, "--timeout", "2s"])
            #expect(forged.status == 1, "wait believed a forged end: \(forged.stdout)")
            #expect(forged.stderr.contains("is Running, not \(phase)"), "\(forged.stderr)")
        }
        // The command really ends: wait answers from the machine, with no controller running.
        try #require(try await sim(home, ["run", "-m", machine, "-u", "root", "touch", marker]).status == 0)
        let real = try await CLITests.run(home, ["--orbctl", "sim", "wait", "lr", "--for", "Succeeded", "--timeout", "60s"])
        #expect(real.status == 0 && real.stdout == "lr: Succeeded\n", "\(real.stdout)\(real.stderr)")
    }

    /// After the store is lost, `recover` believes a machine's manifest copy only where it
    /// cannot be a forgery that matters (the second attack): two runs claiming one name keep
    /// their machines aside (a forged name had failed recover halfway, with the real run's
    /// machine left to the sweep as an orphan), and an isolated machine whose copy drops its
    /// isolation is kept, not recovered into non-isolated siblings. Nothing is half-written.
    @Test(.machineCommands) func recoverBelievesNoForgedCopy() async throws {
        let home = CLITests.Home()
        for (name, extra) in [("aa", [String]()), ("bb", []), ("iso", ["--isolated"])] {
            let out = try await CLITests.run(home, ["--orbctl", "sim", "run", "--name", name, "--command", "sleep 900"] + extra)
            try #require(out.status == 0, "\(out.stderr)")
        }
        let machines = try await sim(home, ["list", "-q"]).stdout.split(separator: "\n").map(String.init).sorted()
        try #require(machines.count == 3)
        let (aa, bb, iso) = (machines[0], machines[1], machines[2])  // ids 1, 2, 3
        try #require(
            try await sim(home, ["run", "-m", aa, "-u", "root", "sed", "-i", "s/\"name\" : \"aa\"/\"name\" : \"bb\"/", "/etc/repl/manifest.yaml"])
                .status == 0)
        try #require(try await sim(home, ["run", "-m", iso, "-u", "root", "sed", "-i", "/\"isolated\"/d", "/etc/repl/manifest.yaml"]).status == 0)
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(at: home.dir.appendingPathComponent("state/state.db" + suffix)) }
        let recovered = try await CLITests.run(home, ["--orbctl", "sim", "recover"])
        #expect(recovered.status == 0, "\(recovered.stdout)\(recovered.stderr)")
        for machine in [aa, bb] {
            #expect(recovered.stdout.contains("\(machine): kept (another run's machines also claim the name bb"), "\(recovered.stdout)")
        }
        #expect(recovered.stdout.contains("\(iso): kept (its manifest says isolated: false"), "\(recovered.stdout)")
        // Nothing of it is recovered, and a sweep touches none of the three.
        let list = try await CLITests.run(home, ["run", "list", "--json"])
        #expect(!list.stdout.contains("\"name\""), "\(list.stdout)")
        let sweep = try await CLITests.run(home, ["--orbctl", "sim", "orphans", "sweep"])
        #expect(sweep.status == 0, "\(sweep.stderr)")
        #expect(try await sim(home, ["list", "-q"]).stdout.split(separator: "\n").map(String.init).sorted() == machines)
    }

    /// `repl run --name` of a long-lived run asks, as `apply` does, before it replaces its
    /// machines (the second attack: it replaced a devbox, and what was on it, at once).
    @Test(.machineCommands) func runAsksBeforeItReplacesALongLivedRun() async throws {
        let home = CLITests.Home()
        try #require(try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", "examples/long-lived.yaml"]).status == 0)
        let before = try await sim(home, ["list", "-q"]).stdout
        let refused = try await CLITests.run(home, ["--orbctl", "sim", "run", "--name", "devbox", "--spec", "ubuntu:noble"])
        #expect(refused.status == 2 && refused.stderr.contains("give --yes to replace them"), "\(refused.stdout)\(refused.stderr)")
        #expect(try await sim(home, ["list", "-q"]).stdout == before)
        let status = try await CLITests.run(home, ["run", "status", "devbox", "--json"])
        #expect(status.stdout.contains("\"generation\" : 1") || status.stdout.contains("\"generation\":1"), "\(status.stdout)")
        let replaced = try await CLITests.run(home, ["--orbctl", "sim", "run", "--name", "devbox", "--spec", "ubuntu:noble", "--yes"])
        #expect(replaced.status == 0, "\(replaced.stderr)")
    }
}
