import Foundation
import ReplCore
import ReplPlatform
import Testing

@testable import OrbStack

/// The files repl and its wrapper leave in a machine, each read back as it was written (#21).
struct ManifestCopyTests {
    func run(_ manifest: RunManifest) -> (DesiredRun, InstanceState) {
        let instance = InstanceState(id: 4242, generation: 3)
        return (DesiredRun(id: 77, manifest: manifest, generation: 3, instances: [instance]), instance)
    }

    /// Every field a manifest can hold comes back as applied: a recovered run that differed would
    /// be replaced by the next apply.
    @Test func aCopyReadsBackAsTheRunThatWasApplied() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("copy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let full = RunManifest(
            name: "train", source: .spec(try Spec(parsing: "ubuntu:noble:arm64")), command: "echo 'a \"quoted\" / slash'\nexit 3",
            maxDuration: TimeSpan(parsing: "2h"), bootstrap: "apt-get update", replicas: 4, hold: TimeSpan(parsing: "90s")!,
            env: ["A_B": "x: y", "EMPTY": ""], labels: ["team": "ml"],
            options: MachineOptions(
                cpus: 2, memory: ByteSize(parsing: "4G"), disk: ByteSize(parsing: "64G"), isolated: true, user: "dev",
                userData: "#cloud-config\nruncmd: [echo hi]\n"),
            files: [FileCopy(from: dir.path, to: "/srv/app", exclude: [".git"])], artifacts: ["/srv/out/*.json"])
        let clone = RunManifest(name: "fast", source: .snapshot("base-snap"), command: "true")
        for manifest in [full, clone, RunManifest(name: "idle")] {
            let (desired, instance) = run(manifest)
            let copy = try #require(ManifestCopy.read(ManifestCopy.text(run: desired, instance: instance)))
            #expect(copy == ManifestCopy.Copy(runID: 77, generation: 3, instance: 4242, manifest: manifest))
        }
    }

    /// The reader reads the document, not its spacing (it had searched the text with a pattern
    /// that depended on how one JSON encoder spaces a key).
    @Test func aCopyIsReadWhateverItsSpacing() throws {
        let text =
            "# repl run 25 generation 1 instance 1\n{\"kind\":\"Run\",\"name\":\"fast\",\"from\":\"base-snap\",\"replicas\":1,\"hold\":\"0s\"}\n"
        let copy = try #require(ManifestCopy.read(text))
        #expect(copy.manifest.source == .snapshot("base-snap") && copy.runID == 77)
    }

    /// A copy is machine-writable: what this writer did not write is not a copy.
    @Test(arguments: [
        "", "{\"kind\":\"Run\",\"name\":\"a\"}\n", "# repl run zz! generation 1 instance 1\n{\"kind\":\"Run\",\"name\":\"a\"}\n",
        "# repl run 1 generation x instance 1\n{\"kind\":\"Run\",\"name\":\"a\"}\n",
        "# repl run 1 generation 1 instance 1\n{\"kind\":\"Run\",\"name\":\"A B\"}\n",
        "# repl run 1 generation 1 instance 1\n{\"kind\":\"Snapshot\",\"name\":\"s\",\"from\":\"a\"}\n",
    ])
    func anythingElseIsNotACopy(_ text: String) {
        #expect(ManifestCopy.read(text) == nil)
    }
}

/// The status file: the wrapper's shell function writes it, repl reads it.
struct StatusFileTests {
    /// Written by the wrapper's own `status` function under /bin/sh, read back whole.
    @Test(arguments: [
        ("bootstrapping", ProbeResult.bootstrapping, "", ""), ("running", .running, "101", ""),
        ("exited 3", .exited(3), "101", "105"), ("timedout", .timedOut, "101", "105"),
    ])
    func whatTheWrapperWritesIsRead(_ state: String, _ result: ProbeResult, _ started: String, _ ended: String) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("status-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let script = "status() {\n\(StatusFile.writer)\n}\nR=\"$1\" T0=100 S=\"$2\" E=\"$3\"; status \"$4\""
        let out = try await SystemProcessRunner.run(
            "/bin/sh", ["-c", script, "sh", dir.path, started, ended, state],
            input: nil, timeout: 10, environment: ["PATH": "/usr/bin:/bin"], limit: 1 << 16)
        #expect(out.status == 0, "\(out.stderrText)")
        let text = try String(contentsOf: dir.appendingPathComponent("status"), encoding: .utf8)
        var times: [String: TimeInterval] = ["launched": 100]
        if !started.isEmpty { times["started"] = TimeInterval(started)! }
        if !ended.isEmpty { times["ended"] = TimeInterval(ended)! }
        #expect(StatusFile.read(text) == StatusFile.Contents(result: result, times: times))
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("status.tmp").path))
    }

    @Test(arguments: [("exited 0", 0), ("exited 3", 3), ("exited 255\nended=1", 255), ("exited 007", 7)])
    func anExitCodeIsRead(_ text: String, _ code: Int) {
        #expect(StatusFile.read(text).result == .exited(code))
    }

    /// Anything in a machine can write there: an exit code is only what a shell's `$?` prints
    /// (found by the attack on #20).
    @Test(arguments: ["exited 256", "exited -5", "exited +0", "exited ", "exited 1e3", "exited ٣", "exited 99999999999999999999"])
    func anythingElseIsUnreadable(_ text: String) {
        guard case .unreadable = StatusFile.read(text).result else {
            Issue.record("\(text) was read as \(StatusFile.read(text).result)")
            return
        }
    }
}
