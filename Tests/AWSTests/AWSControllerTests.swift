import Foundation
import ReplController
import ReplCore
import ReplStore
import Testing

@testable import AWS

extension MotoScenarios {
    /// The same controller as OrbStack's, over EC2 (moto with EC2's semantics in front): what
    /// it lists, what it terminates, and its breaker, seen as instances and store rows.
    @Suite struct AWSControllerTests {
        final class World: @unchecked Sendable {
            let cloud: MotoTests.AWSProviderTests.Cloud
            let store: Store
            let controller: Controller
            let cid: ControlID
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("repl-aws-\(UUID().uuidString)")

            /// Runs each instance's user data (tests marked `.machineCommands` only).
            var runner: InstanceRunner?

            init(pendingFor: TimeInterval = 0, invisibleFor: TimeInterval = 0, runUserData: Bool = false) async throws {
                cloud = try await MotoTests.AWSProviderTests.Cloud(pendingFor: pendingFor, invisibleFor: invisibleFor)
                if runUserData {
                    let runner = try InstanceRunner(truth: cloud.truth)
                    runner.attach(to: cloud.semantics)
                    self.runner = runner
                }
                store = try Store(inMemory: ())
                try store.bind(provider: "aws", settings: ["region": "us-east-1"])
                cid = try store.controlID()
                var settings = ControllerSettings(logsDirectory: dir.appendingPathComponent("logs"))
                settings.probeInterval = 0
                settings.orphanGrace = .zero
                settings.channelDirectory = dir.appendingPathComponent("machines")
                controller = Controller(store: store, provider: cloud.provider, settings: settings)
            }

            deinit { try? FileManager.default.removeItem(at: dir) }

            /// Applies manifests as `repl apply` records them.
            func apply(_ yaml: String) throws {
                _ = try store.apply(try ManifestParser().parse(yaml, file: "run.yaml"))
            }

            /// Ticks until `done` holds of the runs (at most `limit` seconds).
            func tick(until done: ([RunRecord]) -> Bool, limit: TimeInterval = 120) async throws {
                let end = Date().addingTimeInterval(limit)
                var last = TickReport()
                while Date() < end {
                    last = await controller.tick()
                    if done(try store.runs()) { return }
                    try await Task.sleep(nanoseconds: 300_000_000)
                }
                let runs = try store.runs().map { r in
                    r.run.instances.map { "\($0.phase.rawValue) \($0.exitCode.map(String.init) ?? "-") \($0.reason ?? "")" }
                }
                let diagnosis = await runner?.diagnose() ?? ""
                throw MotoError(
                    "\(diagnosis)\nnot reached in \(Int(limit)) s: \(runs); last tick: \(last.observationError ?? "") \(last.outcomes.map { "\($0.action) \($0.error?.description ?? "ok")" }) waiting: \(last.plan?.waiting ?? [:])"
                )
            }

            /// Launches an instance straight in moto (behind repl's back).
            @discardableResult
            func launch(_ name: String) async throws -> EC2Instance {
                try await cloud.truth.runInstances(
                    EC2Launch(name: name, imageID: MotoTests.EC2ClientTests.ami, instanceType: "t3.micro", clientToken: "by-hand-\(name)"))
            }

            func state(_ name: String) async throws -> [String] {
                try await cloud.instances(name).map(\.state)
            }
        }

        /// An instance carrying our name that no run wants is terminated as an orphan; one of
        /// another installation, or with a name not ours, is never touched.
        @Test func anOrphanIsTerminatedAndNothingElseIs() async throws {
            let w = try await World()
            let orphan = "repl-\(w.cid)-none-5"
            let foreign = "repl-zz9zz9-3-1"
            try await w.launch(orphan)
            try await w.launch(foreign)
            try await w.launch("web-server")
            let report = await w.controller.tick()
            #expect(report.observationError == nil)
            #expect(try await w.state(orphan) == ["terminated"])
            #expect(try await w.state(foreign) == ["running"])
            #expect(try await w.state("web-server") == ["running"])
            // An idle tick over a converged fleet asks EC2 once: the list.
            let before = w.cloud.faults.actions.count
            _ = await w.controller.tick()
            #expect(w.cloud.faults.actions.count - before <= 2, "\(w.cloud.faults.actions.suffix(5))")
        }

        /// End to end: three replicas on EC2, each instance's agent fetching its run from S3,
        /// the same wrapper running the command, and its output and exit code coming back
        /// through S3; the instances are terminated once their runs are done.
        @Test(.machineCommands) func threeReplicasRunAndTheirOutputComesBackThroughS3() async throws {
            let w = try await World(runUserData: true)
            try w.apply(
                """
                kind: Run
                name: hello
                provider: aws
                spec: {image: \(MotoTests.EC2ClientTests.ami)}
                replicas: 3
                env: {GREETING: hello from EC2}
                command: echo "$GREETING"; exit 3
                """)
            try await w.tick(until: { runs in runs.allSatisfy { $0.run.instances.allSatisfy { $0.phase.isTerminal } } })
            let run = try #require(try w.store.runs().first).run
            #expect(run.instances.count == 3)
            #expect(run.instances.allSatisfy { $0.phase == .failed && $0.exitCode == 3 }, "\(run.instances)")
            // The output, from S3, whole.
            for instance in run.instances {
                let name = MachineName(controlID: w.cid, manifestID: run.id, instanceID: instance.id)
                let log = try await w.cloud.provider.logs(name: name, bootstrap: false, from: 0)
                #expect(String(decoding: log, as: UTF8.self) == "hello from EC2\n")
            }
            // Exactly one instance per replica was ever launched.
            let all = try await w.cloud.truth.describeInstances(filters: ["tag:Name": ["repl-*"]])
            #expect(all.count == 3, "\(all.map(\.name))")
        }

        /// A fleet's statuses are read with one S3 listing per tick: an object is fetched only
        /// when the listing shows it changed, and the host's copy of the channel (as on OrbStack)
        /// holds the output, whole, once the status there is final.
        @Test(.machineCommands) func aRunningFleetIsReadWithOneListingPerTick() async throws {
            let w = try await World(runUserData: true)
            try w.apply(
                """
                kind: Run
                name: steady
                provider: aws
                spec: {image: \(MotoTests.EC2ClientTests.ami)}
                replicas: 3
                command: sleep 8; echo done; exit 3
                """)
            try await w.tick(until: { runs in runs.allSatisfy { $0.run.instances.allSatisfy { $0.phase == .running } } })
            // Every agent has put its status `running`; the next ticks find nothing changed.
            var steady = 0
            for _ in 0..<3 {
                try await Task.sleep(nanoseconds: 1_000_000_000)
                let before = w.cloud.faults.actions.count
                let report = await w.controller.tick()
                #expect(report.observationError == nil)
                let asked = Array(w.cloud.faults.actions[before...])
                #expect(asked.filter { $0 == "ListObjectsV2" }.count == 1, "\(asked)")
                if !asked.contains("GetObject") { steady += 1 }
            }
            #expect(steady >= 2, "a tick over an unchanged fleet fetched objects")
            try await w.tick(until: { runs in runs.allSatisfy { $0.run.instances.allSatisfy { $0.phase.isTerminal } } })
            let run = try #require(try w.store.runs().first).run
            #expect(run.instances.allSatisfy { $0.phase == .failed && $0.exitCode == 3 }, "\(run.instances)")
            for instance in run.instances {
                let log = Controller.logFile(w.dir.appendingPathComponent("logs"), run: run.manifest.name, instance: instance.id)
                #expect((try? String(contentsOf: log, encoding: .utf8)) == "done\n")
            }
        }

        /// An instance that ended itself (the agent's `poweroff` terminates it) before a tick read
        /// its final status is judged by that status, read from S3, with its whole output: not
        /// "disappeared" (found by attacking: a cron sweep a minute apart recorded Failed and lost
        /// the output's tail).
        @Test func aFinishedInstanceAlreadyGoneIsJudgedByItsStatusInS3() async throws {
            let w = try await World(pendingFor: 0, invisibleFor: 0)
            try w.apply("kind: Run\nname: gone\nprovider: aws\nspec: {image: \(MotoTests.EC2ClientTests.ami)}\ncommand: echo x\nmaxDuration: 1h\n")
            try await w.tick(until: { runs in runs.allSatisfy { $0.run.instances.allSatisfy { $0.phase >= .bootstrapping } } })
            let run = try #require(try w.store.runs().first).run
            let name = MachineName(controlID: w.cid, manifestID: run.id, instanceID: try #require(run.instances.first).id)
            let s3 = w.cloud.moto.s3(), bucket = w.cloud.provider.channel.bucket, now = Int(Date().timeIntervalSince1970)
            try await s3.putObject(bucket, InstanceAgent.key(name, "run.log"), Data("first\n".utf8))
            try await s3.putObject(bucket, InstanceAgent.key(name, "status"), Data("running\nlaunched=\(now)\nstarted=\(now)\n".utf8))
            _ = await w.controller.tick()
            try await s3.putObject(bucket, InstanceAgent.key(name, "run.log"), Data("first\nsecond\n".utf8))
            try await s3.putObject(
                bucket, InstanceAgent.key(name, "status"), Data("exited 0\nlaunched=\(now)\nstarted=\(now)\nended=\(now + 1)\n".utf8))
            let ids = try await w.cloud.instances(name.description).map(\.id)
            try await w.cloud.truth.terminateInstances(ids)
            try await w.tick(until: { runs in runs.allSatisfy { $0.run.instances.allSatisfy { $0.phase.isTerminal && $0.logsCollected } } })
            let done = try #require(try w.store.runs().first).run.instances[0]
            #expect(done.phase == .succeeded && done.exitCode == 0, "\(done)")
            let log = Controller.logFile(w.dir.appendingPathComponent("logs"), run: "gone", instance: done.id)
            #expect((try? String(contentsOf: log, encoding: .utf8)) == "first\nsecond\n")
        }

        /// The S3 channel failing is said and is a failed tick, never "nothing to do" (found by
        /// attacking: a sweep said all was well while no status could move).
        @Test func aChannelThatCannotBeReadFailsTheTickAndMovesNothing() async throws {
            let w = try await World(pendingFor: 0, invisibleFor: 0)
            try w.apply("kind: Run\nname: c\nprovider: aws\nspec: {image: \(MotoTests.EC2ClientTests.ami)}\ncommand: sleep 600\n")
            try await w.tick(until: { runs in runs.allSatisfy { $0.run.instances.allSatisfy { $0.phase >= .bootstrapping } } })
            w.cloud.faults.fail("ListObjectsV2", times: 20, status: 403, code: "AccessDenied", message: "no")
            let report = await w.controller.tick()
            #expect(report.failed && report.channelError?.contains("AccessDenied") == true, "\(report.channelError ?? "nil")")
            #expect(try w.store.runs().first?.run.instances.first?.phase == .bootstrapping)
            // A bucket gone is no "no status yet" (found by attacking: exit 0, all well).
            w.cloud.faults.clear()
            w.cloud.faults.fail("ListObjectsV2", times: 20, status: 404, code: "NoSuchBucket", message: "gone")
            let gone = await w.controller.tick()
            #expect(gone.failed && gone.channelError?.contains("NoSuchBucket") == true, "\(gone.channelError ?? "nil")")
        }

        /// Scaling a run down terminates the instances it no longer wants, and only those.
        @Test func scalingDownTerminatesOnlyTheInstancesNoLongerWanted() async throws {
            let w = try await World()
            let other = "kind: Run\nname: other\nprovider: aws\nspec: {image: \(MotoTests.EC2ClientTests.ami)}\n"
            func fleet(_ n: Int) -> String {
                "kind: Run\nname: fleet\nprovider: aws\nspec: {image: \(MotoTests.EC2ClientTests.ami)}\nreplicas: \(n)\n---\n" + other
            }
            try w.apply(fleet(3))
            try await w.tick(until: { runs in runs.allSatisfy { $0.run.instances.allSatisfy { $0.phase >= .bootstrapping } } })
            try w.apply(fleet(1))
            try await w.tick(until: { runs in runs.first { $0.run.manifest.name == "fleet" }?.run.instances.filter { !$0.retired }.count == 1 })
            for _ in 0..<3 { _ = await w.controller.tick() }
            let live = try await w.cloud.truth.describeInstances(filters: ["tag:Name": ["repl-*"], "instance-state-name": ["pending", "running"]])
            let runs = try w.store.runs()
            let kept = runs.flatMap { r in
                r.run.instances.filter { !$0.retired }.map { MachineName(controlID: w.cid, manifestID: r.run.id, instanceID: $0.id).description }
            }
            #expect(Set(live.map(\.name)) == Set(kept) && kept.count == 2, "\(live.map(\.name)) vs \(kept)")
        }

        /// A command past its `maxDuration` is TimedOut and its instance terminated; one that
        /// ended in time is judged by its exit code however late a tick reads it (a sweep from
        /// cron once a minute, long after the deadline).
        @Test(.machineCommands) func aDeadlineEndsARunAndALateReadJudgesByTheExitCode() async throws {
            let w = try await World(runUserData: true)
            try w.apply(
                """
                kind: Run
                name: slow
                provider: aws
                spec: {image: \(MotoTests.EC2ClientTests.ami)}
                maxDuration: 4s
                command: sleep 120
                ---
                kind: Run
                name: quick
                provider: aws
                spec: {image: \(MotoTests.EC2ClientTests.ami)}
                maxDuration: 4s
                command: echo in time
                """)
            // Launched, then left alone well past both deadlines, as between two cron sweeps.
            try await w.tick(until: { runs in runs.allSatisfy { $0.run.instances.allSatisfy { $0.phase >= .bootstrapping } } })
            try await Task.sleep(nanoseconds: 12_000_000_000)
            try await w.tick(until: { runs in runs.allSatisfy { $0.run.instances.allSatisfy { $0.phase.isTerminal } } }, limit: 90)
            let runs = Dictionary(uniqueKeysWithValues: try w.store.runs().map { ($0.run.manifest.name, $0.run) })
            #expect(runs["slow"]?.instances.first?.phase == .timedOut, "\(runs["slow"]?.instances ?? [])")
            #expect(
                runs["quick"]?.instances.first?.phase == .succeeded && runs["quick"]?.instances.first?.exitCode == 0,
                "\(runs["quick"]?.instances ?? [])")
            try await w.tick(until: { _ in true })
            for _ in 0..<3 { _ = await w.controller.tick() }
            let live = try await w.cloud.truth.describeInstances(filters: ["tag:Name": ["repl-*"], "instance-state-name": ["pending", "running"]])
            #expect(live.isEmpty, "\(live.map(\.name))")
        }

        /// A snapshot is an AMI of the source's instance, listed as a stopped machine once
        /// available; a run cloned from it runs on an instance of that AMI, of the source's type;
        /// deleting the snapshot deregisters the AMI and deletes its EBS snapshots.
        @Test(.machineCommands) func aSnapshotIsAnAMIAndACloneRunsFromIt() async throws {
            let w = try await World(runUserData: true)
            try w.apply(
                """
                kind: Run
                name: src
                provider: aws
                spec: {image: \(MotoTests.EC2ClientTests.ami), instanceType: t3.small}
                ---
                kind: Snapshot
                name: snap
                from: src
                ---
                kind: Run
                name: copy
                from: snap
                command: echo cloned
                """)
            try await w.tick(until: { runs in runs.first { $0.run.manifest.name == "copy" }?.run.instances.first?.phase == .succeeded }, limit: 90)
            let images = try await w.cloud.truth.describeImages(owners: ["self"], filters: ["tag:Name": ["repl-*"]])
            #expect(images.count == 1 && images[0].state == "available", "\(images)")
            let copy = try #require(try w.store.runs().first { $0.run.manifest.name == "copy" }).run
            let first = try #require(copy.instances.first)
            let name = MachineName(controlID: w.cid, manifestID: copy.id, instanceID: first.id)
            let clones = try await w.cloud.instances(name.description)
            #expect(clones.count == 1 && clones[0].imageID == images.first?.id && clones[0].instanceType == "t3.small", "\(clones)")
            let log = try await w.cloud.provider.logs(name: name, bootstrap: false, from: 0)
            #expect(String(decoding: log, as: UTF8.self) == "cloned\n")
            // The snapshot's machine goes: its AMI and EBS snapshots with it.
            let snapshotName = try #require(images.first?.tags["Name"])
            let snapshotMachine = try #require(MachineName(parsing: snapshotName))
            try await w.cloud.provider.delete(name: snapshotMachine)
            let after = try await w.cloud.truth.describeImages(owners: ["self"], filters: ["tag:Name": ["repl-*"]])
            #expect(after.allSatisfy { $0.state == "deregistered" }, "\(after)")
            #expect(try await w.cloud.provider.state(name: snapshotMachine) == nil)
        }

        /// No capacity opens the breaker: the first tick's two launches meet it, then none is
        /// attempted while it cools down (a new run's neither); once capacity is back and the
        /// cool-down over, the fleet converges with one instance per machine.
        @Test func noCapacityOpensTheBreaker() async throws {
            let w = try await World()
            w.cloud.faults.fail("RunInstances", times: 100, status: 500, code: "InsufficientInstanceCapacity", message: "no t3.micro capacity")
            try w.apply("kind: Run\nname: a\nprovider: aws\nspec: {image: \(MotoTests.EC2ClientTests.ami)}\nreplicas: 2\n")
            var launches: [Int] = []
            for _ in 0..<6 {
                let before = w.cloud.faults.count("RunInstances")
                _ = await w.controller.tick()
                launches.append(w.cloud.faults.count("RunInstances") - before)
            }
            // (Two launches at once may both meet it before either fails; never more, and none after.)
            #expect((1...2).contains(launches[0]) && launches.dropFirst().allSatisfy { $0 == 0 }, "\(launches)")
            #expect(try w.store.breaker(scope: "t3.micro in any zone").isOpen(at: Date()))
            #expect(try w.store.events().contains { $0.kind == "breaker-open" && $0.message.contains("no capacity") })
            try w.apply(
                "kind: Run\nname: a\nprovider: aws\nspec: {image: \(MotoTests.EC2ClientTests.ami)}\nreplicas: 2\n---\nkind: Run\nname: b\nprovider: aws\nspec: {image: \(MotoTests.EC2ClientTests.ami)}\n"
            )
            let before = w.cloud.faults.count("RunInstances")
            _ = await w.controller.tick()
            #expect(w.cloud.faults.count("RunInstances") == before)
            w.cloud.faults.clear()
            let scope = "t3.micro in any zone"
            try w.store.saveBreaker(
                Admission.trip(try w.store.breaker(scope: scope), message: "cool-down elapsed (test)", now: Date().addingTimeInterval(-3600)),
                scope: scope)
            try await w.tick(until: { runs in runs.allSatisfy { $0.run.instances.allSatisfy { $0.phase >= .bootstrapping } } }, limit: 60)
            let all = try await w.cloud.truth.describeInstances(filters: ["tag:Name": ["repl-*"]])
            #expect(all.count == 3, "\(all.map(\.name))")
        }

        /// EC2's capacity is short per instance type and zone: the breaker that opens is that
        /// type's, with one launch of it per episode, while runs of another type are launched.
        @Test func noCapacityForOneTypeHoldsBackOnlyThatType() async throws {
            let w = try await World()
            w.cloud.semantics.noCapacityFor = ["m5.large"]
            let big = "kind: Run\nname: big\nprovider: aws\nspec: {instanceType: m5.large, image: \(MotoTests.EC2ClientTests.ami)}\nreplicas: 2\n"
            try w.apply(big)
            for _ in 0..<2 { _ = await w.controller.tick() }
            #expect((1...2).contains(w.cloud.faults.count("RunInstances")))
            #expect(try w.store.breaker(scope: "m5.large in any zone").isOpen(at: Date()))
            #expect(try w.store.breaker().failures == 0)
            try w.apply(big + "---\nkind: Run\nname: small\nprovider: aws\nspec: {image: \(MotoTests.EC2ClientTests.ami)}\nreplicas: 2\n")
            let before = w.cloud.faults.count("RunInstances")
            try await w.tick(
                until: { runs in runs.first { $0.run.manifest.name == "small" }?.run.instances.allSatisfy { $0.phase >= .bootstrapping } == true },
                limit: 60)
            #expect(w.cloud.faults.count("RunInstances") - before == 2)
            let launched = try await w.cloud.truth.describeInstances(filters: ["tag:Name": ["repl-*"]])
            #expect(launched.map(\.instanceType) == ["t3.micro", "t3.micro"], "\(launched.map(\.name))")
            #expect(try w.store.breaker(scope: "m5.large in any zone").isOpen(at: Date()))
        }

        /// A failed list is never "no instances": nothing is terminated and nothing recorded as
        /// gone while EC2 does not answer.
        @Test func aFailedListTouchesNothing() async throws {
            let w = try await World()
            let orphan = "repl-\(w.cid)-none-5"
            try await w.launch(orphan)
            w.cloud.faults.fail("DescribeInstances", times: 10, status: 401, code: "AuthFailure", message: "not valid")
            let report = await w.controller.tick()
            #expect(report.observationError?.contains("AuthFailure") == true, "\(String(describing: report.observationError))")
            #expect(try await w.state(orphan) == ["running"])
            #expect(w.cloud.faults.count("TerminateInstances") == 0)
        }
    }
}
