import Foundation
import Testing

@testable import AWS

extension MotoTests {
    /// The EC2 client against moto on loopback, with a fault layer in front where moto cannot fail.
    @Suite struct EC2ClientTests {
        static let ami = "ami-12c6146b"  // one of the images moto ships

        func launch(_ ec2: EC2Client, _ name: String) async throws(AWSError) -> EC2Instance {
            try await ec2.runInstances(EC2Launch(name: name, imageID: Self.ami, instanceType: "t3.micro", clientToken: "token-\(name)"))
        }

        /// A fleet past one page is listed whole: 150 instances in 150 reservations, 50 a page
        /// (SkyREPL's list stops at its first 100 and leaks the rest).
        @Test func aFleetPastOnePageIsListedWhole() async throws {
            let moto = try await Moto()
            let faults = FaultTransport()
            let ec2 = moto.ec2(transport: faults)
            for i in 1...150 { _ = try await launch(ec2, "repl-abc123-1-\(i)") }
            let listed = try await ec2.describeInstances(filters: ["tag:Name": ["repl-*"]], pageSize: 50)
            #expect(Set(listed.compactMap(\.name)) == Set((1...150).map { "repl-abc123-1-\($0)" }))
            #expect(listed.count == 150)
            #expect(faults.count("DescribeInstances") >= 3)
            // Without a page size moto still pages (by reservation), and the client still follows.
            #expect(try await ec2.describeInstances(filters: ["tag:Name": ["repl-*"]]).count == 150)
        }

        /// A page that fails fails the list: never the first pages as if they were all.
        @Test func aFailedPageIsAFailedList() async throws {
            let moto = try await Moto()
            let faults = FaultTransport()
            let ec2 = moto.ec2(transport: faults)
            for i in 1...12 { _ = try await launch(ec2, "repl-abc123-1-\(i)") }
            _ = try await ec2.describeInstances(filters: [:], pageSize: 5)
            faults.fail("DescribeInstances")  // the first page of the next list
            await #expect(throws: AWSError.self) { try await ec2.describeInstances(filters: [:], pageSize: 5) }
            let pages = faults.count("DescribeInstances")
            #expect(pages >= 4)
            // The second page now: still no list.
            let before = faults.count("DescribeInstances")
            let second = SecondCallFails(inner: faults)
            let ec2b = moto.ec2(transport: second)
            do {
                _ = try await ec2b.describeInstances(filters: [:], pageSize: 5)
                Issue.record("a list with a failed second page was returned")
            } catch {
                #expect(error.kind == .throttled, "\(error)")
                #expect(faults.count("DescribeInstances") == before + 1)
            }
        }

        /// What comes back is what was asked: the name tag, the type, the image, a launch time,
        /// and a terminate that shows as shutting-down or terminated.
        @Test func aLaunchCarriesItsNameAndTerminates() async throws {
            let moto = try await Moto()
            let ec2 = moto.ec2()
            let started = Date().addingTimeInterval(-5)
            let made = try await launch(ec2, "repl-abc123-4-1")
            #expect(made.name == "repl-abc123-4-1" && made.instanceType == "t3.micro" && made.imageID == Self.ami)
            #expect(made.id.hasPrefix("i-"))
            let listed = try #require(try await ec2.describeInstances(filters: ["tag:Name": ["repl-abc123-4-1"]]).first)
            #expect(listed.id == made.id && (listed.launchTime ?? .distantPast) >= started)
            try await ec2.terminateInstances([made.id])
            let after = try await ec2.describeInstances(filters: ["instance-id": [made.id]])
            #expect(after.allSatisfy { ["shutting-down", "terminated"].contains($0.state) }, "\(after.map(\.state))")
            await #expect(throws: AWSError.self) { try await ec2.terminateInstances([]) }
        }

        /// AWS's error codes become what the controller does about them.
        @Test func errorsAreClassified() async throws {
            let moto = try await Moto()
            let faults = FaultTransport()
            let ec2 = moto.ec2(transport: faults)
            let cases: [(String, Int, AWSError.Kind)] = [
                ("InsufficientInstanceCapacity", 500, .capacity), ("VcpuLimitExceeded", 400, .quota),
                ("RequestLimitExceeded", 503, .throttled), ("AuthFailure", 401, .auth), ("InvalidParameterValue", 400, .invalid),
            ]
            for (code, status, kind) in cases {
                faults.fail("RunInstances", status: status, code: code)
                do {
                    _ = try await launch(ec2, "repl-abc123-5-1")
                    Issue.record("\(code) did not fail")
                } catch {
                    #expect(error.code == code && error.kind == kind && error.action == "RunInstances", "\(error)")
                }
            }
            // moto's own answer to an image that does not exist.
            do {
                _ = try await ec2.runInstances(
                    EC2Launch(name: "repl-abc123-5-2", imageID: "ami-00000000", instanceType: "t3.micro", clientToken: "t"))
            } catch {
                #expect(error.code.hasPrefix("InvalidAMIID"), "\(error)")
            }
        }

        /// With moto checking signatures, a request signed here is accepted, and one signed with
        /// the wrong secret is refused as an auth failure.
        @Test func motoAcceptsOurSignature() async throws {
            let moto = try await Moto()
            let credentials = try await moto.checkSignatures()
            let ec2 = moto.ec2(credentials: credentials)
            _ = try await launch(ec2, "repl-abc123-6-1")
            #expect(try await ec2.describeInstances(filters: [:]).count == 1)
            let wrong = moto.ec2(credentials: AWSCredentials(accessKeyID: credentials.accessKeyID, secretAccessKey: "not-the-secret"))
            do {
                _ = try await wrong.describeInstances(filters: [:])
                Issue.record("a wrong signature was accepted")
            } catch {
                #expect(error.kind == .auth, "\(error)")
            }
        }
    }

    /// Lets the first call through and fails the second (a list's second page).
    final class SecondCallFails: AWSTransport, @unchecked Sendable {
        let inner: any AWSTransport
        private let lock = NSLock()
        private var calls = 0
        init(inner: any AWSTransport) { self.inner = inner }
        func send(_ request: HTTPRequest, timeout: TimeInterval) async throws(AWSError) -> HTTPResponse {
            let n = lock.withLock {
                calls += 1; return calls
            }
            if n == 2 {
                return HTTPResponse(
                    status: 503,
                    body: Data("<Response><Errors><Error><Code>ServiceUnavailable</Code><Message>x</Message></Error></Errors></Response>".utf8))
            }
            return try await inner.send(request, timeout: timeout)
        }
    }
}
