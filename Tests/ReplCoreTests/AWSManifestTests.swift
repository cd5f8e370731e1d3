import Testing

@testable import ReplCore

/// `provider: aws` in a manifest: its own `spec:` mapping, what EC2 can do that OrbStack cannot
/// (spot, regions, networking), and every mistake named by file, line and field.
struct AWSManifestTests {
    func run(_ yaml: String) throws -> RunManifest {
        let set = try ManifestParser().parse(yaml, file: "run.yaml")
        guard case .run(let run) = try #require(set.documents.first).manifest else { throw ManifestError([]) }
        return run
    }

    func errors(_ yaml: String) -> [String] {
        do {
            _ = try ManifestParser().parse(yaml, file: "run.yaml")
            return []
        } catch {
            return error.diagnostics.map(\.description)
        }
    }

    @Test func aWholeSpecIsRead() throws {
        let run = try run(
            """
            kind: Run
            name: train
            provider: aws
            spec:
              instanceType: m7g.large
              image: ubuntu:22.04
              region: eu-west-1
              zone: eu-west-1b
              subnet: subnet-0abc123
              securityGroups: [sg-0123abcd, sg-99]
              keyName: me
              spot: true
            command: echo hi
            replicas: 3
            """)
        #expect(run.provider == "aws" && run.replicas == 3 && run.command == "echo hi")
        #expect(
            run.source
                == .aws(
                    AWSSpec(
                        instanceType: "m7g.large", image: .ubuntu("jammy"), region: "eu-west-1", zone: "eu-west-1b", subnet: "subnet-0abc123",
                        securityGroups: ["sg-0123abcd", "sg-99"], keyName: "me", spot: true)))
        guard case .aws(let spec) = run.source else { return }
        #expect(spec.arch == "arm64")
    }

    /// A run cloned from a snapshot of an aws run is on aws without saying so (an AMI clones
    /// onto EC2), through a chain of clones too; what EC2 cannot honour is named where it stands.
    @Test func aCloneRunsOnItsSnapshotsProvider() throws {
        let yaml = """
            kind: Run
            name: base
            provider: aws
            spec: {image: ubuntu:noble}
            ---
            kind: Snapshot
            name: gold
            from: base
            ---
            kind: Run
            name: copy
            from: gold
            ---
            kind: Snapshot
            name: silver
            from: copy
            ---
            kind: Run
            name: copy-of-copy
            from: silver
            """
        let set = try ManifestParser().parse(yaml, file: "run.yaml")
        #expect(set.runs.map(\.provider) == ["aws", "aws", "aws"])
        // An OrbStack one stays OrbStack's.
        let orb = try ManifestParser().parse(
            "kind: Run\nname: b\n---\nkind: Snapshot\nname: s\nfrom: b\n---\nkind: Run\nname: c\nfrom: s\n", file: "o.yaml")
        #expect(orb.runs.map(\.provider) == ["orbstack", "orbstack"])
        #expect(
            errors(yaml + "\nisolated: true")
                == [
                    "run.yaml:21:1: isolated: not supported on aws (snapshot silver is of a run on aws): aws machines have no OrbStack options (isolated, user, userData); each is a whole VM; remove this key"
                ])
    }

    @Test func defaultsAreATinyUbuntuLTS() throws {
        let run = try run("kind: Run\nname: a\nprovider: aws\ncommand: uname -a\n")
        #expect(run.source == .aws(AWSSpec()))
        guard case .aws(let spec) = run.source else { return }
        #expect(spec.instanceType == "t3.micro" && spec.image == .ubuntu("noble") && spec.arch == "amd64")
        // An AMI by id; an arch given where the type does not say.
        let ami = try self.run("kind: Run\nname: a\nprovider: aws\nspec: {image: ami-0123456789abcdef0, endpoint: 'http://127.0.0.1:5000'}\n")
        #expect(ami.source == .aws(AWSSpec(image: .ami("ami-0123456789abcdef0"), endpoint: "http://127.0.0.1:5000")))
    }

    /// EBS volumes are real on EC2: the root disk's size, and more volumes, each on its own
    /// device and deleted with its instance.
    @Test func volumesAreReadWithTheirDevices() throws {
        let run = try run(
            """
            kind: Run
            name: data
            provider: aws
            spec:
              disk: 30G
              volumes:
                - 100G
                - {size: 1.5T, type: st1, device: /dev/sdf}
                - {size: 500M}
            """)
        guard case .aws(let spec) = run.source else { throw ManifestError([]) }
        #expect(spec.disk == 30)
        #expect(
            spec.volumes == [
                AWSSpec.Volume(gib: 100, device: "/dev/sdg"), AWSSpec.Volume(gib: 1536, type: "st1", device: "/dev/sdf"),
                AWSSpec.Volume(gib: 1, device: "/dev/sdh"),
            ])
    }

    @Test func orbstackManifestsAreUnchanged() throws {
        let run = try run("kind: Run\nname: a\nspec: ubuntu:noble:arm64\n")
        #expect(run.provider == "orbstack" && run.source == .spec(Spec(distro: "ubuntu", version: "noble", arch: "arm64")))
        #expect(
            errors("kind: Run\nname: a\nprovider: gcp\n") == [
                "run.yaml:3:11: provider: unknown provider \"gcp\" (supported: orbstack, aws)"
            ])
        // OrbStack still refuses what only a cloud has, and says so as before.
        #expect(errors("kind: Run\nname: a\nspot: true\n") == ["run.yaml:3:1: spot: not supported: OrbStack has no spot instances; remove this key"])
    }

    @Test(arguments: [
        (
            "kind: Run\nname: a\nprovider: aws\nspec: ubuntu:noble\n",
            "run.yaml:4:7: spec: a provider: aws spec is a mapping such as {instanceType: t3.micro, image: ubuntu:noble}, got the text \"ubuntu:noble\""
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nspec:\n  instanceType: t3micro\n",
            "run.yaml:5:17: spec.instanceType: \"t3micro\" is not an EC2 instance type (e.g. t3.micro, m7g.large)"
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nspec:\n  instanceTyp: t3.micro\n",
            "run.yaml:5:3: spec.instanceTyp: unknown key; did you mean instanceType?"
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nspec:\n  image: debian\n",
            "run.yaml:5:10: spec.image: \"debian\" is neither an AMI id (ami-…) nor an Ubuntu release (ubuntu:noble)"
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nspec:\n  region: eu-west-1\n  zone: us-east-1a\n",
            "run.yaml:6:9: spec.zone: us-east-1a is not in the spec's region eu-west-1"
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nspec:\n  securityGroups: sg-1\n",
            "run.yaml:5:19: spec.securityGroups: expected a list of security group ids such as [sg-0123abcd], got the text \"sg-1\""
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nspec:\n  spot: often\n",
            "run.yaml:5:9: spec.spot: expected true or false, got the text \"often\""
        ),
        // Found by attacking: a Graviton type with amd64, a key pair name EC2 cannot hold, an
        // endpoint with a query were all accepted and sent to EC2.
        (
            "kind: Run\nname: a\nprovider: aws\nspec: {instanceType: t4g.micro, arch: amd64}\n",
            "run.yaml:4:39: spec.arch: amd64, but t4g.micro is an arm64 (Graviton) type; remove arch or pick another type"
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nspec: {keyName: \(String(repeating: "k", count: 256))}\n",
            "run.yaml:4:17: spec.keyName: is 256 characters long; an EC2 key pair name has at most 255"
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nspec: {endpoint: 'http://127.0.0.1:1/x?y#z'}\n",
            "run.yaml:4:18: spec.endpoint: \"http://127.0.0.1:1/x?y#z\" has a query or fragment; give the service's base URL (e.g. http://127.0.0.1:5000)"
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nspot: true\n",
            "run.yaml:4:1: spot: belongs under spec: on aws (spec: {spot: true})"
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nresources: {cpus: 2}\n",
            "run.yaml:4:1: resources: not supported: aws sizes a machine by its spec.instanceType; remove this key"
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nspec:\n  disk: 30\n",
            "run.yaml:5:9: spec.disk: \"30\" is not a size (it has no unit); use 30G, 100G or 1T"
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nspec:\n  volumes: [17T]\n",
            "run.yaml:5:13: spec.volumes: 17T is more than an EBS volume holds (16T)"
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nspec:\n  volumes: [{size: 1G, type: ssd}]\n",
            "run.yaml:5:30: spec.volumes.type: \"ssd\" is not an EBS volume type (gp3, gp2, st1, sc1, standard)"
        ),
        // Found by attacking: accepted, and refused by EC2 at every launch.
        (
            "kind: Run\nname: a\nprovider: aws\nspec:\n  volumes: [{size: 4G, type: io1}]\n",
            "run.yaml:5:30: spec.volumes.type: \"io1\" is not an EBS volume type (gp3, gp2, st1, sc1, standard)"
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nspec:\n  volumes: [{size: 10G, type: st1}]\n",
            "run.yaml:5:20: spec.volumes.size: 10G is not a size EBS makes a st1 volume in (125G to 16384G)"
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nspec:\n  volumes: [{size: 1G, device: /dev/sdg}, {size: 2G, device: /dev/sdg}]\n",
            "run.yaml:5:43: spec.volumes: /dev/sdg is given to two volumes"
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nspec:\n  volumes: [{type: gp3}]\n",
            "run.yaml:5:13: spec.volumes: a volume needs its size (size: 100G)"
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nvolumes: [10G]\n",
            "run.yaml:4:1: volumes: belongs under spec: on aws (spec: {volumes: …})"
        ),
        (
            "kind: Run\nname: a\nprovider: aws\nfiles: [{from: ., to: /srv}]\n",
            "run.yaml:4:1: files: not supported: aws cannot copy files into its machines yet; fetch them in bootstrap; remove this key"
        ),
    ])
    func mistakesAreNamedByFileLineAndField(_ yaml: String, _ expected: String) {
        #expect(errors(yaml) == [expected])
    }

    @Test func everyProblemOfADocumentIsReportedAtOnce() {
        let problems = errors(
            """
            kind: Run
            name: a
            provider: aws
            spec:
              instanceType: huge
              region: mars
              keyName: ""
            """)
        #expect(
            problems == [
                "run.yaml:5:17: spec.instanceType: \"huge\" is not an EC2 instance type (e.g. t3.micro, m7g.large)",
                "run.yaml:6:11: spec.region: \"mars\" is not an AWS region (e.g. eu-west-1)",
                "run.yaml:7:12: spec.keyName: is empty; give the name of an EC2 key pair or remove the key",
            ])
    }
}
