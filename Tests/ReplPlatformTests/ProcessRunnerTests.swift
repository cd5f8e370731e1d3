import Foundation
import ReplPlatform
import Testing

/// The one process runner: what the orbctl client, the emulator and the tests rely on.
@Suite struct ProcessRunnerTests {
    let runner = SystemProcessRunner(environment: ["PATH": "/usr/bin:/bin", "HOME": NSTemporaryDirectory()])

    static func alive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 && !Platform.isZombie(pid) }

    @Test func outputExitCodeAndStandardInput() async throws {
        let r = try await runner.run("/bin/sh", ["-c", "cat; echo err >&2; exit 3"], input: Data("in\n".utf8), timeout: 30)
        #expect(r.status == 3)
        #expect(r.stdoutText == "in\n")
        #expect(r.stderrText == "err\n")
        #expect(!r.timedOut && !r.truncated)
    }

    @Test func withoutInputStandardInputIsEmpty() async throws {
        let r = try await runner.run("/bin/sh", ["-c", "wc -c"], input: nil, timeout: 30)
        #expect(r.stdoutText.trimmingCharacters(in: .whitespaces) == "0\n")
    }

    @Test func theEnvironmentIsExactlyTheOneGiven() async throws {
        let r = try await SystemProcessRunner.run("/usr/bin/env", [], input: nil, timeout: 30, environment: ["ONLY": "this"], limit: 1 << 16)
        #expect(r.stdoutText == "ONLY=this\n")
        // The client's runner always sets HOME (orbctl panics without it).
        let client = try await SystemProcessRunner(environment: ["PATH": "/usr/bin:/bin"]).run("/usr/bin/env", [], input: nil, timeout: 30)
        #expect(client.stdoutText.contains("HOME=/"))
    }

    @Test func aSignalIsReportedAs128PlusItsNumber() async throws {
        let r = try await runner.run("/bin/sh", ["-c", "kill -TERM $$"], input: nil, timeout: 30)
        #expect(r.status == 128 + SIGTERM)
    }

    /// A timeout kills the child and everything it started (its process group), as `timeout` does.
    @Test func aTimeoutKillsTheChildAndItsGroup() async throws {
        let pidFile = FileManager.default.temporaryDirectory.appendingPathComponent("runner-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: pidFile) }
        let started = Date()
        let r = try await runner.run("/bin/sh", ["-c", "sleep 900 & echo $! > '\(pidFile.path)'; echo before; sleep 900"], input: nil, timeout: 1)
        #expect(r.timedOut && r.status == 137)
        #expect(r.stdoutText == "before\n")
        // Long before the child's own end (a loaded CI machine can be slow to wake the timeout:
        // once 12 s against a bound of 10, and 70 s against 60 beside two builds, so the child
        // now sleeps far longer than the bound).
        #expect(Date().timeIntervalSince(started) < 300)
        let grandchild = try #require(Int32(String(contentsOf: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        var gone = false
        for _ in 0..<50 where !gone {
            gone = !Self.alive(grandchild)
            if !gone { try await Task.sleep(nanoseconds: 50_000_000) }
        }
        #expect(gone, "the grandchild \(grandchild) outlived the timeout")
    }

    /// What the child leaves running in the background (`setsid … &`, as the wrapper's launch does)
    /// is not waited for, although it holds the same standard output.
    @Test func aDetachedGrandchildIsNotWaitedFor() async throws {
        let pidFile = FileManager.default.temporaryDirectory.appendingPathComponent("runner-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: pidFile) }
        let started = Date()
        let r = try await runner.run("/bin/sh", ["-c", "sleep 900 & echo $! > '\(pidFile.path)'; echo launched"], input: nil, timeout: 1000)
        #expect(Date().timeIntervalSince(started) < 300)  // not the grandchild's 900 s (a loaded machine took 63)
        #expect(r.status == 0 && r.stdoutText == "launched\n" && !r.timedOut)
        let grandchild = try #require(Int32(String(contentsOf: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(Self.alive(grandchild), "not the runner's to end")
        kill(grandchild, SIGKILL)
    }

    @Test func outputBeyondTheLimitIsDroppedAndReported() async throws {
        let limited = SystemProcessRunner(environment: ["PATH": "/usr/bin:/bin"], outputLimit: 1000)
        let r = try await limited.run("/bin/sh", ["-c", "head -c 100000 /dev/zero; head -c 10 /dev/zero >&2"], input: nil, timeout: 30)
        #expect(r.stdout.count == 1000 && r.truncated)
        #expect(r.stderr.count == 10)
    }

    @Test func aMissingProgramIsNotFound() async throws {
        await #expect {
            _ = try await runner.run("/nonexistent/orbctl", [], input: nil, timeout: 5)
        } throws: { error in
            (error as? RunnerError)?.notFound == true
        }
    }

    @Test func aBackgroundProcessCanBeSignalledAndWaitedFor() async throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("runner-\(UUID().uuidString).log")
        defer { try? FileManager.default.removeItem(at: log) }
        let child = try await BackgroundProcess.start(
            "/bin/sh", ["-c", "echo up; trap 'echo bye; exit 7' INT; while :; do sleep 0.1; done"],
            environment: ["PATH": "/usr/bin:/bin"], outputPath: log.path)
        #expect(child.pid > 0)
        for _ in 0..<100 where ((try? String(contentsOf: log, encoding: .utf8)) ?? "").isEmpty {
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        child.signal(SIGINT)
        #expect(try await child.wait() == 7)
        #expect(try String(contentsOf: log, encoding: .utf8) == "up\nbye\n")
    }

    /// Runs synchronously from a thread outside Swift concurrency (the emulator's `main`).
    @Test func attachedRunsFromAPlainThread() async throws {
        let code = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                let code = try? waitForAsync {
                    try await SystemProcessRunner.runAttached("/bin/sh", ["-c", "exit 5"], environment: [:])
                }
                continuation.resume(returning: code)
            }
        }
        #expect(code == 5)
    }
}

/// Finding a program by name, as a shell would: only a regular executable file counts (#18).
struct FindExecutableTests {
    @Test func aDirectoryOrAnEmptyNameIsNeverAProgram() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("find-\(UUID().uuidString)")
        let dirs = root.appendingPathComponent("a"), files = root.appendingPathComponent("b")
        try FileManager.default.createDirectory(at: dirs.appendingPathComponent("orbctl"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: files, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        FileManager.default.createFile(
            atPath: files.appendingPathComponent("orbctl").path, contents: Data("#!/bin/sh\n".utf8),
            attributes: [.posixPermissions: 0o755])
        let path = dirs.path + ":" + files.path
        #expect(findExecutable("orbctl", path: path) == files.appendingPathComponent("orbctl").path)
        #expect(findExecutable("orbctl", path: dirs.path) == nil)
        #expect(findExecutable("", path: path) == nil)
        #expect(findExecutable(dirs.appendingPathComponent("orbctl").path, path: path) == nil)
    }
}
