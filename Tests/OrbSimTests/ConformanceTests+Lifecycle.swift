import Foundation
import ReplCore
import ReplTestSupport
import Testing

@testable import OrbSim

/// ORBCTL.md's statements, continued: names taken, start, stop, delete, clone, rename, run,
/// files, config and the states a machine passes through.
extension ConformanceTests {
    // "Name taken on create: `[-32098] create 'NAME': machine already exists: 'NAME'`; on clone:
    //  `machine already exists: 'NAME'`; on rename: `machine '"NAME"' already exists`"
    @Test func nameTaken() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        try await sim.run(["create", "ubuntu", "m2"])
        await #expect(try sim.run(["create", "ubuntu", "m1"]).stderr == "[-32098] create 'm1': machine already exists: 'm1'\n")
        await #expect(try sim.run(["clone", "m1", "m2"]).stderr == "[-32098] machine already exists: 'm2'\n")
        await #expect(try sim.run(["rename", "m1", "m2"]).stderr == "[-32098] machine '\"m2\"' already exists\n")
    }

    // "starting a running machine or stopping a stopped one is a no-op with exit 0"
    @Test func startAndStopAreIdempotent() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        await #expect(try sim.run(["start", "m1"]).exitCode == 0)
        await #expect(try sim.state("m1") == "running")
        await #expect(try sim.run(["stop", "m1"]).exitCode == 0)
        await #expect(try sim.run(["stop", "m1"]).exitCode == 0)
        await #expect(try sim.state("m1") == "stopped")
        await #expect(try sim.run(["restart", "m1"]).exitCode == 0)
        await #expect(try sim.state("m1") == "running")
    }

    // "**`orbctl stop` with no name stops all of OrbStack**"
    @Test(.emulatorOnly) func bareStopStopsEverything() async throws {
        let sim = try SimHarness()
        for n in ["m1", "m2", "m3"] { try await sim.run(["create", "ubuntu", n]) }
        await #expect(try sim.run(["stop"]).exitCode == 0)
        await #expect(try sim.machines().allSatisfy { $0["state"] as? String == "stopped" })
    }

    // "`orbctl delete [-f] NAME…`: resolves every argument before deleting any; … no argument → `Error: no machines specified`"
    @Test func deleteResolvesFirst() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let out = try await sim.run(["delete", "-f", "m1", "ghost"])
        #expect(out.exitCode == 1 && out.stderr == "[-32098] machine not found: 'ghost'\n")
        await #expect(try sim.machines().count == 1)
        let none = try await sim.run(["delete", "-f"])
        #expect(none.exitCode == 1 && none.stderr.hasPrefix("Error: no machines specified\n"))
        await #expect(try sim.run(["delete", "-f", "m1"]).exitCode == 0)
        await #expect(try sim.machines().isEmpty)
    }

    // "**Delete by ID crashes (SIGSEGV) on 2.2.3; delete by name works**"
    @Test func deleteByIDCrashes() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let id = try await #require(try sim.machines().first?["id"] as? String)
        let out = try await sim.run(["delete", "-f", id])
        #expect(out.exitCode != 0 && out.exitCode != 1)
        #expect(out.stderr.contains("SIGSEGV"))
        await #expect(try sim.machines().count == 1)
    }

    // "`orbctl clone SOURCE NEW`: exactly two arguments; a running source may be cloned …; the new machine is **stopped**
    //  and keeps the source's settings"
    @Test func cloneIsStoppedAndKeepsSettings() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "-a", "amd64", "ubuntu:jammy", "src"])
        await #expect(try sim.run(["clone", "src", "copy"]).exitCode == 0)
        let copy = try await #require(try sim.machines().first { $0["name"] as? String == "copy" })
        #expect(copy["state"] as? String == "stopped")
        #expect((copy["image"] as? [String: Any])?["version"] as? String == "jammy")
        #expect((copy["image"] as? [String: Any])?["arch"] as? String == "amd64")
        await #expect(try sim.state("src") == "running")
        await #expect(try sim.run(["clone", "a", "b", "c"]).stderr.hasPrefix("Error: accepts 2 arg(s), received 3"))
    }

    // "while a machine is being cloned, starting or renaming it fails with `cannot start: operations are in progress: clone`"
    @Test(.emulatorOnly) func busyDuringClone() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "src"])
        try await sim.run(["stop", "src"])
        try await sim.run(["admin", "latency", "clone", "3000"])
        let cloning = Task { _ = try? await sim.run(["clone", "src", "copy"]) }
        // The copy is listed from the moment the clone begins.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, try await !sim.machines().contains(where: { $0["name"] as? String == "copy" }) {
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        let out = try await sim.run(["start", "src"])
        #expect(out.exitCode == 1)
        #expect(out.stderr == "[-32098] cannot start: operations are in progress: clone\n")
        _ = await cloning.value
        await #expect(try sim.run(["start", "src"]).exitCode == 0)
    }

    // "`orbctl rename OLD|ID NEW`: the id stays the same"
    @Test func renameKeepsTheID() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "old"])
        let id = try await sim.machines().first?["id"] as? String
        await #expect(try sim.run(["rename", "old", "new"]).exitCode == 0)
        let m = try await #require(try sim.machines().first)
        #expect(m["name"] as? String == "new" && m["id"] as? String == id)
    }

    // "flags are parsed up to the first word that does not start with `-` and everything after goes to the command
    //  verbatim; an unknown dash word before the command, `--` included, fails with `unknown flag X`. The exit code is the command's."
    @Test(.machineCommands) func runFlagParsing()
        async throws
    {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        await #expect(try sim.run(["run", "-m", "m1", "echo", "-m", "x", "--", "-u"]).stdout == "-m x -- -u\n")
        let dashdash = try await sim.run(["run", "-m", "m1", "--", "echo", "hi"])
        #expect(dashdash.exitCode == 1 && dashdash.stderr.hasPrefix("Error: unknown flag: --\n"))
        let unknown = try await sim.run(["run", "-x", "echo"])
        #expect(unknown.exitCode == 1 && unknown.stderr.hasPrefix("Error: unknown flag: -x\n"))
        await #expect(try sim.run(["run", "-m", "m1", "sh", "-c", "exit 7"]).exitCode == 7)
        await #expect(try sim.run(["exec", "--machine=m1", "true"]).exitCode == 0)
    }

    @Test(.machineCommands)
    func runPassesStandardInput() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let input = "line one\nline 'two' $(x) `y` ü\n"
        await #expect(try sim.run(["run", "-m", "m1", "cat"], stdin: input).stdout == input)
    }

    // "A stopped machine is started first."
    @Test(.machineCommands)
    func runStartsAStoppedMachine() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        try await sim.run(["stop", "m1"])
        await #expect(try sim.run(["run", "-m", "m1", "true"]).exitCode == 0)
        await #expect(try sim.state("m1") == "running")
    }

    // "`orbctl push|pull [-m M] SRC… [DST]`: guest paths are relative to the guest user's home"
    @Test(.machineCommands) func pushAndPull()
        async throws
    {
        let sim = try SimHarness()
        try await sim.run(["create", "-u", "dev", "ubuntu", "m1"])
        let file = sim.home.appendingPathComponent("hello.txt")
        try "hi there\n".write(to: file, atomically: true, encoding: .utf8)
        await #expect(try sim.run(["push", "-m", "m1", file.path]).exitCode == 0)
        await #expect(try sim.run(["run", "-m", "m1", "cat", "hello.txt"]).stdout == "hi there\n")
        let back = sim.home.appendingPathComponent("back")
        try FileManager.default.createDirectory(at: back, withIntermediateDirectories: true)
        await #expect(try sim.run(["pull", "-m", "m1", "hello.txt", back.path]).exitCode == 0)
        #expect(try String(contentsOf: back.appendingPathComponent("hello.txt"), encoding: .utf8) == "hi there\n")
    }

    // "`config get KEY` prints the value, `config set KEY VALUE`: `network.subnet4` must be an IPv4 /23; per-machine keys
    //  `machine.NAME.{cpu,memory_mib,disk_bytes,…}` are addressed by name; unknown key → `Unknown configuration key: K`, exit 1"
    @Test(.emulatorOnly) func config() async throws {
        let sim = try SimHarness()
        await #expect(try sim.run(["config", "get", "network.subnet4"]).stdout == "192.168.138.0/23\n")
        await #expect(try sim.run(["config", "set", "network.subnet4", "10.0.0.0/24"]).exitCode == 1)
        await #expect(try sim.run(["config", "set", "network.subnet4", "10.20.0.0/23"]).exitCode == 0)
        await #expect(try sim.run(["config", "get", "network.subnet4"]).stdout == "10.20.0.0/23\n")
        try await sim.run(["create", "ubuntu", "m1"])
        await #expect(try sim.run(["info", "m1", "-f", "json"]).stdout.contains("\"ip4\": \"10.20.1.10\""))
        await #expect(try sim.run(["config", "set", "machine.m1.cpu", "4"]).exitCode == 0)
        await #expect(try sim.run(["config", "get", "machine.m1.cpu"]).stdout == "4\n")
        let unknown = try await sim.run(["config", "get", "bogus.key"])
        #expect(unknown.exitCode == 1 && unknown.stderr == "Unknown configuration key: bogus.key\n")
    }

    // "Address exhaustion: `[-32098] create 'NAME': setup: machine didn't start in 30s (missing IP address)`"
    // and "it waits up to 30 s for an address, else fails … and removes the half-made machine"
    @Test(.emulatorOnly) func exhaustionText() async throws {
        let sim = try SimHarness()
        try await sim.run(["admin", "ip-pool", "1"])
        try await sim.run(["create", "ubuntu", "m1"])
        let out = try await sim.run(["create", "ubuntu", "m2"])
        #expect(out.exitCode == 1)
        #expect(out.stderr == "[-32098] create 'm2': setup: machine didn't start in 30s (missing IP address)\n")
        await #expect(try sim.machines().map { $0["name"] as? String } == ["m1"])
    }

    // "States: `creating`, `starting`, `running`, `stopping`, `stopped`, `deleting`" — a machine being
    // created is `starting` to other callers until its boot time has passed, with no daemon.
    @Test(.emulatorOnly) func statesAdvanceWithTime() async throws {
        let sim = try SimHarness()
        try await sim.run(["admin", "latency", "create", "3000"])
        let start = Date()
        let creating = Task { _ = try? await sim.run(["create", "ubuntu", "m1"]) }
        // The boot ends 3 s after the create began, so no sooner than 3 s after `start`: a state
        // read that ended before then must say `starting`. A loaded machine may be later than
        // that, and then there is nothing to assert about the early state.
        var state: String?
        while state == nil && Date().timeIntervalSince(start) < 30 {
            state = try await sim.state("m1")
            if state == nil { try await Task.sleep(nanoseconds: 50_000_000) }
        }
        if Date().timeIntervalSince(start) < 3 { #expect(state == "starting") }
        while state != "running" && Date().timeIntervalSince(start) < 60 {
            try await Task.sleep(nanoseconds: 100_000_000)
            state = try await sim.state("m1")
        }
        #expect(state == "running")
        #expect(Date().timeIntervalSince(start) >= 3)
        _ = await creating.value
    }

    // The in-process model and the binary are one model: what one writes, the other reads.
    @Test(.emulatorOnly) func inProcessAndBinaryShareTheModel() async throws {
        let sim = try SimHarness()
        #expect(try sim.inProcess(["create", "ubuntu", "inproc"]).exitCode == 0)
        await #expect(try sim.run(["list", "-q"]).stdout == "inproc\n")
        try await sim.run(["create", "ubuntu", "binary"])
        #expect(try sim.inProcess(["list", "-q"]).stdout == "binary\ninproc\n")
        #expect(try sim.inProcess(["info", "ghost"]).stderr == "[-32098] machine not found: 'ghost'\n")
    }
}
