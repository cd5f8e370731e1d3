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

    /// The emulator's state is the host's: a machine's root can neither rewrite it (an isolated
    /// machine once switched its isolation off for its next boot) nor hold its lock (which hung
    /// every call), nor reach it through the init's descriptors. Its own boot lock is out of
    /// reach too (holding it hung a delete of the machine). Its `poweroff` still stops it.
    @Test func machineRootCannotReachTheEmulatorsState() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "--isolated", "ubuntu", "m1"])
        let id = try #require(try await sim.machines().first?["id"] as? String)
        let key = String(id.dropFirst(10))
        let view = MachineBoot.hostView + sim.simHome.path
        let tries = [
            "sed -i 's/\"isolated\":\"true\"/\"isolated\":\"false\"/' \(view)/state.json",
            "test -e \(view)/state.json",
            "test -e \(view)/lock",
            "test -e \(view)/machines/\(key)/boot.lock",
            "ls /proc/1/fd/*/state.json",
            "cat /proc/1/fd/*/state.json",
        ]
        for attempt in tries {
            let out = try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", attempt + " >/dev/null 2>&1 && echo REACHED; echo checked"])
            #expect(out.stdout == "checked\n", "machine root could: \(attempt) \(out)")
        }
        let state = try String(contentsOf: sim.simHome.appendingPathComponent("state.json"), encoding: .utf8)
        #expect(state.contains("\"isolated\":\"true\""))
        // A lock on anything it can see does not stop the emulator: a list still answers.
        try await sim.run([
            "run", "-m", "m1", "-u", "root", "sh", "-c",
            "for f in $(find /run -type f 2>/dev/null); do setsid flock -x \"$f\" sleep 30 >/dev/null 2>&1 </dev/null & done; sleep 0.2",
        ])
        let listed = try await sim.run(["list"], timeout: 10)
        #expect(listed.exitCode == 0)
        // Its root powers it off from inside; a root that signals its init directly does too.
        _ = try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", "kill -TERM 1; sleep 5"])
        await #expect(try sim.state("m1") == "stopped")
        try await sim.run(["start", "m1"])
        _ = try await sim.run(["run", "-m", "m1", "-u", "root", "poweroff"])
        await #expect(try sim.state("m1") == "stopped")
    }

    /// A raw `reboot(2)` by a machine's root (no shim in the way) ends the machine's PID
    /// namespace: the kernel signals its init. The machine is then stopped, as a `reboot` shim
    /// stops it, not `running` with nothing in it.
    @Test func aRawRebootSyscallStopsTheMachine() async throws {
        #if arch(x86_64)
            let number = 169
        #elseif arch(arm64)
            let number = 142
        #else
            return
        #endif
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/perl") else { return }
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        for command in [0x4321_FEDC, 0x0123_4567] {  // LINUX_REBOOT_CMD_POWER_OFF, then _RESTART
            try await sim.run(["start", "m1"])
            _ = try await sim.run(["run", "-m", "m1", "-u", "root", "perl", "-e", "syscall(\(number), 0xfee1dead, 672274793, \(command)); sleep 5"])
            let deadline = Date().addingTimeInterval(5)
            while try await sim.state("m1") != "stopped", Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
            await #expect(try sim.state("m1") == "stopped", "reboot(2) command \(command)")
        }
    }

    /// The init runs with every capability and holds the emulator's home: nothing may make it
    /// run a program. A crash signal from the machine's root made Swift's runtime start its
    /// backtracer, by a path inside the machine (the toolchain under `/opt`, which the machine
    /// owns), as the init's child: the attack read and rewrote the state through it.
    @Test func aCrashSignalToTheInitRunsNothing() async throws {
        let runtime = try #require(Platform.swiftRuntimeDirectory())
        let backtracer = URL(fileURLWithPath: runtime).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("libexec/swift/linux/swift-backtrace").standardizedFileURL.path
        let top = backtracer.split(separator: "/").first.map(String.init) ?? ""
        guard MachineBoot.directories.contains(top) else { return }  // the machine cannot plant it where the runtime looks
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let dir = (backtracer as NSString).deletingLastPathComponent
        let plant = "mkdir -p '\(dir)' && printf '#!/bin/sh\\necho ran > /tmp/planted\\n' > '\(backtracer)' && chmod +x '\(backtracer)'"
        try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", plant])
        for sig in ["SEGV", "ABRT", "BUS", "ILL", "FPE", "TRAP", "QUIT"] {
            _ = try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", "kill -\(sig) 1; sleep 0.5"])
            let out = try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", "cat /tmp/planted 2>/dev/null; echo checked"])
            #expect(out.stdout == "checked\n", "SIG\(sig) to the init ran a program of the machine's")
            await #expect(try sim.state("m1") == "running")
        }
    }

    /// A machine's `/dev` is its own: the host's device directory (one devtmpfs for the whole
    /// kernel) was writable in every machine, isolated ones included (found by the attack).
    /// The devices a command needs are there.
    @Test(arguments: [false, true]) func aMachinesDevIsItsOwn(_ isolated: Bool) async throws {
        let sim = try SimHarness()
        try await sim.run(["create"] + (isolated ? ["--isolated"] : []) + ["ubuntu", "m1"])
        let probe = "/dev/orbsim-probe-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: probe) }
        // (Only a file of the test's own name: were the fix missing, nothing of the host's is touched.)
        _ = try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", "echo x > \(probe)"])
        #expect(!FileManager.default.fileExists(atPath: probe), "a machine wrote the host's /dev")
        let check = """
            head -c 4 /dev/zero | od -An -tx1 | tr -d ' \\n'; echo; head -c 8 /dev/urandom | wc -c; echo hi > /dev/null && echo null;
            ls /dev/fd/ > /dev/null && echo fd; echo shm > /dev/shm/x && cat /dev/shm/x; test -d /dev/pts && echo pts
            """
        let out = try await sim.run(["run", "-m", "m1", "sh", "-c", check])
        // The bound nodes are the host's: their modes cannot be changed from inside (a no-op
        // chmod, so that nothing of the host's changes were the guard missing).
        let mode = try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", "chmod 666 /dev/null 2>/dev/null && echo CHANGED; echo checked"])
        #expect(mode.stdout == "checked\n", "\(mode)")
        #expect(out.stdout == "00000000\n8\nnull\nfd\nshm\npts\n", "\(out.stdout)\(out.stderr)")
        await #expect(try sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", "echo out > /dev/stdout"]).stdout == "out\n")
    }

    /// The emulator's home is hidden under `/mnt/mac` whatever path names it: a home reached
    /// through a link was hidden only by the link's path (found by the attack).
    @Test func aHomeNamedThroughALinkIsHiddenToo() async throws {
        let sim = try SimHarness()
        let link = sim.simHome.deletingLastPathComponent().appendingPathComponent("home-link")
        try FileManager.default.createDirectory(at: sim.simHome, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: sim.simHome)
        sim.environment["ORBSIM_HOME"] = link.path
        try await sim.run(["create", "ubuntu", "m1"])
        let real = sim.simHome.resolvingSymlinksInPath().path
        let out = try await sim.run([
            "run", "-m", "m1", "-u", "root", "sh", "-c", "test -e '/mnt/mac\(real)/state.json' && echo REACHED; echo checked",
        ])
        #expect(out.stdout == "checked\n", "\(out)")
    }

    /// On the host, a shim refuses before anything: its `poweroff` signals PID 1, which there is
    /// the host's own init. (Asked of the guard only: running it here unguarded would stop the host.)
    @Test func aShimOnTheHostIsRefused() async throws {
        #expect(!MachineShims.insideAMachine())
        let sim = try SimHarness()
        let out = try await sim.run(["__shim", "hostname", "-I"])
        #expect(out.exitCode == 1 && out.stderr.contains("shims only work inside an emulated machine"), "\(out)")
    }

    /// Power tools need nothing a machine's root can change: a forged, removed or odd
    /// `/run/orbsim-machine` made `poweroff` refuse (found by the attack).
    @Test func powerToolsWorkWhateverTheMarkSays() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        for forge in ["rm -f /run/orbsim-machine", "echo garbage > /run/orbsim-machine", "rm -f /run/orbsim-machine; mkdir /run/orbsim-machine"] {
            try await sim.run(["start", "m1"])
            _ = try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", "\(forge); poweroff; sleep 5"])
            let deadline = Date().addingTimeInterval(5)
            while try await sim.state("m1") != "stopped", Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
            await #expect(try sim.state("m1") == "stopped", "after: \(forge)")
        }
    }

    /// A machine's disk goes with it, however deep its directories (a tree deeper than the
    /// emulator's own removal could reach stayed behind after a delete that said it was done).
    @Test func aDeleteRemovesADeepTree() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let key = String(try #require(try await sim.machines().first?["id"] as? String).dropFirst(10))
        let name = String(repeating: "d", count: 60)  // 200 of them: a path far past PATH_MAX
        let deep = "cd /srv; i=0; while [ $i -lt 200 ]; do mkdir \(name) && cd \(name) || break; i=$((i+1)); done; echo left > f"
        try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", deep])
        await #expect(try sim.run(["delete", "-f", "m1"]).exitCode == 0)
        #expect(!FileManager.default.fileExists(atPath: sim.simHome.appendingPathComponent("machines/\(key)").path))
    }

    /// A state file whose ids are not ULIDs (damaged, or forged from inside) is refused, not
    /// turned into paths.
    @Test func aStateWithAForgedIDIsRefused() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let url = sim.simHome.appendingPathComponent("state.json")
        let text = try String(contentsOf: url, encoding: .utf8)
        let id = try #require(try await sim.machines().first?["id"] as? String)
        try Data(text.replacingOccurrences(of: id, with: String(id.prefix(10)) + "../../victim").utf8).write(to: url)
        let out = try await sim.run(["delete", "-f", "m1"])
        #expect(out.exitCode == 1 && out.stderr.contains("not a ULID"), "\(out)")
    }

    /// `/mnt/mac` does not show the emulator's home: no other machine's disk, no state.
    @Test func mntMacHidesTheEmulatorsHome() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "ma"])
        try await sim.run(["create", "ubuntu", "mb"])
        try await sim.run(["run", "-m", "mb", "sh", "-c", "echo secret > ~/secret"])
        let out = try await sim.run([
            "run", "-m", "ma", "sh", "-c",
            "cat /mnt/mac\(sim.simHome.path)/machines/*/root/home/*/secret /mnt/mac\(sim.simHome.path)/state.json 2>/dev/null; echo checked",
        ])
        #expect(out.stdout == "checked\n", "\(out)")
    }

    /// Every machine has its own System V IPC; an isolated one has its own network (loopback only).
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/ipcmk"), "needs util-linux's ipcmk"))
    func ipcIsTheMachinesOwnAndIsolatedMachinesHaveNoNetwork() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        try await sim.run(["create", "--isolated", "ubuntu", "iso"])
        let made = try await SystemProcessRunner.run("/usr/bin/ipcmk", ["-M", "4096"], input: nil, timeout: 10, environment: [:], limit: 4096)
        let shmid = made.stdoutText.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        defer {
            Task { _ = try? await SystemProcessRunner.run("/usr/bin/ipcrm", ["-m", shmid], input: nil, timeout: 10, environment: [:], limit: 4096) }
        }
        let seen = try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", "ipcs -m | grep -c -w '\(shmid)' || true"])
        #expect(seen.stdout == "0\n", "\(seen)")
        let net = try await sim.run(["run", "-m", "iso", "sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"])
        #expect(net.stdout == "lo\n", "\(net)")
    }

    /// A run racing a clone of the same name meets a whole disk or a busy machine, never half a copy.
    @Test func aRunRacingACloneNeverSeesHalfACopy() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "aa"])
        try await sim.run(["run", "-m", "aa", "-u", "root", "sh", "-c", "head -c 20000000 /dev/zero > /opt/big; echo ok > /opt/last"])
        try await sim.run(["stop", "aa"])
        let cloning = Task { try await sim.run(["clone", "aa", "bb"]) }
        var outcomes: Set<String> = []
        for _ in 0..<40 {
            let out = try await sim.run(["run", "-m", "bb", "cat", "/opt/last"])
            if out.stdout == "ok\n" { outcomes.insert("whole"); break }
            if out.stderr.contains("operations are in progress: clone") || out.stderr.contains("machine not found") {
                outcomes.insert("busy")
            } else {
                outcomes.insert("half: \(out)")
            }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        await #expect(try cloning.value.exitCode == 0)
        #expect(outcomes.allSatisfy { $0 == "whole" || $0 == "busy" }, "\(outcomes)")
        await #expect(try sim.run(["run", "-m", "bb", "cat", "/opt/last"]).stdout == "ok\n")
    }
}
