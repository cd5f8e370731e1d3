import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import OrbStack

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

/// The env is the command's alone: no value is set while the wrapper still decodes the others
/// (found by attacking: an `LD_PRELOAD` in env broke the decoding of the values after it, and
/// its loader's complaint was the command's first output line).
@Suite(.serialized) struct EnvIsTheCommandsTests {
    @Test(.machineCommands) func anEnvThatWouldBreakTheWrapperOnlyReachesTheCommand() async throws {
        let home = CLITests.Home()
        let manifest = home.dir.appendingPathComponent("env.yaml")
        try """
        kind: Run
        name: env
        env: {A: "1", LD_PRELOAD: /nonexistent.so, PATH: /nowhere, Z: "2"}
        command: /bin/echo "only-this $A$Z $LD_PRELOAD $PATH" 2>/dev/null

        """.write(to: manifest, atomically: true, encoding: .utf8)
        let out = try await CLITests.exec(CLITests.repl, ["--orbctl", "sim", "apply", "-f", manifest.path, "--wait"], env: home.environment)
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout == "only-this 12 /nonexistent.so /nowhere\n", "\(out.stdout)")
    }
}
