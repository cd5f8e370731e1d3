import Foundation
import ReplPlatform
import ReplTestSupport
import Testing

@testable import OrbSim

/// Machine commands: isolation, shims, background processes and exact bytes.
@Suite(.serialized) struct MachineTests {
    @Test(.machineCommands)
    func machineDirectoriesAndHostnameAreItsOwn() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        try await sim.run(["create", "ubuntu", "m2"])
        let marker = "from-m1-\(UUID().uuidString)"
        let script = "mkdir -p /var/lib/repl && echo \(marker) > /var/lib/repl/status && echo \(marker) > /tmp/x && echo \(marker) > /opt/y"
        await #expect(try sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", script]).exitCode == 0)
        await #expect(
            try sim.run(["run", "-m", "m1", "cat", "/var/lib/repl/status", "/tmp/x", "/opt/y"]).stdout == "\(marker)\n\(marker)\n\(marker)\n")
        // Another machine and the host do not see it.
        await #expect(try sim.run(["run", "-m", "m2", "sh", "-c", "cat /var/lib/repl/status /tmp/x 2>/dev/null; echo done"]).stdout == "done\n")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/x") || (try? String(contentsOfFile: "/tmp/x", encoding: .utf8)) != marker + "\n")
        await #expect(try sim.run(["run", "-m", "m1", "hostname"]).stdout == "m1\n")
        await #expect(try sim.run(["run", "-m", "m1", "uname", "-n"]).stdout == "m1\n")
        #expect(ProcessInfo.processInfo.hostName != "m1")
    }

    @Test(.machineCommands)
    func aCloneCopiesTheDisk() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "base"])
        try await sim.run(["run", "-m", "base", "-u", "root", "sh", "-c", "echo prepared > /opt/READY"])
        try await sim.run(["clone", "base", "copy"])
        await #expect(try sim.run(["run", "-m", "copy", "cat", "/opt/READY"]).stdout == "prepared\n")
        try await sim.run(["run", "-m", "copy", "-u", "root", "sh", "-c", "echo changed > /opt/READY"])
        await #expect(try sim.run(["run", "-m", "base", "cat", "/opt/READY"]).stdout == "prepared\n")
    }

    @Test(.emulatorOnly, .machineCommands)
    func hostnameDashIPrintsTheAddress() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        await #expect(try sim.run(["run", "-m", "m1", "hostname", "-I"]).stdout == "192.168.139.10 \n")
    }

    @Test(
        .machineCommands,
        arguments: ["poweroff", "shutdown -h now", "halt", "reboot", "systemctl poweroff"])
    func powerCommandsStopTheMachineNotTheHost(_ command: String) async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let out = try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", "\(command); sleep 5; echo survived"])
        #expect(!out.stdout.contains("survived"))
        // The machine is stopping, then stopped (as on OrbStack, where the stop takes a moment).
        let deadline = Date().addingTimeInterval(10)
        while try await sim.state("m1") == "stopping", Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
        await #expect(try sim.state("m1") == "stopped")
        // The host is still here, and still running this test.
    }

    @Test(.emulatorOnly, .machineCommands)
    func absolutePathsReachTheShimsToo() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let existing = ["/usr/sbin/poweroff", "/sbin/poweroff", "/usr/sbin/halt", "/sbin/reboot", "/usr/bin/systemctl"]
            .filter { FileManager.default.fileExists(atPath: $0) }
        for path in existing {
            try await sim.run(["start", "m1"])
            let out = try await sim.run(["run", "-m", "m1", "-u", "root", "sh", "-c", "head -c 9 \(path); echo"])
            #expect(out.stdout == "#!/bin/sh\n", "\(path) is not covered by a shim inside the machine")
        }
    }

    /// Without a private namespace (macOS, Linux without root) a machine's command would run on
    /// the host itself: every one is refused with one line, and nothing runs.
    @Test(.emulatorOnly) func withoutNamespacesMachineCommandsAreRefused() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let marker = sim.home.appendingPathComponent("ran")
        let out = try await sim.run(
            ["run", "-m", "m1", "sh", "-c", "touch '\(marker.path)'; /sbin/poweroff"],
            environment: ["ORBSIM_NAMESPACES": "0"])
        #expect(out.exitCode == 1)
        #expect(out.stdout.isEmpty)
        #expect(out.stderr.hasPrefix("orbctl-sim runs machine commands only in a private namespace") || out.stderr.contains("Linux only"))
        #expect(out.stderr.split(separator: "\n").count == 1)
        #expect(!FileManager.default.fileExists(atPath: marker.path))
        // The machine is untouched, and an unknown machine is still "not found" first.
        await #expect(try sim.state("m1") == "running")
        let ghost = try await sim.run(["run", "-m", "ghost", "true"], environment: ["ORBSIM_NAMESPACES": "0"])
        #expect(ghost.stderr.contains("machine not found"))
    }

    @Test(.emulatorOnly, .machineCommands)
    func backgroundProcessesOutliveRunAndDieWithTheMachine() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let tag = "bg-\(UInt32.random(in: 0...UInt32.max))"
        // A detached process keeps running after `run` returns, as in a real machine…
        await #expect(
            try sim.run([
                "run", "-m", "m1", "sh", "-c",
                "setsid sh -c 'while true; do sleep 0.1; done; echo \(tag)' >/dev/null 2>&1 < /dev/null & sleep 0.1; echo started",
            ]).stdout == "started\n")
        try await Task.sleep(nanoseconds: UInt64(300_000) * 1000)
        let pids = try await sim.machineProcesses("m1")
        #expect(!pids.isEmpty)
        // …and stopping the machine ends it.
        try await sim.run(["stop", "m1"])
        #expect(!SimHarness.anyAlive(pids))
    }

    @Test(.emulatorOnly, .machineCommands)
    func deletingAMachineEndsItsProcesses() async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        try await sim.run(["run", "-m", "m1", "sh", "-c", "setsid sleep 600 >/dev/null 2>&1 < /dev/null & sleep 0.1"])
        let pids = try await sim.machineProcesses("m1")
        #expect(pids.count == 1)
        try await sim.run(["delete", "-f", "m1"])
        #expect(!SimHarness.anyAlive(pids))
    }

    /// Commands with quotes, `$()`, backticks, newlines and non-ASCII text arrive byte for byte.
    @Test(
        .machineCommands,
        arguments: [
            "it's \"quoted\"", "$(touch /tmp/pwned) and `id`", "line1\nline2\n\nline4", "ünïcødé ✓ 日本語 🚀",
            "tab\there; semicolon; && || | > < * ? [a] {b} ~ # !", " leading and trailing spaces ", "\\backslash\\n",
        ])
    func argumentsArriveByteForByte(_ text: String) async throws {
        let sim = try SimHarness()
        try await sim.run(["create", "ubuntu", "m1"])
        let out = try await sim.run(["run", "-m", "m1", "printf", "%s", text])
        #expect(out.stdout == text)
        #expect(Array(out.stdout.utf8) == Array(text.utf8))
        await #expect(try sim.run(["run", "-m", "m1", "sh", "-c", "test -e /tmp/pwned && echo yes || echo no"]).stdout == "no\n")
    }
}

/// The tests find the built products on Linux and on macOS, where `argv[0]` is the toolchain's
/// `xctest` and the tests are a bundle inside the build directory.
struct BuildProductsTests {
    @Test func theBuildDirectoryIsFoundFromEitherLayout() {
        let linuxBuild = URL(fileURLWithPath: "/src/.build/x86_64-unknown-linux-gnu/debug")
        let macBuild = URL(fileURLWithPath: "/Users/u/src/.build/arm64-apple-macosx/debug")
        let holds: (URL) -> Bool = { [linuxBuild.path, macBuild.path].contains($0.path) }
        // Linux: the tests are one executable beside the products.
        #expect(
            BuildProducts.directory(among: [linuxBuild.appendingPathComponent("replPackageTests.xctest")], holdsProducts: holds)?.path
                == linuxBuild.path)
        // macOS: xctest (in the toolchain) loads the bundle; the bundle's binary is deep inside it.
        let xctest = URL(fileURLWithPath: "/Applications/Xcode.app/Contents/Developer/usr/bin/xctest")
        let bundleBinary = macBuild.appendingPathComponent("replPackageTests.xctest/Contents/MacOS/replPackageTests")
        #expect(BuildProducts.directory(among: [xctest, bundleBinary], holdsProducts: holds)?.path == macBuild.path)
        #expect(BuildProducts.directory(among: [xctest], holdsProducts: holds) == nil)
    }

    @Test func theProductsOfThisBuildAreThere() {
        #expect(FileManager.default.isExecutableFile(atPath: BuildProducts.orbctlSim))
        #expect(FileManager.default.isExecutableFile(atPath: BuildProducts.repl))
    }
}
