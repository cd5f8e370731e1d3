import Foundation
import ReplPlatform
import ReplTestSupport
import Testing

/// Against a real AWS account, only when asked: `REPL_AWS_SMOKE=1 swift test --filter
/// RealAccountSmokeTests`, with credentials and `AWS_REGION` as AWS's tools take them. One
/// t3.micro of Ubuntu 24.04 (Canonical's AMI, looked up) runs `uname -m` through the real agent,
/// user data, S3 channel and `InstanceInitiatedShutdownBehavior`; it is terminated at the end,
/// and the test fails if anything of it is left running. Costs about a cent. Skipped by default:
/// tests send nothing beyond loopback unless this is set.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["REPL_AWS_SMOKE"] == "1", "a real AWS account: set REPL_AWS_SMOKE=1"))
struct RealAccountSmokeTests {
    @Test(.timeLimit(.minutes(15))) func oneRunOnARealInstance() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("repl-aws-smoke-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var env = ProcessInfo.processInfo.environment
        env["REPL_HOME"] = dir.appendingPathComponent("state").path
        let file = dir.appendingPathComponent("smoke.yaml")
        try """
        kind: Run
        name: smoke
        provider: aws
        spec: {instanceType: t3.micro, image: ubuntu:noble}
        command: uname -m
        maxDuration: 10m
        """.write(to: file, atomically: true, encoding: .utf8)
        func repl(_ args: [String]) async throws -> ProcessResult {
            try await SystemProcessRunner.run(BuildProducts.repl, args, input: nil, timeout: 900, environment: env, limit: 1 << 20)
        }
        let applied = try await repl(["apply", "-f", file.path, "--wait", "--timeout", "10m"])
        #expect(applied.status == 0 && applied.stdoutText.contains("x86_64"), "\(applied.stdoutText)\(applied.stderrText)")
        _ = try await repl(["delete", "run", "smoke"])
        let swept = try await repl(["orphans", "sweep", "--json"])
        #expect(swept.status == 0, "\(swept.stderrText)")
        let doctor = try await repl(["doctor"])
        #expect(doctor.stdoutText.contains("machines:      0 owned"), "\(doctor.stdoutText)")
    }
}
