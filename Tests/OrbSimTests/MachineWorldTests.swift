import Foundation
import ReplPlatform
import ReplTestSupport
import Testing

@testable import OrbSim

/// A machine's world, as strict as OrbStack's: sessions, users, file paths, its own process
/// table, `/mnt/mac`, isolation, cloud-init. Each test quotes the line of ORBCTL.md (or the
/// source) it checks.
@Suite(.serialized, .machineCommands)
struct MachineWorldTests {
    // "Processes left in the background die when the `orbctl run` session ends [R]: detach
    //  with `setsid … &` to keep them."
    @Test func backgroundProcessesDieWithTheSessionUnlessDetached() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        // (1 s: time to detach on a loaded machine)
        let script = "sleep 300 & (sleep 301 &) & setsid sleep 302 >/dev/null 2>&1 </dev/null & sleep 1; echo started"
        await #expect(try sim.run(["run", "-m", "m1", "sh", "-c", script]).stdout == "started\n")
        let left = try await sim.run(["run", "-m", "m1", "ps", "-eo", "args"]).stdout
        #expect(!left.contains("sleep 300"))
        #expect(!left.contains("sleep 301"))
        #expect(left.contains("sleep 302"))
        // Found by the attack on #20: a job in a process group of its own (job control, setpgrp)
        // or one that drops the session's environment is still of the session, and ends with it.
        let escapes = "set -m; sleep 305 & perl -e 'if(!fork){setpgrp;exec \"sleep\",\"306\"}'; env -i sleep 307 & sleep 1; echo started"
        await #expect(try sim.run(["run", "-m", "m1", "bash", "-c", escapes]).stdout == "started\n")
        let after = try await sim.run(["run", "-m", "m1", "ps", "-eo", "args"]).stdout
        for n in 305...307 { #expect(!after.contains("sleep \(n)"), "sleep \(n) outlived its session: \(after)") }
        #expect(after.contains("sleep 302"))
    }

    /// A command leads a session of its own in the machine: the caller's terminal is not its
    /// controlling terminal (a command could type into it: TIOCSTI), and a signal to the run is
    /// the command's (found by the attack on #20).
    @Test(.emulatorOnly) func aCommandLeadsItsOwnSessionAndGetsTheRunsSignals() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let sessionOfShell = "echo $$; cut -d' ' -f6 /proc/$$/stat"  // portability: allowed, a command inside the machine
        let ids = try await sim.run(["run", "-m", "m1", "sh", "-c", sessionOfShell]).stdout
        let lines = ids.split(separator: "\n")
        #expect(lines.count == 2 && lines[0] == lines[1], "not a session leader: \(ids)")
        let out = sim.home.appendingPathComponent("term.out").path
        let script = "trap 'echo got-term; exit 3' TERM; echo ready; sleep 20 & wait"
        let run = try await BackgroundProcess.start(
            BuildProducts.orbctlSim, ["run", "-m", "m1", "sh", "-c", script],
            environment: sim.environment, outputPath: out)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, !((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains("ready") { usleep(20_000) }
        run.signal(SIGTERM)
        let code = try await run.wait()
        #expect(code == 3, "exit \(code)")
        #expect(((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains("got-term"))
    }

    /// What a command is started as is checked as its user: a working directory or a program
    /// the user may not reach is refused, as a shell in the machine would (found by the attack).
    @Test func theCommandsUserIsWhoseAccessCounts() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", "printf '#!/bin/sh\\necho ran\\n' > /root/x; chmod 700 /root/x /root"])
        let program = try await sim.run(["run", "-m", "m1", "/root/x"])
        #expect(program.exitCode == 126 && !program.stdout.contains("ran"), "\(program)")
        let directory = try await sim.run(["run", "-m", "m1", "-w", "/root", "pwd"])
        #expect(directory.exitCode == 1 && directory.stderr == "chdir /root: no such file or directory\n", "\(directory)")
        await #expect(try sim.run(["run", "-m", "m1", "-u", "root", "/root/x"]).stdout == "ran\n")
        try await sim.run(["run", "-m", "m1", "sh", "-c", "echo true > /tmp/plain; chmod 644 /tmp/plain"])
        let notExecutable = try await sim.run(["run", "-m", "m1", "/tmp/plain"])
        #expect(notExecutable.exitCode == 126, "\(notExecutable)")
    }

    // "Commands run as the machine's default user (`--user` at create, else the Mac user's
    //  name) unless `-u`; the default user has passwordless `sudo` [S, pyinfra sudo path]."
    @Test func commandsRunAsTheDefaultUserWithItsOwnUIDAndHome() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "--user", "dev", "ubuntu", "m1"])
        try await sim.run(["create", "ubuntu", "m2"], environment: ["USER": "alice"])
        let dev = try await sim.run(["run", "-m", "m1", "sh", "-c", "id -un; id -u; echo $HOME; pwd; touch ~/mine && stat -c %U ~/mine"])
        #expect(dev.stdout == "dev\n501\n/home/dev\n/home/dev\ndev\n", "\(dev)")
        if !Conformance.isReal {  // OrbStack takes the Mac user's name from macOS, not from $USER
            await #expect(try sim.run(["run", "-m", "m2", "id", "-un"]).stdout == "alice\n")
        }
        await #expect(try sim.run(["run", "-m", "m1", "-u", "root", "id", "-un"]).stdout == "root\n")
        // Not root: the machine's own files are out of reach without sudo.
        let denied = try await sim.run(["run", "-m", "m1", "sh", "-c", "echo x > /etc/denied"])
        #expect(denied.exitCode != 0)
        // An unknown user is an error, and nothing runs.
        let ghost = try await sim.run(["run", "-m", "m1", "-u", "ghost", "touch", "/tmp/ran"])
        #expect(ghost.exitCode == 1)
        #expect(ghost.stderr.contains("ghost"))
        await #expect(try sim.run(["run", "-m", "m1", "sh", "-c", "test -e /tmp/ran && echo ran || echo no"]).stdout == "no\n")
        // The machine's list record names its default user.
        #expect(
            (try await sim.machines().first { $0["name"] as? String == "m1" }?["config"] as? [String: Any])?["default_username"] as? String == "dev")
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/sudo"), "the host has no sudo (apt-get install sudo)"))
    func theDefaultUserHasPasswordlessSudo() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "--user", "dev", "ubuntu", "m1"])
        let out = try await sim.run(["run", "-m", "m1", "sudo", "-n", "sh", "-c", "id -un; echo ok > /etc/by-sudo; cat /etc/by-sudo"])
        #expect(out.stdout == "root\nok\n", "\(out)")
        #expect(!FileManager.default.fileExists(atPath: "/etc/by-sudo"))
    }

    // "`orbctl push|pull [-m M] SRC… [DST]`: guest paths are relative to the guest user's home [S]."
    // "Real clients (pyinfra-orbstack) push files to absolute paths such as `/etc/...` and expect them exactly there."
    // A machine's `/etc` is its own: what a command writes or deletes there stays in the
    // machine (over a restart and into a clone) and never reaches the host's. It is an overlay
    // of the host's where the kernel takes one, so a boot copies nothing (#20).
    @Test func aMachinesEtcIsItsOwnAndABootCopiesNothing() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let marker = "repl-test-\(UUID().uuidString)"
        let wrote = try await sim.run([
            "run", "-m", "m1", "-u", "root", "sh", "-c",
            "echo mine > /etc/\(marker); rm /etc/os-release; cat /etc/hostname; id -un ubuntu",
        ])
        #expect(wrote.exitCode == 0 && wrote.stdout == "m1\nubuntu\n", "\(wrote)")
        #expect(!FileManager.default.fileExists(atPath: "/etc/" + marker))
        #expect(FileManager.default.fileExists(atPath: "/etc/os-release"))
        try await sim.run(["stop", "m1"])
        try await sim.run(["clone", "m1", "m2"])
        for machine in ["m1", "m2"] {
            let seen = try await sim.run([
                "run", "-m", machine, "sh", "-c", "cat /etc/\(marker); test -e /etc/os-release || echo gone; cat /etc/hostname",
            ])
            #expect(seen.stdout == "mine\ngone\n\(machine)\n", "\(machine): \(seen)")
        }
        let keys = try FileManager.default.contentsOfDirectory(atPath: sim.store().machinesDirectory.path).filter { !$0.hasPrefix(".") }
        for key in keys {
            let root = sim.store().machinesDirectory.appendingPathComponent(key).appendingPathComponent("root").path
            guard FileManager.default.fileExists(atPath: root + "/.etc-overlay") else { continue }  // no overlays here: a copy
            let own = FileManager.default.enumerator(atPath: root + "/etc")?.allObjects.count ?? 0
            #expect(own < 20, "\(own) files in the machine's own /etc")
        }
    }

    // The boot writes the machine's hostname, hosts, user, sudo rule and home on the host's
    // file system, as root: what a machine made of those (links to host files, a `..` home, a
    // pipe for passwd) is replaced or refused, never followed, isolated or not (attacked, #20).
    @Test(arguments: [false, true]) func aBootNeverFollowsWhatTheMachineMadeOfItsEtcOrHome(_ isolated: Bool) async throws {
        let sim = try SimHarness()
        let victim = sim.home.appendingPathComponent("victim")
        for dir in ["sudoers.d", "home", "chown"] {
            try FileManager.default.createDirectory(at: victim.appendingPathComponent(dir), withIntermediateDirectories: true)
        }
        for file in ["hostname", "hosts"] { try Data("ORIGINAL\n".utf8).write(to: victim.appendingPathComponent(file)) }
        func owner(_ path: String) -> Int? { (try? FileManager.default.attributesOfItem(atPath: path))?[.ownerAccountID] as? Int }
        try await sim.run(["create"] + (isolated ? ["--isolated"] : []) + ["ubuntu", "m1"])
        let v = victim.path
        let plant = """
            rm -f /etc/hostname /etc/hosts; ln -s \(v)/hostname /etc/hostname; ln -s \(v)/hosts /etc/hosts
            rm -rf /etc/sudoers.d; ln -s \(v)/sudoers.d /etc/sudoers.d
            rm -rf /home/ubuntu; ln -s \(v)/home /home/ubuntu
            """
        #expect(try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", plant]).exitCode == 0)
        try await sim.run(["stop", "m1"])
        let booted = try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", "cat /etc/hostname; test -L /etc/hosts || echo own-hosts"])
        #expect(booted.stdout == "m1\nown-hosts\n", "\(booted)")
        for file in ["hostname", "hosts"] {
            #expect(try String(contentsOf: victim.appendingPathComponent(file), encoding: .utf8) == "ORIGINAL\n", "\(file)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: v + "/sudoers.d").isEmpty)
        #expect(owner(v + "/home") == 0)
        // A home of `..`s in the machine's passwd, and a pipe for its group file.
        let escape = "sed -i 's#:/home/ubuntu:#:/../../../../../../../../..\(v)/chown:#' /etc/passwd; rm /etc/group; mkfifo /etc/group"
        #expect(try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", escape]).exitCode == 0)
        try await sim.run(["stop", "m1"])
        let again = try await sim.run(["run", "-m", "m1", "-u", "root", "true"], timeout: 60)
        #expect(again.exitCode == 0, "\(again)")
        #expect(owner(v + "/chown") == 0)
        try await sim.run(["stop", "m1"])
    }

    @Test func pushAndPullUseTheMachinesOwnPaths() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "--user", "dev", "ubuntu", "m1"])
        let file = sim.home.appendingPathComponent("x.conf")
        try Data("setting=1\n".utf8).write(to: file)
        let marker = "orbsim-push-\(UUID().uuidString).conf"
        await #expect(try sim.run(["push", "-m", "m1", file.path, "/etc/\(marker)"]).exitCode == 0)
        await #expect(try sim.run(["run", "-m", "m1", "cat", "/etc/\(marker)"]).stdout == "setting=1\n")
        #expect(!FileManager.default.fileExists(atPath: "/etc/\(marker)"), "the host's /etc was written")
        // Relative: under the default user's home, owned by that user.
        await #expect(try sim.run(["push", "-m", "m1", file.path, "here.conf"]).exitCode == 0)
        await #expect(try sim.run(["run", "-m", "m1", "stat", "-c", "%U %n", "/home/dev/here.conf"]).stdout == "dev /home/dev/here.conf\n")
        // Pull from an absolute path of the machine.
        let out = sim.home.appendingPathComponent("hostname")
        await #expect(try sim.run(["pull", "-m", "m1", "/etc/hostname", out.path]).exitCode == 0)
        #expect(try String(contentsOf: out, encoding: .utf8) == sim.emulator.name("m1") + "\n")
        // A missing source, and a missing parent directory in the machine, are errors.
        await #expect(try sim.run(["pull", "-m", "m1", "/etc/none", out.path]).exitCode == 1)
        await #expect(try sim.run(["push", "-m", "m1", file.path, "/no/such/dir/x"]).exitCode == 1)
    }

    // "per-machine keys `machine.NAME.{cpu,memory_mib,disk_bytes,…}` are addressed by name [G, M]"
    // GARM (2.2.3) sets cpu, memory_mib, disk_bytes, isolated, forward_ssh_agent, isolate_network and mounts.
    // "Per-machine CPU, memory and disk limits arrived in 2.2.0 [orbstack issue #789]."
    @Test func perMachineConfigShowsCreateLimitsAndTakesGARMsKeys() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "--cpus", "2", "--memory", "4G", "--disk", "64G", "ubuntu", "m1"])
        await #expect(try sim.run(["config", "get", "machine.m1.cpu"]).stdout == "2\n")
        await #expect(try sim.run(["config", "get", "machine.m1.memory_mib"]).stdout == "4096\n")
        await #expect(try sim.run(["config", "get", "machine.m1.disk_bytes"]).stdout == "68719476736\n")
        for (key, value) in [("isolate_network", "true"), ("mounts", ""), ("forward_ssh_agent", "false"), ("isolated", "false")] {
            let set = try await sim.run(["config", "set", "machine.m1.\(key)", value])
            #expect(set.exitCode == 0, "\(key): \(set)")
            await #expect(try sim.run(["config", "get", "machine.m1.\(key)"]).stdout == value + "\n")
        }
        await #expect(try sim.run(["config", "set", "machine.m1.nonsense", "1"]).stderr == "Unknown configuration key: machine.m1.nonsense\n")
    }

    // "Normal machines see the Mac's file system at `/mnt/mac` …; isolated machines
    //  (`create --isolated`, OrbStack 2.1+) do not mount it [docs: docs.orbstack.dev/machines/isolated]."
    @Test func mntMacIsTheHostsRootExceptInIsolatedMachines() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "normal"])
        try await sim.run(["create", "--isolated", "ubuntu", "iso"])
        // The test's own directory is under the host's /tmp, which a machine's /tmp hides.
        let marker = sim.home.appendingPathComponent("on-the-host")
        try Data("mac\n".utf8).write(to: marker)
        await #expect(try sim.run(["run", "-m", "normal", "cat", "/mnt/mac" + marker.path]).stdout == "mac\n")
        let isolated = try await sim.run(["run", "-m", "iso", "sh", "-c", "cat /mnt/mac\(marker.path) || echo hidden; ls -A /mnt"])
        #expect(isolated.stdout == "hidden\n", "\(isolated)")
        // The host's kernel views are not reachable through /mnt/mac.
        await #expect(try sim.run(["run", "-m", "normal", "sh", "-c", "ls -A /mnt/mac/proc | wc -l; ls -A /mnt/mac/run | wc -l"]).stdout == "0\n0\n")
        let record = try await sim.machines().first { $0["name"] as? String == "iso" }
        #expect((record?["config"] as? [String: Any])?["isolated"] as? Bool == true)
    }

    // "`create -c/--user-data FILE` takes a cloud-init document" and "`variant` is `default`, or
    //  `cloud` when created with user data [S]". cloud-init runs after create returns (the
    //  stricter model): its files are there once `cloud-init status --wait` has returned.
    @Test func userDataRunsAfterCreateReturnsAndIsWaitedFor() async throws {
        let sim = try SimHarness()
        let config = sim.home.appendingPathComponent("user-data.yaml")
        try Data(
            """
            #cloud-config
            write_files:
              - path: /etc/app/app.conf
                content: |
                  port=8080
                permissions: "0600"
              - path: /opt/blob
                encoding: b64
                content: aGVsbG8=
            runcmd:
              - echo ran > /srv/ran-by-runcmd
              - [sh, -c, "id -un > /opt/runcmd-user"]

            """.utf8
        ).write(to: config)
        // User data starts 3 s after the create launched it, so no sooner than 3 s after `start`:
        // a status read that ended before then must say `running`. A loaded machine may be later.
        try await sim.run(["admin", "latency", "cloud-init", "3000"])
        let start = Date()
        await #expect(try sim.run(["create", "--user-data", config.path, "ubuntu", "m1"]).exitCode == 0)
        let early = try await sim.run(["run", "-m", "m1", "cloud-init", "status"])
        if Date().timeIntervalSince(start) < 3 { #expect(early.stdout == "status: running\n", "\(early.stdout)") }
        let status = try await sim.run(["run", "-m", "m1", "cloud-init", "status", "--wait"])
        #expect(status.stdout == "status: done\n" && status.exitCode == 0)
        let check = "cat /etc/app/app.conf; stat -c %a /etc/app/app.conf; cat /opt/blob; echo; cat /srv/ran-by-runcmd /opt/runcmd-user"
        await #expect(try sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", check]).stdout == "port=8080\n600\nhello\nran\nroot\n")
        #expect((try await sim.machines().first?["image"] as? [String: Any])?["variant"] as? String == "cloud")
        // A failing runcmd: create still succeeds, cloud-init says error.
        try await sim.run(["admin", "latency", "cloud-init", "1000"])
        try Data("#cloud-config\nruncmd:\n  - exit 3\n".utf8).write(to: config)
        await #expect(try sim.run(["create", "-c", config.path, "ubuntu", "m2"]).exitCode == 0)
        let failed = try await sim.run(["run", "-m", "m2", "cloud-init", "status", "--wait"])
        #expect(failed.stdout == "status: error\n" && failed.exitCode == 1)
        // No user data: no cloud-init.
        try await sim.run(["create", "ubuntu", "m3"])
        await #expect(try sim.run(["run", "-m", "m3", "cloud-init", "status"]).exitCode == 127)
    }

    /// `admin clock advance` rewrites ids (ages are read from them); a running machine keeps
    /// its files, its processes and its probes.
    @Test(.emulatorOnly) func clockAdvanceLeavesRunningMachinesWhole() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        try await sim.run(["run", "-m", "m1", "sh", "-c", "echo kept > /tmp/kept; setsid sleep 600 >/dev/null 2>&1 </dev/null & sleep 0.1"])
        let before = try await sim.machineProcesses("m1")
        try await sim.run(["admin", "clock", "advance", "2h"])
        await #expect(try sim.run(["run", "-m", "m1", "cat", "/tmp/kept"]).stdout == "kept\n")
        await #expect(try sim.run(["run", "-m", "m1", "sh", "-c", "ps -eo args | grep -c '^sleep 600'"]).stdout == "1\n")
        #expect(try await sim.machineProcesses("m1").sorted().contains(before.sorted().first ?? -1))
    }

    // An OrbStack machine has its own process table: `ps` inside shows only the machine's processes.
    @Test(.emulatorOnly) func aMachineHasItsOwnProcessTable() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let ps = try await sim.run(["run", "-m", "m1", "ps", "-eo", "pid,args"]).stdout
        let rows = ps.split(separator: "\n").dropFirst()
        #expect(rows.first?.trimmingCharacters(in: .whitespaces).hasPrefix("1 ") == true, "\(ps)")
        #expect(rows.count <= 4, "the host's processes show inside: \(ps)")
        #expect(!ps.contains("swift"))
        let pid = try await sim.run(["run", "-m", "m1", "sh", "-c", "echo $$"]).stdout
        #expect((Int(pid.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) < 1000)
    }

    /// A command run in a machine is the only thing `orbctl run` adds to the machine's
    /// process table, as on OrbStack: the emulator's own part stays on the host.
    /// What it checks before starting the command still answers as before.
    @Test(.emulatorOnly) func aRunAddsOnlyItsCommandToTheMachine() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "--user", "dev", "ubuntu", "m1"])
        let ps = try await sim.run(["run", "-m", "m1", "ps", "-eo", "pid,args"]).stdout
        let rows = ps.split(separator: "\n").dropFirst().map { $0.trimmingCharacters(in: .whitespaces) }
        // The machine's init (PID 1) and `ps` itself, nothing else.
        #expect(rows.count == 2 && rows.first?.hasPrefix("1 ") == true, "\(ps)")
        #expect(rows.dropFirst().allSatisfy { !$0.contains("orbctl-sim") }, "\(ps)")
        let missing = try await sim.run(["run", "-m", "m1", "no-such-command", "x"])
        #expect(missing.exitCode == 127)
        #expect(missing.stderr == "no-such-command: command not found\n")
        let directory = try await sim.run(["run", "-m", "m1", "-w", "/nonexistent", "true"])
        #expect(directory.exitCode == 1)
        #expect(directory.stderr == "chdir /nonexistent: no such file or directory\n")
        let env = try await sim.run(["run", "-m", "m1", "-w", "/tmp", "sh", "-c", "echo $PWD $HOSTNAME $USER $HOME"]).stdout
        #expect(env == "/tmp m1 dev /home/dev\n")
        let root = try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", "echo $PWD $SHELL; id -u"]).stdout
        #expect(root == "/root /bin/bash\n0\n")
    }

    /// `kill -TERM -1` as root inside a machine signals every process it can see: the
    /// machine's, never the host's or another machine's.
    @Test(.emulatorOnly) func killAllInsideAMachineReachesOnlyThatMachine() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        try await sim.run(["create", "ubuntu", "m2"])
        let detached = "setsid sleep 600 >/dev/null 2>&1 </dev/null & sleep 0.1"
        try await sim.run(["run", "-m", "m1", "sh", "-c", detached])
        try await sim.run(["run", "-m", "m2", "sh", "-c", detached])
        let host = try await BackgroundProcess.start("/bin/sleep", ["600"], environment: [:], outputPath: "/dev/null")
        defer { host.signal(SIGKILL) }
        let m1 = try await sim.machineProcesses("m1"), m2 = try await sim.machineProcesses("m2")
        // Never signal every process from a machine that shares the host's process table (an
        // older or lenient emulator): that ends every process of the host, this test runner too.
        let namespaceLink = "/proc/self/ns/pid"  // portability: allowed, a command inside the machine
        let inside = try await sim.run(["run", "-m", "m1", "readlink", namespaceLink]).stdout
        let hostNamespace = MachineNamespace.ownPIDNamespace() ?? ""
        try #require(
            !inside.isEmpty && inside.trimmingCharacters(in: .whitespacesAndNewlines) != hostNamespace,
            "the machine shares the host's PID namespace")
        let out = try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", "kill -TERM -1; sleep 0.2; echo survived"])
        #expect(out.stdout == "survived\n")
        #expect(!SimHarness.anyAlive(m1), "m1's processes lived on")
        #expect(SimHarness.anyAlive(m2), "another machine's process was killed")
        #expect(kill(host.pid, 0) == 0, "a host process was killed")
        await #expect(try sim.state("m1") == "running")
    }

    /// Nothing a machine started outlives its world: removing the emulator's home ends every
    /// process of every machine.
    @Test(.emulatorOnly) func losingTheEmulatorHomeEndsEveryMachineProcess() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        try await sim.run(["run", "-m", "m1", "sh", "-c", "setsid sh -c 'sleep 3615; poweroff' >/dev/null 2>&1 </dev/null & sleep 0.1"])
        let pids = try await sim.machineProcesses("m1")
        #expect(!pids.isEmpty)
        try FileManager.default.removeItem(at: sim.simHome)
        let deadline = Date().addingTimeInterval(3)
        while Date() < deadline, SimHarness.anyAlive(pids) { try await Task.sleep(nanoseconds: 50_000_000) }
        #expect(!SimHarness.anyAlive(pids))
    }

    /// The shims name every path they need: a machine's `poweroff` under `env -i` still stops
    /// the machine, not the host.
    @Test func shimsWorkWithoutAnEnvironment() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let out = try await sim.run(["run", "-m", "m1", "-u", "root", "env", "-i", "/sbin/poweroff"])
        #expect(!out.stderr.contains("not found"), "\(out)")
        await #expect(try sim.state("m1") == "stopped")
    }
}
