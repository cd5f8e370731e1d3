import Foundation
import ReplCore
import Testing

@testable import AWS

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

extension MotoTests {
    /// The AWS provider against moto, with EC2's own behaviour in front of it (``EC2Semantics``:
    /// idempotent tokens, pending instances, a list that lags behind a launch) and injected errors.
    @Suite struct AWSProviderTests {
        /// An image moto ships; Ubuntu releases are looked up elsewhere (moto has none current).
        struct MotoImages: ImageLookup {
            func ami(for image: AWSSpec.Image, arch: String, ec2: EC2Client) async throws(AWSError) -> String {
                if case .ami(let id) = image { return id }
                return EC2ClientTests.ami
            }
        }

        /// moto, EC2's semantics in front, the fault layer outermost; and a client straight to moto
        /// that sees every instance as it is.
        struct Cloud {
            let moto: Moto
            let semantics: EC2Semantics
            let faults: FaultTransport
            let provider: AWSProvider
            let truth: EC2Client

            init(pendingFor: TimeInterval = 2, invisibleFor: TimeInterval = 2) async throws {
                moto = try await Moto()
                semantics = EC2Semantics(pendingFor: pendingFor, invisibleFor: invisibleFor)
                faults = FaultTransport(semantics)
                provider = AWSProvider(
                    ec2: moto.ec2(transport: faults), channel: .init(s3: moto.s3(transport: faults), bucket: "repl-abc123-us-east-1"),
                    images: MotoImages(), throttle: Throttle(attempts: 4, base: 0.05))
                truth = moto.ec2()
            }

            /// Every instance moto holds that carries `name`, terminated too.
            func instances(_ name: String) async throws -> [EC2Instance] {
                try await truth.describeInstances(filters: ["tag:Name": [name]])
            }
        }

        static let spec = MachineSpec.aws(AWSSpec(instanceType: "t3.micro", image: .ami(EC2ClientTests.ami)))
        static let name = MachineName(parsing: "repl-abc123-1-1")!

        /// A create retried after a crash (its instance not yet in the list: EC2 is eventually
        /// consistent) makes no second instance: the token is the same, so EC2 gives the first back.
        @Test func aCreateRetriedBeforeTheListShowsItMakesOneInstance() async throws {
            let cloud = try await Cloud(invisibleFor: 60)
            try await cloud.provider.create(name: Self.name, spec: Self.spec)
            #expect(try await cloud.provider.list().isEmpty)  // not listed yet
            try await cloud.provider.create(name: Self.name, spec: Self.spec)
            try await cloud.provider.create(name: Self.name, spec: Self.spec)
            #expect(try await cloud.instances(Self.name.description).count == 1)
            #expect(cloud.faults.count("RunInstances") == 3)
        }

        /// The name tag is the second guard: an instance that already carries the name is adopted,
        /// and no launch is asked for.
        @Test func anInstanceCarryingTheNameIsAdopted() async throws {
            let cloud = try await Cloud(invisibleFor: 0)
            _ = try await cloud.truth.runInstances(
                EC2Launch(name: Self.name.description, imageID: EC2ClientTests.ami, instanceType: "t3.micro", clientToken: "made-elsewhere"))
            try await cloud.provider.create(name: Self.name, spec: Self.spec)
            #expect(cloud.faults.count("RunInstances") == 0)
            #expect(try await cloud.instances(Self.name.description).count == 1)
        }

        /// EBS volumes are made with the instance, sized and typed as the spec says (the root
        /// one at the image's root device), and go with it: a terminate leaves none billed.
        @Test func volumesAreMadeWithTheInstanceAndGoWithIt() async throws {
            let cloud = try await Cloud(pendingFor: 0, invisibleFor: 0)
            let spec = AWSSpec(
                instanceType: "t3.micro", image: .ami(EC2ClientTests.ami), disk: 30,
                volumes: [AWSSpec.Volume(gib: 100, device: "/dev/sdf"), AWSSpec.Volume(gib: 20, type: "st1", device: "/dev/sdg")])
            try await cloud.provider.create(name: Self.name, spec: .aws(spec))
            let id = try #require(try await cloud.instances(Self.name.description).first?.id)
            func volumes() async throws -> [String] {
                let answer = try await cloud.truth.call(
                    "DescribeVolumes", [("Filter.1.Name", "attachment.instance-id"), ("Filter.1.Value.1", id)])
                return answer.items("volumeSet").map { v in
                    "\(v.items("attachmentSet").first?.text("device") ?? "?") \(v.text("size") ?? "?") \(v.text("volumeType") ?? "?")"
                }.sorted()
            }
            #expect(try await volumes() == ["/dev/sda1 30 gp3", "/dev/sdf 100 gp3", "/dev/sdg 20 st1"])
            try await cloud.provider.delete(name: Self.name)
            let all = try await cloud.truth.call("DescribeVolumes", [])
            #expect(all.items("volumeSet").isEmpty, "\(all.items("volumeSet").map { $0.text("volumeId") ?? "?" })")
        }

        /// A name whose instance was launched and has ended gets a new one: the spent token gives
        /// the terminated instance back, and the next token launches.
        @Test func aSpentTokenIsSteppedOver() async throws {
            let cloud = try await Cloud(pendingFor: 0, invisibleFor: 0)
            try await cloud.provider.create(name: Self.name, spec: Self.spec)
            try await cloud.provider.delete(name: Self.name)
            #expect(try await cloud.provider.state(name: Self.name) == nil)
            try await cloud.provider.create(name: Self.name, spec: Self.spec)
            let all = try await cloud.instances(Self.name.description)
            #expect(all.count == 2 && all.filter { $0.state == "terminated" }.count == 1, "\(all.map(\.state))")
            #expect(try await cloud.provider.state(name: Self.name) == .running)
        }

        /// The list: every live instance named `repl-*`, each with its state (pending is creating)
        /// and its launch time as the creation time; terminated ones and other names are not there.
        @Test func theListShowsLiveMachinesWithTheirLaunchTimes() async throws {
            let cloud = try await Cloud(pendingFor: 60, invisibleFor: 0)
            let before = Date().addingTimeInterval(-5)
            for i in 1...3 { try await cloud.provider.create(name: MachineName(parsing: "repl-abc123-1-\(i)")!, spec: Self.spec) }
            _ = try await cloud.truth.runInstances(
                EC2Launch(name: "web-server", imageID: EC2ClientTests.ami, instanceType: "t3.micro", clientToken: "not-ours"))
            try await cloud.provider.delete(name: MachineName(parsing: "repl-abc123-1-3")!)
            let listed = try await cloud.provider.list()
            #expect(listed.map(\.name).sorted() == ["repl-abc123-1-1", "repl-abc123-1-2"], "\(listed)")
            #expect(listed.allSatisfy { $0.state == .creating })
            #expect(listed.allSatisfy { ($0.createdAt ?? .distantPast) > before && $0.id.hasPrefix("i-") })
            #expect(cloud.faults.count("DescribeInstances") >= 1)
        }

        /// A delete terminates every instance of the name and is done when there is none; a stop or
        /// a terminate is never asked without an instance id.
        @Test func deleteIsIdempotentAndNeverAsksWithoutAnID() async throws {
            let cloud = try await Cloud(pendingFor: 0, invisibleFor: 0)
            try await cloud.provider.create(name: Self.name, spec: Self.spec)
            // A duplicate made behind the provider's back goes with it.
            _ = try await cloud.truth.runInstances(
                EC2Launch(name: Self.name.description, imageID: EC2ClientTests.ami, instanceType: "t3.micro", clientToken: "a-duplicate"))
            try await cloud.provider.delete(name: Self.name)
            try await cloud.provider.delete(name: Self.name)
            try await cloud.provider.stop(name: MachineName(parsing: "repl-abc123-9-9")!)
            try await cloud.provider.delete(name: MachineName(parsing: "repl-abc123-9-9")!)
            #expect(try await cloud.instances(Self.name.description).allSatisfy { $0.state == "terminated" })
            #expect(cloud.faults.count("TerminateInstances") == 1)
            #expect(cloud.faults.count("StopInstances") == 0)
            #expect(try await cloud.provider.list().isEmpty)
        }

        /// EC2's errors in the controller's terms: capacity and quota open the breaker, credentials
        /// stop everything and say what to fix, a bad image fails the instance, and throttling is
        /// absorbed by waiting (one instance in the end).
        @Test func errorsMeanWhatTheControllerDoes() async throws {
            let cloud = try await Cloud(pendingFor: 0, invisibleFor: 0)
            func createError() async -> ProviderError? {
                do {
                    try await cloud.provider.create(name: Self.name, spec: Self.spec)
                    return nil
                } catch { return error }
            }
            cloud.faults.fail("RunInstances", status: 500, code: "InsufficientInstanceCapacity", message: "no t3.micro in us-east-1a")
            #expect(await createError()?.kind == .capacity)
            cloud.faults.fail("RunInstances", status: 400, code: "VcpuLimitExceeded", message: "vCPU limit")
            let quota = await createError()
            #expect(quota?.kind == .capacity && quota?.message.contains("Service Quotas") == true, "\(String(describing: quota))")
            cloud.faults.fail(
                "DescribeInstances", status: 401, code: "AuthFailure", message: "AWS was not able to validate the provided access credentials")
            let denied = await createError()
            #expect(denied?.kind == .denied && denied?.isRetryable == false && denied?.message.contains("AWS_ACCESS_KEY_ID") == true)
            let bad = MachineSpec.aws(AWSSpec(image: .ami("ami-00000000")))
            cloud.faults.fail("RunInstances", status: 400, code: "InvalidAMIID.NotFound", message: "The image id '[ami-00000000]' does not exist")
            await #expect(
                throws: ProviderError(
                    .invalid, "launch repl-abc123-1-1: RunInstances: InvalidAMIID.NotFound: The image id '[ami-00000000]' does not exist")
            ) {
                try await cloud.provider.create(name: Self.name, spec: bad)
            }
            #expect(try await cloud.instances(Self.name.description).isEmpty)
            // Throttled twice, then through: one instance.
            cloud.faults.fail("RunInstances", times: 2, status: 400, code: "RequestLimitExceeded", message: "Request limit exceeded.")
            #expect(await createError() == nil)
            #expect(try await cloud.instances(Self.name.description).count == 1)
            // Throttled past the throttle's patience: a retryable error, not a failure of the run.
            cloud.faults.fail("DescribeInstances", times: 4, status: 503, code: "RequestLimitExceeded", message: "Request limit exceeded.")
            do {
                _ = try await cloud.provider.list()
                Issue.record("a list throttled four times came back")
            } catch {
                #expect(error.kind == .throttled && error.isRetryable)
            }
        }

        /// The channel: what the controller puts an instance reads through its presigned URL, and
        /// what the instance puts through its own comes back whole; a missing object is nil, and
        /// the bucket can be made twice.
        @Test func theChannelRoundTripsThroughPresignedURLs() async throws {
            let cloud = try await Cloud()
            let s3 = cloud.provider.channel.s3, bucket = cloud.provider.channel.bucket
            try await s3.createBucket(bucket)
            try await s3.createBucket(bucket)
            try await s3.expire(bucket, prefix: "machines/", days: 14)
            let payload = Data((0..<3000).map { UInt8($0 % 251) })
            try await s3.putObject(bucket, "machines/m/launch", payload)
            let get = try #require(s3.presignedURL("GET", bucket: bucket, key: "machines/m/launch", expires: 600))
            let (fetched, response) = try await URLSession.shared.data(from: get)
            #expect((response as? HTTPURLResponse)?.statusCode == 200 && fetched == payload, "\(String(decoding: fetched, as: UTF8.self))")
            var put = URLRequest(url: try #require(s3.presignedURL("PUT", bucket: bucket, key: "machines/m/status", expires: 600)))
            put.httpMethod = "PUT"
            put.setValue("application/octet-stream", forHTTPHeaderField: "Content-Type")
            put.httpBody = Data("exited 3\n".utf8)
            let (_, putResponse) = try await URLSession.shared.data(for: put)
            #expect((putResponse as? HTTPURLResponse)?.statusCode == 200)
            #expect(try await s3.getObject(bucket, "machines/m/status") == Data("exited 3\n".utf8))
            #expect(try await s3.getObject(bucket, "machines/m/none") == nil)
            #expect(try await s3.listObjects(bucket, prefix: "machines/m/").map(\.key).sorted() == ["machines/m/launch", "machines/m/status"])
        }

        /// Found by attacking: a 200 answer that is not EC2's (a proxy's or captive portal's page)
        /// was read as an empty list; an Ubuntu release with no image in the region was retried
        /// for ever instead of failing the instance.
        @Test func aForeignAnswerIsNoListAndAMissingImageFailsTheInstance() async throws {
            let cloud = try await Cloud(pendingFor: 0, invisibleFor: 0)
            try await cloud.provider.create(name: Self.name, spec: Self.spec)
            cloud.faults.fail("DescribeInstances", status: 200, code: "Portal", message: "sign in to the Wi-Fi")
            await #expect(throws: ProviderError.self) { try await cloud.provider.list() }
            // EC2's own answer, without its reservations: not a list of none.
            cloud.faults.answer(
                "DescribeInstances",
                body:
                    "<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>x</requestId></DescribeInstancesResponse>"
            )
            await #expect(throws: ProviderError.self) { try await cloud.provider.list() }
            #expect(try await cloud.provider.list().count == 1)
            let canonical = AWSProvider(
                ec2: cloud.moto.ec2(), channel: cloud.provider.channel, images: CanonicalImages(), throttle: Throttle(attempts: 2, base: 0.01))
            do {
                try await canonical.create(name: MachineName(parsing: "repl-abc123-1-2")!, spec: .aws(AWSSpec(image: .ubuntu("noble"))))
                Issue.record("a create with no image came back")
            } catch {
                #expect(error.kind == .invalid && !error.isRetryable, "\(error)")
            }
        }

        /// The token is the machine's own: the same for every retry of a name, another for another
        /// name or attempt, and within EC2's 64 ASCII characters.
        @Test func theTokenIsDerivedFromTheName() {
            let a = AWSProvider.clientToken(Self.name, attempt: 1)
            #expect(a == AWSProvider.clientToken(Self.name, attempt: 1))
            #expect(a != AWSProvider.clientToken(Self.name, attempt: 2))
            #expect(a != AWSProvider.clientToken(MachineName(parsing: "repl-abc123-1-2")!, attempt: 1))
            #expect(a.count <= 64 && a.allSatisfy(\.isASCII))
        }
    }
}
