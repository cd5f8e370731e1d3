import Foundation
import Testing

@testable import ReplCore

struct ManifestTests {
    @Test func defaultsAreFilledIn() throws {
        let set = try ManifestParser().parse("kind: Run\nname: hello\n", file: "a.yaml")
        #expect(set.runs == [RunManifest(name: "hello")])
        let run = set.runs[0]
        #expect(run.provider == "orbstack")
        #expect(run.source == .spec(Spec(distro: "ubuntu", version: "noble", arch: Spec.hostArch)))
        #expect(run.replicas == 1 && run.hold == .zero && run.maxDuration == nil && run.command == nil)
    }

    @Test func everyKeyIsRead() throws {
        let yaml = """
            kind: Run
            name: full
            provider: orbstack
            spec: ubuntu:jammy:amd64
            command: echo hello
            maxDuration: 60000
            bootstrap: |
              apt-get update
            replicas: 3
            hold: 90s
            env: {FOO: bar, N: 3}
            labels: {team: ml}
            """
        let run = try #require(try ManifestParser().parse(yaml, file: "f.yaml").runs.first)
        #expect(
            run
                == RunManifest(
                    name: "full", source: .spec(Spec(distro: "ubuntu", version: "jammy", arch: "amd64")),
                    command: "echo hello", maxDuration: .seconds(60), bootstrap: "apt-get update\n",
                    replicas: 3, hold: .seconds(90), env: ["FOO": "bar", "N": "3"], labels: ["team": "ml"]))
    }

    @Test func severalDocumentsAndSnapshots() throws {
        let yaml =
            "kind: Run\nname: base\n---\nkind: Snapshot\nname: snap\nfrom: base\n---\nkind: Run\nname: fast\nfrom: snap\ncommand: ./job.sh\n---\n"
        let set = try ManifestParser().parse(yaml, file: "s.yaml")
        #expect(set.runs.map(\.name) == ["base", "fast"])
        #expect(set.snapshots == [SnapshotManifest(name: "snap", from: "base")])
        #expect(set.runs[1].source == .snapshot("snap"))
        #expect(set.documents.map(\.location.line) == [1, 4, 8])
    }

    @Test func referencesMayNameWhatTheStoreAlreadyHas() throws {
        let parser = ManifestParser(knownRuns: ["old"], knownSnapshots: ["snap"])
        let set = try parser.parse("kind: Run\nname: a\nfrom: snap\n---\nkind: Snapshot\nname: s2\nfrom: old\n", file: "x.yaml")
        #expect(set.documents.count == 2)
    }

    @Test(
        arguments: [
            ("60000", 60_000), ("90s", 90_000), ("10m", 600_000), ("2h", 7_200_000), ("1d", 86_400_000),
            ("250ms", 250), ("1h30m", 5_400_000), ("0", 0), ("0s", 0),
        ] as [(String, Int64)])
    func durations(_ text: String, _ ms: Int64) {
        #expect(TimeSpan(parsing: text)?.milliseconds == ms)
        // The printed form reads back to the same span.
        #expect(TimeSpan(parsing: TimeSpan(milliseconds: ms).description)?.milliseconds == ms)
    }

    @Test(arguments: ["", "5 minutes", "-1s", "1.5h", "10y", "m", "1m1h", "s5", "1e3", "366d", "99999999999999999999"])
    func notDurations(_ text: String) {
        #expect(TimeSpan(parsing: text) == nil)
    }

    @Test(arguments: [
        ("", "ubuntu:noble:\(Spec.hostArch)"), ("ubuntu", "ubuntu:noble:\(Spec.hostArch)"),
        ("ubuntu:jammy", "ubuntu:jammy:\(Spec.hostArch)"), ("::amd64", "ubuntu:noble:amd64"),
        ("ubuntu:24.04:arm64", "ubuntu:noble:arm64"), ("ubuntu:22.04", "ubuntu:jammy:\(Spec.hostArch)"),
        ("debian:12", "debian:bookworm:\(Spec.hostArch)"), ("debian", "debian:bookworm:\(Spec.hostArch)"),
        ("centos:9-stream", "centos:9-Stream:\(Spec.hostArch)"), ("nixos", "nixos:25.05:arm64"),
        ("UBUNTU:Noble:ARM64", "ubuntu:noble:arm64"), ("ubuntu:noble:x86_64", "ubuntu:noble:amd64"),
    ])
    func specs(_ text: String, _ expected: String) throws {
        #expect(try Spec(parsing: text).description == expected)
    }

    @Test func directoriesReadTheirYamlFilesInOrder() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("repl-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "kind: Run\nname: b\n".write(to: dir.appendingPathComponent("b.yml"), atomically: true, encoding: .utf8)
        try "kind: Run\nname: a\n".write(to: dir.appendingPathComponent("a.yaml"), atomically: true, encoding: .utf8)
        try "not a manifest".write(to: dir.appendingPathComponent("notes.txt"), atomically: true, encoding: .utf8)
        let sources = try ManifestFiles.load([dir.path])
        #expect(sources.map { ($0.name as NSString).lastPathComponent } == ["a.yaml", "b.yml"])
        #expect(try ManifestParser().parse(sources).runs.map(\.name) == ["a", "b"])
    }

    /// A file named twice (again, through `..`, through a link, or in its directory) is read
    /// once (found by an attacker: "Run "a" is already defined at" pointed at itself).
    @Test func aFileNamedTwiceIsReadOnce() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("repl-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("sub"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("a.yaml")
        try "kind: Run\nname: a\n".write(to: file, atomically: true, encoding: .utf8)
        let link = dir.appendingPathComponent("sub/link.yaml")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: file)
        let sources = try ManifestFiles.load([file.path, dir.path + "/sub/../a.yaml", link.path, dir.path])
        #expect(sources.count == 1)
        #expect(try ManifestParser().parse(sources).runs.map(\.name) == ["a"])
    }

    @Test func dashMeansStandardInput() throws {
        let sources = try ManifestFiles.load(["-"], readStandardInput: { Data("kind: Run\nname: piped\n".utf8) })
        #expect(sources == [ManifestSource(name: "<stdin>", text: "kind: Run\nname: piped\n")])
    }

    @Test func missingFilesAreAllNamed() {
        #expect(
            throws: ManifestError([
                ManifestDiagnostic(SourceLocation(file: "/nonexistent/a.yaml", line: 0, column: 0), "no such file or directory"),
                ManifestDiagnostic(SourceLocation(file: "/nonexistent/b.yaml", line: 0, column: 0), "no such file or directory"),
            ])
        ) {
            try ManifestFiles.load(["/nonexistent/a.yaml", "/nonexistent/b.yaml"])
        }
    }

    @Test func generationFingerprintIgnoresInPlaceFields() {
        let a = RunManifest(name: "a", command: "echo", replicas: 1)
        var b = a
        b.replicas = 5
        b.hold = .seconds(30)
        b.maxDuration = .minutes(1)
        b.labels = ["x": "y"]
        #expect(a.generationFingerprint == b.generationFingerprint)
        var c = a
        c.env = ["A": "1"]
        #expect(a.generationFingerprint != c.generationFingerprint)
        var d = a
        d.command = "echo 2"
        #expect(a.generationFingerprint != d.generationFingerprint)
    }

    /// OrbStack's machine options (#17): read from the manifest, stored, and part of the
    /// generation only when set, so runs stored before them keep theirs.
    @Test func machineOptionsAreReadStoredAndReplaceMachines() throws {
        let yaml =
            "kind: Run\nname: a\ncommand: echo\nresources: {cpus: 2, memory: 1.5G, disk: 64GiB}\nisolated: yes\nuser: dev\n"
            + "userData: |\n  #cloud-config\n  runcmd: [ls]\n"
        let run = try #require(try ManifestParser().parse(yaml, file: "a.yaml").runs.first)
        #expect(
            run.options
                == MachineOptions(
                    cpus: 2, memory: ByteSize(bytes: 1536 << 20), disk: ByteSize(bytes: 64 << 30), isolated: true,
                    user: "dev", userData: "#cloud-config\nruncmd: [ls]\n"))
        #expect(run.options.createFlags == ["--cpus", "2", "--memory", "1536M", "--disk", "64G", "--isolated", "-u", "dev"])
        let stored = try JSONDecoder().decode(RunManifest.self, from: JSONEncoder().encode(run))
        #expect(stored == run)
        // A manifest stored before the options existed: none, and the same generation as ever.
        var plain = run
        plain.options = .none
        var old = try JSONSerialization.jsonObject(with: JSONEncoder().encode(plain)) as! [String: Any]
        old["options"] = nil
        let decoded = try JSONDecoder().decode(RunManifest.self, from: JSONSerialization.data(withJSONObject: old))
        #expect(decoded.options == .none)
        #expect(decoded.generationFingerprint == [plain.source.description, "-", "\"echo\"", ""].joined(separator: "\u{1F}"))
        for change in [MachineOptions(cpus: 2), MachineOptions(isolated: true), MachineOptions(user: "dev"), MachineOptions(userData: "#!/bin/sh\n")]
        {
            var changed = plain
            changed.options = change
            #expect(changed.generationFingerprint != plain.generationFingerprint)
        }
    }
}
