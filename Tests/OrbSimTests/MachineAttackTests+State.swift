import Foundation
import ReplPlatform
import ReplTestSupport
import Testing

@testable import OrbSim

/// The emulator attacked, continued: its own state, the kernel's calls, devices, shims and copies.
extension MachineAttackTests {
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
