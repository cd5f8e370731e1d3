import Foundation
import ReplPlatform
import ReplTestSupport
import Testing

@testable import OrbSim

/// What an independent attack on the emulator found, each as the scenario that reproduced it.
/// A machine shares the host's kernel: nothing its root does may reach the host, another
/// machine, or outlive the machine.
@Suite(.serialized, .emulatorOnly, .machineCommands)
struct MachineAttackTests {
    /// The cgroup `release_agent` escape needs `mount` (CAP_SYS_ADMIN), and the kernel's knobs
    /// under `/proc/sys` and `/sys` would reach the host: none of it is within a machine's reach.
    @Test func machineRootCannotReachTheKernel() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let tries = [
            "mount -t cgroup -o none,name=x cgroup /mnt",
            "mount -t tmpfs none /srv",
            "echo 1 > /proc/sys/vm/drop_caches",
            "echo h > /proc/sysrq-trigger",  // h: the harmless key (help), were it to work
            "echo 0 > /sys/kernel/mm/ksm/run",
            "ip link add orbsim-test type dummy",
        ]
        for attempt in tries {
            let out = try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", attempt + " 2>/dev/null && echo REACHED"])
            #expect(!out.stdout.contains("REACHED"), "machine root could: \(attempt)")
        }
    }

    /// The host's own tree is the machine's distro, read-only: nothing written lands on the host.
    @Test func theHostsTreeIsReadOnlyInsideAMachine() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let name = "orbsim-attack-\(UUID().uuidString)"
        for dir in ["/usr/local", "/var/lib", "/usr/bin"] {
            let out = try await sim.run(["run", "-m", "m1", "-u", "root", "touch", "\(dir)/\(name)"])
            #expect(out.exitCode != 0)
            #expect(!FileManager.default.fileExists(atPath: "\(dir)/\(name)"), "wrote the host's \(dir)")
        }
        // The emulator's own binary is out of reach too.
        let binary = MachineBoot.hostView + SimHarness.simBinary
        await #expect(try sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", "echo x >> '\(binary)'"]).exitCode != 0)
        // The machine's own directories are writable.
        await #expect(try sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", "touch /etc/x /opt/x /srv/x /var/lib/repl/x /tmp/x"]).exitCode == 0)
    }

    /// One machine cannot read or write another's directories, nor share its `/dev/shm`.
    @Test func machinesCannotReachEachOther() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "aa"])
        try await sim.run(["create", "ubuntu", "bb"])
        try await sim.run(["run", "-m", "bb", "-u", "root", "sh", "-c", "echo secret > /tmp/bbsecret; echo shm > /dev/shm/bbshm"])
        let probe =
            "cat \(MachineBoot.hostView)\(sim.simHome.path)/machines/*/root/tmp/bbsecret /dev/shm/bbshm 2>/dev/null; ls \(MachineBoot.hostView)\(sim.simHome.path)/machines | wc -l"
        let out = try await sim.run(["run", "-m", "aa", "-u", "root", "sh", "-c", probe])
        #expect(!out.stdout.contains("secret") && !out.stdout.contains("shm"), "\(out)")
        #expect(out.stdout.hasSuffix("1\n"), "other machines' directories are listed: \(out)")
    }

    /// A delete racing a run and a clone of the same machine leaves no init, no process and no directory.
    @Test func aDeleteRacingARunAndACloneLeavesNothing() async throws {
        let sim = try SimHarness()
        for round in 0..<4 {
            try await sim.run(["create", "ubuntu", "cc"])
            try await sim.run(["run", "-m", "cc", "sh", "-c", "setsid sleep 600 >/dev/null 2>&1 </dev/null & sleep 0.1"])
            let key = try await #require(try sim.machines().first { $0["name"] as? String == "cc" }?["id"] as? String).dropFirst(10)
            await withTaskGroup(of: Void.self) { group in
                group.addTask { _ = try? await sim.run(["clone", "cc", "cl\(round)"]) }
                group.addTask { _ = try? await sim.run(["delete", "-f", "cc"]) }
                group.addTask { _ = try? await sim.run(["run", "-m", "cc", "true"]) }
            }
            let deadline = Date().addingTimeInterval(3)
            while Date() < deadline, !MachineNamespace.inits(key: String(key)).isEmpty { try await Task.sleep(nanoseconds: 50_000_000) }
            #expect(MachineNamespace.inits(key: String(key)).isEmpty, "round \(round): cc's init outlived its delete")
            #expect(!FileManager.default.fileExists(atPath: sim.simHome.appendingPathComponent("machines/\(key)").path))
            await #expect(try sim.state("cc") == nil)
        }
    }

    /// A `stop` killed midway still stops the machine: its processes end within a second or so.
    @Test func aKilledStopStillEndsTheMachine() async throws {
        let sim = try SimHarness()
        try await sim.run(["admin", "latency", "stop", "1500"])
        try await sim.run(["create", "ubuntu", "kk"])
        // A process that ignores SIGTERM: only the end of the machine's init ends it.
        try await sim.run([
            "run", "-m", "kk", "sh", "-c", "setsid sh -c 'trap \"\" TERM; while :; do sleep 0.2; done' >/dev/null 2>&1 </dev/null & sleep 0.1",
        ])
        let pids = try await sim.machineProcesses("kk")
        #expect(!pids.isEmpty)
        let stop = try await BackgroundProcess.start(sim.orbctl, ["stop", "kk"], environment: sim.environment, outputPath: "/dev/null")
        let stopping = Date().addingTimeInterval(5)
        while Date() < stopping, try await sim.state("kk") != "stopping" { try await Task.sleep(nanoseconds: 10_000_000) }
        stop.signal(SIGKILL)
        _ = try? await stop.wait()
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline, SimHarness.anyAlive(pids) { try await Task.sleep(nanoseconds: 50_000_000) }
        #expect(!SimHarness.anyAlive(pids))
        while Date() < deadline, try await sim.state("kk") != "stopped" { try await Task.sleep(nanoseconds: 50_000_000) }
        await #expect(try sim.state("kk") == "stopped")
        // Started again, it is a fresh boot: nothing of before is running.
        await #expect(try sim.run(["run", "-m", "kk", "sh", "-c", "ps -eo args | grep -c '^sh -c trap'"]).stdout == "0\n")
    }

    /// A `delete` killed midway is finished by a later call, as OrbStack's daemon finishes it.
    @Test func aKilledDeleteIsFinishedLater() async throws {
        let sim = try SimHarness()
        try await sim.run(["admin", "latency", "delete", "2000"])
        try await sim.run(["create", "ubuntu", "dd"])
        try await sim.run(["run", "-m", "dd", "sh", "-c", "setsid sleep 600 >/dev/null 2>&1 </dev/null & sleep 0.1"])
        let delete = try await BackgroundProcess.start(sim.orbctl, ["delete", "-f", "dd"], environment: sim.environment, outputPath: "/dev/null")
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline, try await sim.state("dd") != "deleting" { try await Task.sleep(nanoseconds: 20_000_000) }
        delete.signal(SIGKILL)
        _ = try? await delete.wait()
        await #expect(try sim.state("dd") == "deleting")
        await #expect(try sim.run(["start", "dd"]).exitCode == 1)
        try await sim.run(["admin", "clock", "advance", "1m"])
        await #expect(try sim.state("dd") == nil)
    }

    /// A user name is an account name, never a path or shell text.
    @Test(arguments: ["../../../../tmp/orbsim-escape", "a b", "-rf", "ubuntu:0", "x;id", "0"])
    func badUserNamesAreRefused(_ user: String) async throws {
        let sim = try SimHarness()
        let out = try await sim.run(["create", "--user", user, "ubuntu", "m1"])
        #expect(out.exitCode == 1, "\(out)")
        await #expect(try sim.machines().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: "/tmp/orbsim-escape"))
    }

    /// A name longer than a Linux host name still makes a machine that runs commands.
    @Test func aLongNameStillRuns() async throws {
        let sim = try SimHarness()
        let name = String(repeating: "a", count: 70)
        try await sim.run(["create", "ubuntu", name])
        await #expect(try sim.run(["run", "-m", name, "true"]).exitCode == 0)
    }

    // Found by the attack on #20.

    /// The dynamic loader's configuration is out of the machine's reach: the first programs of
    /// a session run with every capability until they are dropped, and a preload the machine's
    /// root wrote would have run in them.
    @Test(arguments: [false, true]) func theLoadersConfigurationCannotBeChanged(_ isolated: Bool) async throws {
        let sim = try SimHarness()
        try await sim.run(["create"] + (isolated ? ["--isolated"] : []) + ["ubuntu", "m1"])
        let attempts = [
            "echo /tmp/x.so > /etc/ld.so.preload", "cp /dev/null /etc/ld.so.cache", "rm -f /etc/ld.so.preload",
            "mv /etc/ld.so.cache /etc/ld.so.cache.old", "umount /etc/ld.so.preload",
        ]
        for attempt in attempts {
            _ = try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", attempt + " 2>/dev/null; true"])
            // Still nothing to preload, and the host's cache (a write to the preload goes to /dev/null).
            let state = try await sim.run([
                "run", "-m", "m1", "-u", "root", "sh", "-c",
                "wc -c < /etc/ld.so.preload; test -s /etc/ld.so.cache && echo cache; ls /etc/ld.so.cache.old 2>&1 >/dev/null | wc -l",
            ])
            #expect(state.stdout == "0\ncache\n1\n", "after \(attempt): \(state)")
        }
        if let host = FileManager.default.contents(atPath: "/etc/ld.so.cache") {
            let inside = try await sim.run(["run", "-m", "m1", "-u", "root", "md5sum", "/etc/ld.so.cache"])
            let expected = try await SystemProcessRunner.run(
                "/usr/bin/md5sum", ["/etc/ld.so.cache"], input: nil, timeout: 10, environment: [:], limit: 4096)
            #expect(inside.stdout == expected.stdoutText && !host.isEmpty, "\(inside.stdout) vs \(expected.stdoutText)")
        }
    }

    /// A machine's init works from `/`: an isolated machine never sees, through `/proc/1/cwd`,
    /// the directory its first command was run from.
    @Test func theInitsWorkingDirectoryIsNotTheCallers() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "--isolated", "ubuntu", "iso"])
        // The session's shell changes to `-w` as the command's user, after what lets it look
        // into the init is dropped: refused, or at worst the init's own `/`.
        let initCwd = "/proc/1/cwd"  // portability: allowed, a command inside the machine
        let cwd = try await sim.run(["run", "-m", "iso", "-u", "root", "-w", initCwd, "pwd", "-P"])
        #expect(cwd.stdout == "/\n" || (cwd.exitCode == 1 && cwd.stderr.hasPrefix("chdir ")), "\(cwd)")
        // And from the host: the init's working directory is `/`.
        let records = try FileManager.default.contentsOfDirectory(atPath: sim.simHome.appendingPathComponent("machines").path)
        for key in records {
            guard let data = FileManager.default.contents(atPath: sim.simHome.appendingPathComponent("machines/\(key)/init.json").path),
                let record = try? JSONDecoder().decode(MachineBoot.Record.self, from: data)
            else { continue }
            let initCwd = "/proc/\(record.pid)/cwd"  // portability: allowed, the emulator's own init
            #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: initCwd)) == "/")
        }
    }

    /// A closed standard stream of the caller is not a descriptor of the emulator's in the
    /// command (its epoll descriptor was, and the command crashed the emulator through it).
    @Test func aClosedStandardInputIsNotTheEmulatorsDescriptor() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let out = try await SystemProcessRunner.run(
            "/bin/sh", ["-c", "exec \"$0\" run -m m1 readlink /proc/self/fd/0 <&-", BuildProducts.orbctlSim],
            input: nil, timeout: 60, environment: sim.environment, limit: 1 << 16)
        #expect(out.status == 0 && out.stdoutText == "/dev/null\n", "\(out.stdoutText)\(out.stderrText)")
    }

    /// Power tools need root, as on a real machine; a missing `-w` directory is an error.
    @Test func powerNeedsRootAndWorkdirMustExist() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let out = try await sim.run(["run", "-m", "m1", "poweroff"])
        #expect(out.exitCode == 1)
        #expect(!out.stderr.contains(MachineBoot.hostView), "an internal path leaked: \(out.stderr)")
        await #expect(try sim.state("m1") == "running")
        await #expect(try sim.run(["run", "-m", "m1", "-w", "/nonexistent", "true"]).exitCode == 1)
    }

    // Found by the second attack.

    /// The init and sessions keep every capability: no command may attach to them (gdb on
    /// PID 1 gave the first attack's machine root back everything).
    @Test func commandsCannotAttachToTheInit() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let out = try await sim.run([
            "run", "-m", "m1", "-u", "root", "sh", "-c", "cat /proc/1/environ >/dev/null 2>&1 && echo REACHED; echo checked",
        ])
        #expect(out.stdout == "checked\n", "\(out)")
    }

    /// A machine cannot rewrite its init's record, and a record naming a host process is not believed.
    @Test func aForgedInitRecordIsNeverBelieved() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        try await sim.run(["run", "-m", "m1", "true"])
        let id = try #require(try await sim.machines().first?["id"] as? String)
        let key = String(id.dropFirst(10))
        let record = "\(MachineBoot.hostView)\(sim.simHome.path)/machines/\(key)/init.json"
        await #expect(try sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", "echo '{\"pid\":1}' > \(record)"]).exitCode != 0)
        // The init's parent (util-linux's unshare) runs on the host with the same command line.
        let host = MachineNamespace.inits(key: key).filter { !MachineNamespace.isMachineInit($0) }
        #expect(!host.isEmpty)
        for pid in host {
            #expect(MachineNamespace.processes(ofInit: pid).isEmpty, "a host process taken for a machine's init")
        }
        #expect(MachineNamespace.processes(ofInit: getpid()).isEmpty)
        try Data("{\"pid\":\(host.first ?? 1)}".utf8).write(to: sim.simHome.appendingPathComponent("machines/\(key)/init.json"))
        let sim2 = OrbSim(home: sim.simHome, executable: SimHarness.simBinary, environment: sim.environment)
        #expect(MachineBoot(sim: sim2).running(key) == nil)
    }
}
