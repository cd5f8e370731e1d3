import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import AWS

extension MotoScenarios {
    /// `repl` itself on `provider: aws`, against moto: credentials, region and endpoint from the
    /// environment as AWS's tools read them, and one provider per state directory.
    @Suite struct AWSCLITests {
        final class Home: @unchecked Sendable {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("repl-aws-cli-\(UUID().uuidString)")
            let environment: [String: String]
            init(_ moto: Moto) throws {
                try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
                var env = ProcessInfo.processInfo.environment
                for key in env.keys where key.hasPrefix("AWS_") { env[key] = nil }
                env["HOME"] = dir.path
                env["REPL_HOME"] = dir.appendingPathComponent("state").path
                env["AWS_ENDPOINT_URL"] = moto.endpoint.absoluteString
                env["AWS_ACCESS_KEY_ID"] = Moto.credentials.accessKeyID
                env["AWS_SECRET_ACCESS_KEY"] = Moto.credentials.secretAccessKey
                env["AWS_REGION"] = "us-east-1"
                environment = env
            }
            deinit { try? FileManager.default.removeItem(at: dir) }

            func repl(_ args: [String], env extra: [String: String] = [:], cwd: URL? = nil) async throws -> ProcessResult {
                try await SystemProcessRunner.run(
                    BuildProducts.repl, args, input: nil, timeout: 120, environment: environment.merging(extra) { $1 }, limit: 1 << 22)
            }

            func write(_ name: String, _ text: String) throws -> String {
                let file = dir.appendingPathComponent(name)
                try text.write(to: file, atomically: true, encoding: .utf8)
                return file.path
            }
        }

        static let manifest = """
            kind: Run
            name: boxes
            provider: aws
            spec: {image: \(MotoTests.EC2ClientTests.ami), instanceType: t3.small}
            replicas: 2
            """

        /// Apply makes the instances (named, typed, terminated on shutdown), delete terminates
        /// them; an OrbStack manifest is refused in the same state directory while they live.
        @Test func applyMakesInstancesAndDeleteTerminatesThem() async throws {
            let moto = try await Moto()
            let home = try Home(moto)
            let truth = moto.ec2()
            let applied = try await home.repl(["apply", "-f", try home.write("boxes.yaml", Self.manifest)])
            #expect(applied.status == 0, "\(applied.stdoutText)\(applied.stderrText)")
            let made = try await truth.describeInstances(filters: ["tag:Name": ["repl-*"], "instance-state-name": ["pending", "running"]])
            #expect(made.count == 2 && made.allSatisfy { $0.instanceType == "t3.small" }, "\(made)")

            let orb = try await home.repl(["--orbctl", "sim", "apply", "-f", try home.write("hello.yaml", "kind: Run\nname: hi\ncommand: echo hi\n")])
            #expect(orb.status == 2 && orb.stderrText.contains("one provider (and region) per state directory"), "\(orb.stderrText)")

            // doctor checks AWS for such a state directory: where, who, which bucket, what it sees.
            let doctor = try await home.repl(["doctor"])
            #expect(doctor.status == 0, "\(doctor.stdoutText)\(doctor.stderrText)")
            #expect(doctor.stdoutText.contains("aws:           region us-east-1, endpoint \(moto.endpoint.absoluteString)"), "\(doctor.stdoutText)")
            #expect(doctor.stdoutText.contains("credentials:   AWS_ACCESS_KEY_ID in the environment"))
            #expect(doctor.stdoutText.contains("machines:      2 owned, 0 orphan"), "\(doctor.stdoutText)")
            #expect(!doctor.stdoutText.contains("orbctl"), "\(doctor.stdoutText)")
            let json = try await home.repl(["doctor", "--json"])
            let report = try #require(try JSONSerialization.jsonObject(with: json.stdout) as? [String: Any])
            #expect((report["aws"] as? [String: Any])?["bucket"] as? String == "repl-\(report["controlId"] as? String ?? "?")-us-east-1")
            let unusable = try await home.repl(["doctor"], env: ["AWS_SECRET_ACCESS_KEY": ""])
            #expect(
                unusable.status == 3 && unusable.stdoutText.contains("aws:           UNUSABLE: AWS is not usable: AWS_ACCESS_KEY_ID is set without"),
                "\(unusable.stdoutText)")

            // The scheduled sweep finds the same credentials: where they are, never the secret.
            let cron = try await home.repl(
                ["orphans", "sweep", "--print-crontab"], env: ["AWS_PROFILE": "work", "AWS_CONFIG_FILE": "/etc/aws-config"])
            #expect(cron.status == 0 && cron.stdoutText.contains("AWS_PROFILE='work' AWS_CONFIG_FILE='/etc/aws-config' "), "\(cron.stdoutText)")
            #expect(!cron.stdoutText.contains(Moto.credentials.secretAccessKey) && !cron.stdoutText.contains("AWS_ACCESS_KEY_ID"))
            #expect(cron.stderrText.contains("does not get AWS_ACCESS_KEY_ID") && cron.stderrText.contains("profile work"), "\(cron.stderrText)")
            // A line break in a value would start another crontab line: left out, and said.
            let broken = try await home.repl(["orphans", "sweep", "--print-crontab"], env: ["AWS_PROFILE": "work\n* * * * * touch /tmp/owned"])
            #expect(broken.status == 0 && !broken.stdoutText.contains("owned") && broken.stdoutText.split(separator: "\n").count == 1)
            #expect(broken.stderrText.contains("AWS_PROFILE holds a control character"), "\(broken.stderrText)")
            // Nor a `\` before a `%` (found by attacking: cron ends the command at that `%`).
            let slashed = try await home.repl(["orphans", "sweep", "--print-crontab"], env: ["AWS_PROFILE": "a\\%b"])
            #expect(slashed.status == 0 && !slashed.stdoutText.contains("AWS_PROFILE") && slashed.stderrText.contains("AWS_PROFILE holds a \\"))

            let deleted = try await home.repl(["delete", "run", "boxes"])
            #expect(deleted.status == 0, "DELETE \(deleted.stdoutText)\(deleted.stderrText)")
            let sweep = try await home.repl(["orphans", "sweep"])
            #expect(sweep.status == 0, "\(sweep.stdoutText)\(sweep.stderrText)")
            let left = try await truth.describeInstances(filters: ["tag:Name": ["repl-*"], "instance-state-name": ["pending", "running"]])
            #expect(left.isEmpty, "\(left.map(\.name))")

            // An open breaker of one instance type is named by doctor (1: needs attention).
            let store = try Store(directory: home.dir.appendingPathComponent("state"))
            try store.saveBreaker(Admission.trip(.closed, message: "no m5.large capacity", now: Date()), scope: "m5.large in any zone")
            let breaker = try await home.repl(["doctor"])
            #expect(
                breaker.status == 1 && breaker.stdoutText.contains("breaker:       OPEN for m5.large in any zone until")
                    && breaker.stdoutText.contains("circuit breaker (m5.large in any zone) open until"), "\(breaker.stdoutText)")
            try store.resetBreaker()

            // Credentials of another account see none of these instances: nothing is judged on
            // them (found by attacking: every run failed, and a later sweep terminated the fleet).
            let acct = "kind: Run\nname: acct\nprovider: aws\nspec: {image: \(MotoTests.EC2ClientTests.ami)}\n"
            #expect(try await home.repl(["apply", "-f", try home.write("acct.yaml", acct)]).status == 0)
            let account = try #require(try store.awsAccount())
            try store.recordAWSAccount("999999999999")
            let phases = try store.runs().flatMap { $0.run.instances.map(\.phase) }
            // Nothing is recorded under them either (found by attacking: delete recorded, then exit 3).
            let refusedDelete = try await home.repl(["delete", "run", "acct"])
            #expect(refusedDelete.status == 3, "\(refusedDelete.stderrText)")
            let refusedCancel = try await home.repl(["run", "cancel", "acct"])
            #expect(refusedCancel.status == 3, "\(refusedCancel.stderrText)")
            #expect(try store.runs().first { $0.run.manifest.name == "acct" }?.run.cancelled == false)
            let elsewhere = try await home.repl(["orphans", "sweep"])
            #expect(
                elsewhere.status == 3
                    && elsewhere.stderrText.contains("account \(account), but this state directory's instances are in account 999999999999"),
                "\(elsewhere.stderrText)")
            #expect(try store.runs().flatMap { $0.run.instances.map(\.phase) } == phases)
            try store.recordAWSAccount(account)

            let later = "kind: Run\nname: later\nprovider: aws\nspec: {image: \(MotoTests.EC2ClientTests.ami)}\ncommand: sleep 600\n"
            #expect(try await home.repl(["apply", "-f", try home.write("later.yaml", later)]).status == 0)
            let none = try await home.repl(["logs", "later"])
            #expect(none.status == 0 && none.stderrText.contains("no output for later yet"), "\(none.stderrText)")
            // What the instance's agent puts in S3 is read with no controller running: `logs`, and
            // `logs -f` until the command's final status (the host's copy is brought up to date).
            let cid = try store.controlID()
            let laterRun = try #require(try store.runs().first { $0.run.manifest.name == "later" }).run
            let machine = MachineName(controlID: cid, manifestID: laterRun.id, instanceID: try #require(laterRun.instances.first).id)
            let s3 = moto.s3(), bucket = "repl-\(cid)-us-east-1", now = Int(Date().timeIntervalSince1970)
            try await s3.putObject(bucket, "machines/\(machine)/run.log", Data("hello\n".utf8))
            try await s3.putObject(bucket, "machines/\(machine)/status", Data("running\nlaunched=\(now)\nstarted=\(now)\n".utf8))
            let first = try await home.repl(["logs", "later"])
            #expect(first.status == 0 && first.stdoutText == "hello\n", "\(first.stdoutText)\(first.stderrText)")
            try await s3.putObject(bucket, "machines/\(machine)/run.log", Data("hello\nworld\n".utf8))
            try await s3.putObject(bucket, "machines/\(machine)/status", Data("exited 0\nlaunched=\(now)\nstarted=\(now)\nended=\(now)\n".utf8))
            let followed = try await home.repl(["logs", "-f", "later"])
            #expect(followed.status == 0 && followed.stdoutText == "hello\nworld\n", "\(followed.stdoutText)\(followed.stderrText)")
            // `wait` reads S3 too, with no controller running (found by attacking: it never saw the end).
            let waitedFile = try home.write(
                "waited.yaml", "kind: Run\nname: waited\nprovider: aws\nspec: {image: \(MotoTests.EC2ClientTests.ami)}\ncommand: sleep 600\n")
            #expect(try await home.repl(["apply", "-f", waitedFile]).status == 0)
            let waitedRun = try #require(try store.runs().first { $0.run.manifest.name == "waited" }).run
            let waitedMachine = MachineName(controlID: cid, manifestID: waitedRun.id, instanceID: try #require(waitedRun.instances.first).id)
            try await s3.putObject(bucket, "machines/\(waitedMachine)/status", Data("exited 0\nlaunched=\(now)\nstarted=\(now)\nended=\(now)\n".utf8))
            let waited = try await home.repl(["wait", "waited", "--for", "Succeeded", "--timeout", "30s"])
            #expect(waited.status == 0, "\(waited.stdoutText)\(waited.stderrText)")
            let quiet = "kind: Run\nname: quiet\nprovider: aws\nspec: {image: \(MotoTests.EC2ClientTests.ami)}\ncommand: sleep 600\n"
            #expect(try await home.repl(["apply", "-f", try home.write("quiet.yaml", quiet)]).status == 0)

            // The endpoint no longer answers: AWS cannot be used as configured (3), not "needs
            // attention" (1); a log that cannot be read is a failure, not "no output".
            kill(moto.process.processIdentifier, SIGKILL)
            let silent = try await home.repl(["doctor"])
            #expect(silent.status == 3 && silent.stdoutText.contains("cannot reach"), "\(silent.status) \(silent.stdoutText)")
            let unread = try await home.repl(["logs", "quiet"])
            #expect(unread.status == 1 && unread.stderrText.contains("cannot be read"), "\(unread.status) \(unread.stderrText)")
        }

        /// A dry run of aws runs on a fresh state directory plans against EC2 (there is no orbctl
        /// here) and records nothing; a run cloned from a snapshot the state directory holds runs
        /// on its provider without saying so.
        @Test func aDryRunAndACloneAreOnTheStateDirectorysProvider() async throws {
            let moto = try await Moto()
            let home = try Home(moto)
            let truth = moto.ec2()
            let file = try home.write("boxes.yaml", Self.manifest + "\n---\nkind: Snapshot\nname: gold\nfrom: boxes\n")
            let plan = try await home.repl(["apply", "--dry-run", "-f", file])
            #expect(plan.status == 0 && !plan.stderrText.contains("orbctl"), "\(plan.stdoutText)\(plan.stderrText)")
            #expect(try await truth.describeInstances(filters: ["tag:Name": ["repl-*"]]).isEmpty)

            #expect(try await home.repl(["apply", "-f", file]).status == 0)
            // Accepted and recorded (its snapshot is taken once the source's run has started,
            // which needs an agent running in the instance: the controller's scenario has one).
            let clone = try await home.repl(["apply", "--timeout", "2s", "-f", try home.write("copy.yaml", "kind: Run\nname: copy\nfrom: gold\n")])
            #expect(clone.status == 1 && clone.stderrText.contains("snapshot gold"), "\(clone.status) \(clone.stdoutText)\(clone.stderrText)")
            let listed = try await home.repl(["run", "list"])
            #expect(listed.stdoutText.contains("copy"), "\(listed.stdoutText)")
            // An instance that fails before its command starts (moto has no Ubuntu image) fails the apply.
            let noImage = try await home.repl(
                ["apply", "-f", try home.write("noimage.yaml", "kind: Run\nname: noimage\nprovider: aws\nspec: {image: 'ubuntu:noble'}\n")])
            #expect(
                noImage.status == 1 && noImage.stderrText.contains("failed before its command started"), "\(noImage.status) \(noImage.stderrText)")
        }

        /// A crash at every intent point (SIGKILL before and after each EC2 call) leaves no
        /// duplicate instance: the next apply or sweep adopts what the crashed one made (its
        /// name tag; its token, where EC2's list lags) and finishes the rest.
        @Test(arguments: [
            "after-intent:create", "after-call:create", "after-intent:startRun", "after-call:startRun", "after-intent:delete",
            "after-call:delete",
        ])
        func aCrashAtAnyIntentPointLeavesNoDuplicate(_ point: String) async throws {
            let moto = try await Moto()
            let home = try Home(moto)
            let truth = moto.ec2()
            let file = try home.write("boxes.yaml", Self.manifest)
            let live = ["pending", "running"]
            if point.hasSuffix(":delete") {
                #expect(try await home.repl(["apply", "-f", file]).status == 0)
                #expect(try await home.repl(["delete", "run", "boxes"]).status == 0)
                let crashed = try await home.repl(["orphans", "sweep"], env: ["REPL_TEST_CRASH": point])
                let again = try await home.repl(["orphans", "sweep"])
                #expect(again.status == 0, "\(again.stderrText)")
                #expect(crashed.status == 137 || crashed.status == 0, "\(crashed.stderrText)")
                let left = try await truth.describeInstances(filters: ["tag:Name": ["repl-*"], "instance-state-name": live])
                #expect(left.isEmpty, "\(left.map(\.name))")
            } else {
                let crashed = try await home.repl(["apply", "-f", file], env: ["REPL_TEST_CRASH": point])
                #expect(crashed.status == 137, "\(crashed.stdoutText)\(crashed.stderrText)")
                let again = try await home.repl(["apply", "-f", file])
                #expect(again.status == 0, "\(again.stdoutText)\(again.stderrText)")
                let made = try await truth.describeInstances(filters: ["tag:Name": ["repl-*"], "instance-state-name": live])
                #expect(made.count == 2 && Set(made.compactMap(\.name)).count == 2, "\(made.map(\.name))")
            }
            // Never more instances launched than machines wanted, crashed call included.
            let ever = try await truth.describeInstances(filters: ["tag:Name": ["repl-*"]])
            #expect(ever.count == 2, "\(ever.map { "\($0.name ?? "?") \($0.state)" })")
        }

        /// The state directory keeps where its instances are (found by attacking: a sweep with
        /// another AWS_REGION listed nothing there, failed the runs, and the next one terminated
        /// their healthy instances): later commands use the recorded region and endpoint, and an
        /// apply resolving to others is refused.
        @Test func anotherRegionLaterFailsNothingAndTerminatesNothing() async throws {
            let moto = try await Moto()
            let home = try Home(moto)
            let file = try home.write("boxes.yaml", Self.manifest)
            #expect(try await home.repl(["apply", "-f", file]).status == 0)
            let elsewhere = try await home.repl(["orphans", "sweep"], env: ["AWS_REGION": "us-west-2"])
            #expect(elsewhere.status == 0, "\(elsewhere.stderrText)")
            #expect(try await home.repl(["orphans", "sweep"]).status == 0)
            let list = try await home.repl(["run", "list"])
            #expect(!list.stdoutText.contains("Failed"), "\(list.stdoutText)")
            let live = try await moto.ec2().describeInstances(filters: ["tag:Name": ["repl-*"], "instance-state-name": ["pending", "running"]])
            #expect(live.count == 2, "\(live.map(\.name))")
            let moved = try await home.repl(["apply", "-f", file], env: ["AWS_REGION": "us-west-2"])
            #expect(moved.status == 2 && moved.stderrText.contains("region us-east-1"), "\(moved.stderrText)")
        }

        /// What cannot be reached as configured stops before anything is recorded (exit 3), and
        /// says what to set; runs of two providers in one apply are refused (exit 2).
        @Test func aMissingRegionOrMixedProvidersRecordNothing() async throws {
            let moto = try await Moto()
            let home = try Home(moto)
            let file = try home.write("boxes.yaml", Self.manifest)
            let noRegion = try await home.repl(["apply", "-f", file], env: ["AWS_REGION": ""])
            #expect(noRegion.status == 3 && noRegion.stderrText.contains("no AWS region"), "\(noRegion.stderrText)")
            let noKeys = try await home.repl(["apply", "-f", file], env: ["AWS_SECRET_ACCESS_KEY": ""])
            #expect(
                noKeys.status == 3 && noKeys.stderrText.contains("AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY"), "\(noKeys.stderrText)")
            let mixed = try await home.repl(["apply", "-f", try home.write("mixed.yaml", Self.manifest + "\n---\nkind: Run\nname: local\n")])
            #expect(mixed.status == 2 && mixed.stderrText.contains("one provider and region per apply"), "\(mixed.stderrText)")
            let list = try await home.repl(["run", "list"])
            #expect(list.stdoutText.contains("No runs"), "\(list.stdoutText)")
            #expect(try await moto.ec2().describeInstances(filters: [:]).isEmpty)
        }
    }
}
