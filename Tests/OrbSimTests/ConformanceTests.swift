import Foundation
import ReplCore
import ReplTestSupport
import Testing

@testable import OrbSim

/// One test per statement of ORBCTL.md the emulator models; each quotes the line it checks.
@Suite(.serialized) struct ConformanceTests {
    // "Errors from the daemon print on stderr as `[-32098] <message>` and exit 1"
    // "Not found (info, start, stop, delete, clone, rename, run -m): `[-32098] machine not found: 'NAME'`, exit 1"
    @Test(arguments: [
        ["info", "ghost"], ["start", "ghost"], ["stop", "ghost"], ["delete", "-f", "ghost"],
        ["clone", "ghost", "x2"], ["rename", "ghost", "x2"], ["run", "-m", "ghost", "true"],
    ])
    func notFound(_ args: [String]) async throws {
        let sim = try SimHarness()
        let out = try await sim.run(args)
        #expect(out.exitCode == 1)
        #expect(out.stderr == "[-32098] machine not found: 'ghost'\n")
        #expect(out.stdout == "")
    }

    // "Argument errors print `Error: <message>` plus usage, exit 1"
    @Test func argumentErrors() async throws {
        let sim = try SimHarness()
        let out = try await sim.run(["clone", "onlyone"])
        #expect(out.exitCode == 1)
        #expect(out.stderr.hasPrefix("Error: accepts 2 arg(s), received 1\nUsage:\n  orbctl clone"))
    }

    // "Successful create/start/stop/delete/clone/rename print nothing when stdout is not a terminal"
    @Test func silentWhenNotATerminal() async throws {
        let sim = try SimHarness()
        for args in [
            ["create", "ubuntu", "m1"], ["stop", "m1"], ["start", "m1"], ["clone", "m1", "m2"],
            ["rename", "m2", "m3"], ["delete", "-f", "m3"],
        ] {
            let out = try await sim.run(args)
            #expect(out.exitCode == 0, "\(args): \(out)")
            #expect(out.stdout.isEmpty && out.stderr.isEmpty, "\(args) printed \(out)")
        }
    }

    // "Without `HOME` in the environment orbctl panics (`$HOME is not defined`) and exits non-zero"
    @Test func panicsWithoutHome() async throws {
        let sim = try SimHarness()
        sim.environment["HOME"] = nil
        let out = try await sim.run(["list"])
        #expect(out.exitCode != 0)
        #expect(out.stderr.contains("$HOME is not defined"))
    }

    // "`orbctl version` → two lines: `Version: 2.2.3 (2020300)` and `Commit: <sha> (v2.2.3)`;
    //  the number is major·10⁶ + minor·10⁴ + patch·100"
    @Test func version() async throws {
        let out = try await SimHarness().run(["version"])
        let lines = out.stdout.split(separator: "\n")
        #expect(lines.count == 2)
        let version = try #require(lines.first?.wholeMatch(of: /Version: (\d+)\.(\d+)\.(\d+) \((\d+)\)/), "\(out)")
        let (major, minor, patch) = (Int(version.output.1)!, Int(version.output.2)!, Int(version.output.3)!)
        #expect(Int(version.output.4) == major * 1_000_000 + minor * 10_000 + patch * 100)
        #expect(lines[1].wholeMatch(of: /Commit: [0-9a-f]{40} \(v\d+\.\d+\.\d+\)/) != nil)
        if !Conformance.isReal { #expect(lines[0] == "Version: 2.2.3 (2020300)") }
    }

    // "`orbctl status` → `Running` (exit 0)"
    @Test func status() async throws {
        let out = try await SimHarness().run(["status"])
        #expect(out.exitCode == 0 && out.stdout == "Running\n")
    }

    // "JSON is an array of records, 2-space indented, trailing newline, `[]` when empty (never `null`)."
    @Test func listJSONWhenEmpty() async throws {
        let out = try await SimHarness().run(["list", "--format", "json"])
        #expect(out.stdout == "[]\n")
    }

    // "Field order `id`, `name`, `image`, `config`, `builtin`, `state`" and "(The real output puts every field on its own line.)"
    @Test func listJSONRecordShape() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "-a", "amd64", "ubuntu:jammy", "m1"])
        let out = try await sim.run(["list", "-f", "json"])
        let expectedKeys = [
            "id", "name", "image", "distro", "version", "arch", "variant", "config", "isolated",
            "forward_ssh_agent", "isolate_network", "default_username", "http_port", "https_port", "builtin", "state",
        ]
        let keys = out.stdout.matches(of: #/"([a-z_0-9]+)": /#).map { String($0.output.1) }
        #expect(keys == expectedKeys)
        #expect(out.stdout.hasPrefix("[\n  {\n    \"id\": \""))
        #expect(out.stdout.hasSuffix("  }\n]\n"))
        #expect(
            out.stdout.contains(
                "\"image\": {\n      \"distro\": \"ubuntu\",\n      \"version\": \"jammy\",\n      \"arch\": \"amd64\",\n      \"variant\": \"default\"\n    },"
            ))
        #expect(out.stdout.contains("\"builtin\": false,\n    \"state\": \"running\"\n"))
    }

    // "The `id` is a ULID: its first 10 characters (Crockford base 32) are the creation time in Unix milliseconds"
    @Test func idsAreULIDsCarryingTheCreationTime() async throws {
        let sim = try SimHarness()
        let before = Date()
        try await sim.run(["create", "ubuntu", "m1"])
        let id = try await #require(try sim.machines().first?["id"] as? String)
        let created = try #require(ULID.timestamp(of: id))
        #expect(abs(created.timeIntervalSince(before)) < 5)
    }

    // "`-q` prints names only. Text columns `NAME STATE DISTRO VERSION ARCH SIZE IP`, header only on a TTY.
    //  Any other format: `invalid format: X`."
    @Test func listTextQuietAndFormats() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "bravo"])
        try await sim.run(["create", "ubuntu:24.04", "alpha"])
        await #expect(try sim.run(["list", "-q"]).stdout == "alpha\nbravo\n")
        let text = try await sim.run(["list"]).stdout
        #expect(!text.contains("NAME"))
        #expect(
            text.split(separator: "\n").first?.split(separator: " ", omittingEmptySubsequences: true).prefix(5)
                == ["alpha", "running", "ubuntu", "noble", Substring(Spec.hostArch)])
        let bad = try await sim.run(["list", "--format", "yaml"])
        #expect(bad.exitCode == 1 && bad.stderr == "invalid format: yaml\n")
        try await sim.run(["stop", "alpha"])
        await #expect(try sim.run(["list", "--running", "-q"]).stdout == "bravo\n")
    }

    // "`orbctl info ID|NAME [-f|--format json]` → `{"record": {…}, "disk_size": N, "ip4": "…", "ip6": "…"}`;
    //  `ip4`/`ip6` are left out when the machine has none (stopped)"
    @Test func infoJSON() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let running = try await sim.run(["info", "m1", "--format", "json"]).stdout
        let keys = running.matches(of: #/\n  "([a-z_0-9]+)": /#).map { String($0.output.1) }
        #expect(keys == ["record", "disk_size", "ip4", "ip6"])
        #expect(running.contains(Conformance.isReal ? "\"ip4\": \"" : "\"ip4\": \"192.168.139.10\""))
        let id = try await #require(try sim.machines().first?["id"] as? String)
        await #expect(try sim.run(["info", id, "-f", "json"]).stdout == running)  // by id too
        try await sim.run(["stop", "m1"])
        let stopped = try await sim.run(["info", "m1", "--format", "json"]).stdout
        #expect(!stopped.contains("ip4") && !stopped.contains("ip6"))
    }

    // "create … blocks until the machine has started and is left running" and "The name defaults to the distro."
    // "Numeric versions are stored as codenames (`ubuntu:24.04` shows as `noble`)"
    @Test(.emulatorOnly) func createBlocksNamesAndCodenames() async throws {
        let sim = try SimHarness()
        try await sim.run(["admin", "latency", "create", "300"])
        let start = Date()
        let out = try await sim.run(["create", "ubuntu:24.04"])
        #expect(out.exitCode == 0)
        #expect(Date().timeIntervalSince(start) >= 0.3)
        let m = try await #require(try sim.machines().first)
        #expect(m["name"] as? String == "ubuntu")
        #expect((m["image"] as? [String: Any])?["version"] as? String == "noble")
        #expect(m["state"] as? String == "running")
    }

    // Flags anywhere: cobra parses `-a` after the positional arguments too.
    @Test func createFlagsAnywhere() async throws {
        let sim = try SimHarness()
        await #expect(try sim.run(["create", "ubuntu:jammy", "m1", "-a", "amd64"]).exitCode == 0)
        await #expect(try sim.run(["create", "--arch=arm64", "ubuntu", "m2"]).exitCode == 0)
        let arches = try await sim.machines().map { ($0["image"] as? [String: Any])?["arch"] as? String }
        #expect(arches == ["amd64", "arm64"])
    }

    // "Bad distro / arch: `invalid distro: X` / `invalid architecture: X`"
    @Test func badDistroAndArch() async throws {
        let sim = try SimHarness()
        let distro = try await sim.run(["create", "windows", "m1"])
        #expect(distro.exitCode == 1 && distro.stderr == "invalid distro: windows\n")
        let arch = try await sim.run(["create", "-a", "riscv64", "ubuntu", "m1"])
        #expect(arch.exitCode == 1 && arch.stderr == "invalid architecture: riscv64\n")
    }

    // Distros and versions as OrbStack's source lists them (ReplCore's `Distro.all`, with its
    // sources): a distro's default version, numeric versions as codenames, a version the image
    // index lacks fails, and distros without a cloud image refuse user data.
    @Test func distrosVersionsAndCloudImages() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "debian", "deb"])
        try await sim.run(["create", "fedora:41", "fed"])
        try await sim.run(["create", "ubuntu:25.04", "ubu"])
        let listed = try JSONSerialization.jsonObject(with: Data(try await sim.run(["list", "-f", "json"]).stdout.utf8)) as? [[String: Any]] ?? []
        let versions = Dictionary(uniqueKeysWithValues: listed.map { ($0["name"] as! String, ($0["image"] as! [String: Any])["version"] as! String) })
        #expect(versions == ["deb": "bookworm", "fed": "41", "ubu": "plucky"])
        let gone = try await sim.run(["create", "ubuntu:focal", "old"])
        #expect(gone.exitCode == 1 && gone.stderr == "[-32098] create 'old': image not found\n")
        let userData = sim.home.appendingPathComponent("ud.yaml")
        try "#cloud-config\n".write(to: userData, atomically: true, encoding: .utf8)
        let noCloud = try await sim.run(["create", "-c", userData.path, "arch", "arc"])
        #expect(noCloud.exitCode == 1 && noCloud.stderr == "[-32098] create 'arc': cloud-init not supported for 'arch'\n")
        await #expect(try sim.run(["list", "-q"]).stdout == "deb\nfed\nubu\n")  // nothing half-made
    }

    // "Per-machine CPU, memory and disk limits arrived in 2.2.0"; isolated machines in 2.1.0: an
    // older orbctl does not know the flags (`admin version` emulates one).
    @Test(.enabled(if: !Conformance.isReal, "emulates an older OrbStack")) func olderOrbStackLacksNewerCreateFlags() async throws {
        let sim = try SimHarness()
        try await sim.run(["admin", "version", "2.1.4"])
        await #expect(try sim.run(["version"]).stdout.hasPrefix("Version: 2.1.4 (2010400)\n"))
        let cpus = try await sim.run(["create", "--cpus", "2", "ubuntu", "m1"])
        #expect(cpus.exitCode == 1 && cpus.stderr.hasPrefix("Error: unknown flag: --cpus\n"), "\(cpus.stderr)")
        await #expect(try sim.run(["create", "--isolated", "ubuntu", "m1"]).exitCode == 0)
        try await sim.run(["admin", "version", "2.0.5"])
        let isolated = try await sim.run(["create", "--isolated", "ubuntu", "m2"])
        #expect(isolated.exitCode == 1 && isolated.stderr.hasPrefix("Error: unknown flag: --isolated\n"), "\(isolated.stderr)")
    }

    // "Names must match `^[a-zA-Z0-9][a-zA-Z0-9-.]+$` (two characters at least, no `_`);
    //  reserved: `default vm host services gateway k8s docker`"
    @Test(.emulatorOnly, arguments: ["a", "my_vm", "-lead", ".dot", "default", "docker", "k8s", "host"])
    func invalidNamesAreRefused(_ name: String) async throws {
        let sim = try SimHarness()
        let out = try await sim.run(["create", "ubuntu", "--", name])  // `--` so cobra reads "-lead" as a name
        #expect(out.exitCode == 1)
        #expect(out.stderr.hasPrefix("[-32098] create '\(name)': "))
        await #expect(try sim.machines().isEmpty)
    }

    @Test(.emulatorOnly, arguments: ["ab", "My-VM.2", "repl-ab12cd-1-2"])
    func validNamesAreAccepted(_ name: String) async throws {
        let out = try await SimHarness().run(["create", "ubuntu", name])
        #expect(out.exitCode == 0)
    }
}
