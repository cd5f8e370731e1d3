import Foundation
import ReplCore
import ReplTestSupport
import Testing

@testable import OrbStack

/// The same contract, against the emulator binary and the in-process model.
@Suite(.serialized) struct ContractTests {
    @Test(arguments: Backend.available)
    func spawnReturnsARunningMachineWithAnAddress(_ backend: Backend) async throws {
        let h = try ClientHarness(backend)
        try await h.provider.create(name: h.m("repl-abc123-1-1"), spec: Spec(distro: "ubuntu", version: "jammy", arch: "amd64"))
        await #expect(try h.state(h.n("repl-abc123-1-1")) == "running")
        let address = try await h.provider.address(name: h.m("repl-abc123-1-1"))
        #expect(Conformance.isReal ? address != nil : address == "192.168.139.10")
        let m = try #require(try await h.own(h.provider.list()).first)
        #expect(m.version == "jammy" && m.arch == "amd64")
    }

    /// A create that returned 0 left its machine running: it costs one call, no `info` after it
    /// (#20); a create that met an existing machine adopts it once `info` says it runs.
    @Test(.emulatorOnly) func aCreateCostsOneCall() async throws {
        let h = try ClientHarness()
        _ = try await h.sim(["admin", "calls", "--reset"])
        try await h.provider.create(name: h.m("m1"), spec: .defaultSpec)
        let calls = try JSONSerialization.jsonObject(with: try await h.sim(["admin", "calls", "--json"]).stdout) as? [String: Any]
        #expect(calls?["verbs"] as? [String: Int] == ["create": 1], "\(calls ?? [:])")
        await #expect(try h.state(h.n("m1")) == "running")
        // Adopted: the name exists, so the create fails and info confirms it runs.
        try await h.provider.create(name: h.m("m1"), spec: .defaultSpec)
        let again = try JSONSerialization.jsonObject(with: try await h.sim(["admin", "calls", "--json"]).stdout) as? [String: Any]
        #expect((again?["verbs"] as? [String: Int])?["info"] ?? 0 >= 1, "\(again ?? [:])")
    }

    @Test(arguments: Backend.available)
    func deleteIsIdempotent(_ backend: Backend) async throws {
        let h = try ClientHarness(backend)
        try await h.provider.create(name: h.m("m1"), spec: .defaultSpec)
        try await h.provider.delete(name: h.m("m1"))
        try await h.provider.delete(name: h.m("m1"))
        try await h.provider.delete(name: h.m("gone"))
        #expect(try await h.own(h.provider.list()).isEmpty)
    }

    @Test(arguments: Backend.available)
    func createAdoptsAnExistingMachineOfTheSameName(_ backend: Backend) async throws {
        let h = try ClientHarness(backend)
        try await h.sim(["create", "ubuntu", h.n("m1")])
        try await h.provider.create(name: h.m("m1"), spec: .defaultSpec)
        #expect(try await h.own(h.provider.list()).map(\.name) == [h.n("m1")])
        // Also when the existing one is stopped: it is started.
        try await h.sim(["stop", h.n("m1")])
        try await h.provider.create(name: h.m("m1"), spec: .defaultSpec)
        await #expect(try h.state(h.n("m1")) == "running")
    }

    @Test(arguments: Backend.available)
    func aSnapshotEndsStoppedAndAClonedRunStarts(_ backend: Backend) async throws {
        let h = try ClientHarness(backend)
        try await h.provider.create(name: h.m("src"), spec: .defaultSpec)
        try await h.provider.snapshot(source: h.m("src"), name: h.m("snap"))
        await #expect(try h.state(h.n("snap")) == "stopped")
        try await h.provider.clone(snapshot: h.m("snap"), name: h.m("copy"))
        await #expect(try h.state(h.n("copy")) == "running")
    }

    @Test func listIgnoresUnknownKeysAndRejectsBadOutput() throws {
        let good = #"[{"id":"01KTK0Z32XA8Y4R8MVY2F4TZKN","name":"a","state":"running","future":{"x":1},"image":{"arch":"arm64"}}]"#
        let machines = try OrbctlClient.decodeList(Data(good.utf8))
        #expect(machines.map(\.name) == ["a"] && machines[0].arch == "arm64")
        #expect(try OrbctlClient.decodeList(Data("[]\n".utf8)).isEmpty)
        let bad = [
            "null", "", "garbage", "{}", #"[{"name":"a","state":"running"}]"#, #"[{"id":"x","name":"a"}]"#,
            #"[{"id":"x","name":"a","state":"running"},{"id":"x","name":"b","state":"running"}]"#, "[1]",
        ]
        for text in bad {
            #expect(throws: ProviderError.self, "accepted \(text)") { try OrbctlClient.decodeList(Data(text.utf8)) }
            do { _ = try OrbctlClient.decodeList(Data(text.utf8)) } catch { #expect(error.kind == .malformedOutput) }
        }
    }

    /// Each kind of bad list is said as what it is, and a field of another type is absent.
    @Test(arguments: [
        ("null", "orbctl list printed null instead of a list of machines"),
        ("{}", "orbctl list printed a non-array instead of a list of machines"),
        ("\"x\"", "orbctl list printed a non-array instead of a list of machines"),
        ("garbage", "orbctl list printed something that is not JSON: \"garbage\""),
        ("[1]", "orbctl list: record 0 is not an object"),
        (#"[{"id":"a","name":"a","state":"running"},[]]"#, "orbctl list: record 1 is not an object"),
        (#"[{"id":5,"name":"a","state":"running"}]"#, "orbctl list: record 0 lacks id, name or state"),
        (#"[{"id":"","name":"a","state":"running"}]"#, "orbctl list: record 0 lacks id, name or state"),
        (#"[{"id":"x","name":"a","state":"running"},{"id":"x","name":"b","state":"stopped"}]"#, "orbctl list: id x appears twice"),
    ])
    func aBadListSaysWhatIsWrong(_ text: String, _ message: String) {
        do {
            let machines = try OrbctlClient.decodeList(Data(text.utf8))
            Issue.record("accepted \(text): \(machines)")
        } catch {
            #expect(error.kind == .malformedOutput && error.message == message)
        }
    }

    @Test func aListRecordsFieldsOfAnotherTypeReadAsAbsent() throws {
        let text =
            #"[{"id":"01KTK0Z32XA8Y4R8MVY2F4TZKN","name":"a","state":"stopped","image":"ubuntu"},"#
            + #"{"id":"01KTK0Z32XA8Y4R8MVY2F4TZKP","name":"b","state":"running","image":{"distro":"debian","version":12,"arch":"arm64"}}]"#
        let machines = try OrbctlClient.decodeList(Data(text.utf8))
        #expect(machines.map(\.name) == ["a", "b"] && machines.map(\.state) == [.stopped, .running])
        #expect(machines[0].distro == "" && machines[1].distro == "debian" && machines[1].version == "" && machines[1].arch == "arm64")
    }

    /// Each step of address discovery, by forcing the earlier ones to fail.
    @Test(.emulatorOnly, .machineCommands)
    func addressDiscoveryFallsBackStepByStep() async throws {
        let h = try ClientHarness()
        try await h.provider.create(name: h.m("m1"), spec: .defaultSpec)
        #expect(try await h.client.address(h.n("m1"), resolve: { _ in nil }) == "192.168.139.10")  // 1: info's ip4
        try await h.sim(["admin", "fail", "info"])
        // 2: DNS
        let dns = "\(h.n("m1")).orb.local"
        #expect(try await h.client.address(h.n("m1"), resolve: { host in host == dns ? "10.9.8.7" : nil }) == "10.9.8.7")
        try await h.sim(["admin", "fail", "info"])
        #expect(try await h.client.address(h.n("m1"), resolve: { _ in nil }) == "192.168.139.10")  // 3: hostname -I
    }

    @Test func versionIsParsedAndGarbageRefused() async throws {
        let h = try ClientHarness()
        let version = try await h.client.version()
        #expect(Conformance.isReal || version == OrbctlVersion(output: "Version: 2.2.3 (2020300)\n"))
        #expect(OrbctlVersion(output: "Version: 2.2.3 (2020300)\nCommit: x (v2.2.3)")?.number == 2_020_300)
        #expect(OrbctlVersion(output: "orbctl something else") == nil)
    }
}

/// Faults injected through the emulator's admin interface.
@Suite(.serialized) struct FaultTests {
    @Test(.emulatorOnly) func aFailingListRaisesAndIsNeverEmpty() async throws {
        let h = try ClientHarness()
        try await h.sim(["create", "ubuntu", "m1"])
        try await h.sim(["admin", "fail", "list"])
        await #expect(throws: ProviderError.self) { try await h.provider.list() }
        #expect(try await h.provider.list().count == 1)
    }

    @Test(.emulatorOnly) func aHangingCallIsKilledAtItsTimeout() async throws {
        let h = try ClientHarness()
        var client = h.client
        client.timeouts.quick = 0.5
        try await h.sim(["admin", "hang", "list"])
        let start = Date()
        do {
            _ = try await client.list()
            Issue.record("a hung list returned")
        } catch {
            #expect(error.kind == .timedOut)
            #expect(error.description.contains("did not answer within"))
        }
        #expect(Date().timeIntervalSince(start) < 30)  // it hangs for ever otherwise; a loaded machine wakes late
    }

    @Test(.emulatorOnly) func exhaustionIsRecognisedWithTheResetAdvice() async throws {
        let h = try ClientHarness()
        try await h.sim(["admin", "ip-pool", "1"])
        try await h.provider.create(name: h.m("m1"), spec: .defaultSpec)
        do {
            try await h.provider.create(name: h.m("m2"), spec: .defaultSpec)
            Issue.record("no exhaustion")
        } catch {
            #expect(error.kind == .addressExhausted && !error.isRetryable)
            #expect(error.description.contains("bash scaffold/scripts/orbstack-reset-networking.sh"))
        }
    }

    @Test func aMissingOrbctlGivesTheInstallAdvice() async throws {
        let client = OrbctlClient(command: OrbctlCommand(executable: "/nonexistent/orbctl"))
        do {
            _ = try await client.version()
            Issue.record("no error")
        } catch {
            #expect(error.kind == .unavailable)
            #expect(error.description.contains("https://orbstack.dev"))
        }
        #expect(OrbctlCommand.locate(path: "/nonexistent", fallbacks: []) == nil)
    }

    /// cron and launchd start with PATH=/usr/bin:/bin; OrbStack without its admin setup puts
    /// orbctl only in ~/.orbstack/bin.
    @Test func orbctlIsFoundInOrbStacksOwnDirectoryOffPath() throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("orbhome-\(UUID().uuidString)")
        let bin = home.appendingPathComponent(".orbstack/bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: home) }
        FileManager.default.createFile(
            atPath: bin.appendingPathComponent("orbctl").path, contents: Data("#!/bin/sh\n".utf8),
            attributes: [.posixPermissions: 0o755])
        let found = OrbctlCommand.locate(path: "/usr/bin:/bin", fallbacks: OrbctlCommand.installDirectories(home: home.path))
        #expect(found == OrbctlCommand(executable: bin.appendingPathComponent("orbctl").path))
        #expect(OrbctlCommand.installDirectories(home: "/Users/u") == ["/Users/u/.orbstack/bin", "/usr/local/bin", "/opt/homebrew/bin"])
    }

    @Test func insideAMachineMacOrbctlIsUsed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("macbin-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        FileManager.default.createFile(
            atPath: dir.appendingPathComponent("mac").path, contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755])
        #expect(
            OrbctlCommand.locate(path: dir.path, fallbacks: [])
                == OrbctlCommand(executable: dir.appendingPathComponent("mac").path, prefix: ["orbctl"]))
    }
}

/// The in-machine wrapper, run for real in the emulator.
@Suite(.serialized) struct WrapperTests {
    static let hostile = "it's \"quoted\" $(echo SUBST) `echo TICK` \\n ünïcødé ✓\nsecond line"

    func waitForStatus(_ h: ClientHarness, _ name: String, until: (ProbeResult) -> Bool, seconds: Double = 20) async throws -> ProbeResult {
        let deadline = Date().addingTimeInterval(seconds)
        var last = ProbeResult.unreadable("never read")
        while Date() < deadline {
            last = try await h.provider.probe(name: h.m(name))
            if until(last) { return last }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        return last
    }

    @Test(.machineCommands)
    func statusGoesRunningThenExitedWithTheCommandsCode() async throws {
        let h = try ClientHarness()
        try await h.provider.create(name: h.m("m1"), spec: .defaultSpec)
        // The command waits for a go-ahead, so the first read cannot race its end.
        let payload = RunPayload(
            command: "while [ ! -e /tmp/go ]; do sleep 0.05; done; echo done; exit 7", bootstrap: nil, env: [:],
            remaining: 60, hold: 0, manifestYAML: "kind: Run\nname: x\n")
        try await h.provider.startRun(name: h.m("m1"), payload: payload)
        let first = try await h.provider.probe(name: h.m("m1"))
        #expect(first == .running || first == .bootstrapping, "first status read: \(first)")
        _ = try await h.client.run(h.n("m1"), user: "root", ["touch", "/tmp/go"])
        let final = try await waitForStatus(h, h.n("m1")) { if case .exited = $0 { return true } else { return false } }
        #expect(final == .exited(7))
        #expect(String(decoding: try await h.provider.logs(name: h.m("m1"), bootstrap: false, from: 0), as: UTF8.self) == "done\n")
    }

    @Test(.machineCommands)
    func commandBootstrapAndEnvArriveByteForByte() async throws {
        let h = try ClientHarness()
        try await h.provider.create(name: h.m("m1"), spec: .defaultSpec)
        let payload = RunPayload(
            command: "printf '%s' \"$HOSTILE\"; printf '\\n---\\n'; cat /tmp/from-bootstrap",
            bootstrap: "printf '%s' '\(Self.hostile.replacingOccurrences(of: "'", with: "'\\''"))' > /tmp/from-bootstrap",
            env: ["HOSTILE": Self.hostile], remaining: nil, hold: 0, manifestYAML: "x")
        try await h.provider.startRun(name: h.m("m1"), payload: payload)
        _ = try await waitForStatus(h, h.n("m1")) { if case .exited = $0 { return true } else { return false } }
        let log = String(decoding: try await h.provider.logs(name: h.m("m1"), bootstrap: false, from: 0), as: UTF8.self)
        #expect(log == Self.hostile + "\n---\n" + Self.hostile)
    }

    @Test(.machineCommands)
    func aFailingBootstrapIsLoggedAndTheCommandStillRuns() async throws {
        let h = try ClientHarness()
        try await h.provider.create(name: h.m("m1"), spec: .defaultSpec)
        let payload = RunPayload(command: "echo ran", bootstrap: "echo setting up; exit 3", env: [:], remaining: nil, hold: 0, manifestYAML: "x")
        try await h.provider.startRun(name: h.m("m1"), payload: payload)
        let final = try await waitForStatus(h, h.n("m1")) { if case .exited = $0 { return true } else { return false } }
        #expect(final == .exited(0))
        let boot = String(decoding: try await h.provider.logs(name: h.m("m1"), bootstrap: true, from: 0), as: UTF8.self)
        #expect(boot == "setting up\nrepl: bootstrap exited 3 (not fatal: the command still runs)\n")
    }

    @Test(.machineCommands)
    func aCommandPastItsDeadlineIsTimedOutAndTheMachinePowersOff() async throws {
        let h = try ClientHarness()
        try await h.provider.create(name: h.m("m1"), spec: .defaultSpec)
        // The switch fires 12 s after the deadline, well after the probe below has read `timedout`
        // even on a loaded machine (4 s, then 8 s, were once too little under a parallel load): a
        // probe (`orbctl run`) of a machine already powered off would start it again.
        let payload = RunPayload(command: "sleep 60", bootstrap: nil, env: [:], remaining: 1, hold: 0, manifestYAML: "x", deadlineMargin: 12)
        try await h.provider.startRun(name: h.m("m1"), payload: payload)
        let final = try await waitForStatus(h, h.n("m1")) { $0 == .timedOut }
        #expect(final == .timedOut)
        // The dead man's switch: a few seconds after the deadline the machine stops itself.
        let deadline = Date().addingTimeInterval(30)
        while try await h.state(h.n("m1")) != "stopped", Date() < deadline { try await Task.sleep(nanoseconds: 100_000_000) }
        await #expect(try h.state(h.n("m1")) == "stopped")
    }

    /// The manifest's env reaches the command alone, byte for byte: names the wrapper uses
    /// itself (`PATH`, `R`, `T0`, `SH`) cannot break it, and trailing newlines survive (#15).
    @Test(.machineCommands) func envCannotBreakTheWrapperAndArrivesByteForByte() async throws {
        let h = try ClientHarness()
        try await h.provider.create(name: h.m("m1"), spec: .defaultSpec)
        let env = ["PATH": "/opt/mytools/bin", "R": "/srv/data", "T0": "0", "SH": "nonsense", "VAL": "two\n\n"]
        let command = "printf '%s|%s|%s|%s|' \"$PATH\" \"$R\" \"$T0\" \"$SH\"; printf '%s' \"$VAL\" | /usr/bin/wc -c"
        let payload = RunPayload(command: command, bootstrap: nil, env: env, remaining: 60, hold: 0, manifestYAML: "x")
        try await h.provider.startRun(name: h.m("m1"), payload: payload)
        let final = try await waitForStatus(h, h.n("m1")) { if case .exited = $0 { return true } else { return false } }
        #expect(final == .exited(0))
        let log = String(decoding: try await h.provider.logs(name: h.m("m1"), bootstrap: false, from: 0), as: UTF8.self)
        #expect(log == "/opt/mytools/bin|/srv/data|0|nonsense|5\n")
    }

    @Test func theWrapperEmbedsTextOnlyAsBase64() {
        let payload = RunPayload(
            command: "rm -rf / # $(evil)", bootstrap: "`evil`", env: ["K": "'; evil; '"], remaining: 5, hold: 0, manifestYAML: "m")
        let script = RunWrapper.script(payload)
        #expect(!script.contains("evil"))
        #expect(!script.contains("/usr/sbin/poweroff") && !script.contains("/sbin/poweroff"))
        #expect(script.contains("poweroff"))
    }
}
