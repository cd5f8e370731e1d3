import Foundation
import Testing

@testable import ReplCore

/// The field checks of a `provider: aws` spec, each refusal saying what a valid value is.
struct AWSSpecTests {
    @Test func gravitonTypesAreArm() {
        for type in ["t4g.micro", "m7g.large", "c7gn.xlarge", "x2gd.medium", "g5g.xlarge", "hpc7g.4xlarge"] {
            #expect(AWSSpec.arch(of: type) == "arm64", "\(type)")
        }
        for type in ["t3.micro", "m7i.large", "g5.xlarge", "p4d.24xlarge", "m7i-flex.large", "inf2.xlarge", "bogus"] {
            #expect(AWSSpec.arch(of: type) == "amd64", "\(type)")
        }
        #expect(AWSSpec(instanceType: "t4g.small").arch == "arm64")
        #expect(AWSSpec(instanceType: "t4g.small", arch: "amd64").arch == "amd64")
    }

    @Test func instanceTypesImagesAndRegionsAreChecked() throws {
        #expect(try AWSSpec.instanceType("m7g.large").get() == "m7g.large")
        for bad in ["large", "M7g.large", "m7g.", ".large", "m7g.large.x", "t3 micro"] {
            #expect((try? AWSSpec.instanceType(bad).get()) == nil, "\(bad)")
        }
        #expect(try AWSSpec.image("ami-0123456789abcdef0").get() == .ami("ami-0123456789abcdef0"))
        #expect(try AWSSpec.image("ami-12c6146b").get() == .ami("ami-12c6146b"))
        #expect(try AWSSpec.image("ubuntu:24.04").get() == .ubuntu("noble"))
        #expect(try AWSSpec.image("Ubuntu:jammy").get() == .ubuntu("jammy"))
        #expect(try AWSSpec.image("ubuntu").get() == .ubuntu("noble"))
        guard case .failure(let problem) = AWSSpec.image("ubuntu:trusty") else {
            Issue.record("trusty accepted")
            return
        }
        #expect(problem.message.contains("known: focal (20.04)"))
        for bad in ["ami-XYZ", "ami-0123", "debian:12", ""] { #expect((try? AWSSpec.image(bad).get()) == nil, "\(bad)") }
        #expect(try AWSSpec.region("us-gov-west-1").get() == "us-gov-west-1")
        for bad in ["eu-west", "EU-west-1", "eu--1", "useast1"] { #expect((try? AWSSpec.region(bad).get()) == nil, "\(bad)") }
        #expect(try AWSSpec.zone("eu-west-1a", region: "eu-west-1").get() == "eu-west-1a")
        #expect((try? AWSSpec.zone("eu-west-1a", region: "us-east-1").get()) == nil)
        #expect(try AWSSpec.resourceID("subnet-0abc12", prefix: "subnet", what: "subnet").get() == "subnet-0abc12")
        #expect((try? AWSSpec.resourceID("sg-xyz", prefix: "sg", what: "security group").get()) == nil)
        #expect((try? AWSSpec.endpoint("ftp://x").get()) == nil)
        #expect(try AWSSpec.endpoint("http://127.0.0.1:5000").get() == "http://127.0.0.1:5000")
    }

    @Test func aSpecIsStoredAndReadBack() throws {
        let spec = AWSSpec(instanceType: "m7g.large", image: .ami("ami-12c6146b"), region: "eu-west-1", securityGroups: ["sg-1"], spot: true)
        let data = try JSONEncoder().encode(spec)
        #expect(try JSONDecoder().decode(AWSSpec.self, from: data) == spec)
        #expect(spec.description == "aws m7g.large ami-12c6146b eu-west-1 spot")
    }
}
