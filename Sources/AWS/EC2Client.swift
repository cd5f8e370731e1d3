import Foundation
import ReplCore

/// An EC2 instance as `DescribeInstances` and `RunInstances` report it.
public struct EC2Instance: Sendable, Equatable {
    public var id: String
    /// The `Name` tag: the machine name repl gave it.
    public var name: String?
    public var tags: [String: String]
    /// pending, running, shutting-down, terminated, stopping, stopped.
    public var state: String
    public var instanceType: String
    public var imageID: String
    public var launchTime: Date?
    public var clientToken: String?
    public var zone: String?
    public var privateIP: String?
    public var publicIP: String?
    public var subnetID: String?

    init(_ item: XMLTree) {
        id = item.text("instanceId") ?? ""
        var tags: [String: String] = [:]
        for tag in item.items("tagSet") { if let key = tag.text("key") { tags[key] = tag.text("value") ?? "" } }
        self.tags = tags
        name = tags["Name"]
        state = item.text("instanceState", "name") ?? ""
        instanceType = item.text("instanceType") ?? ""
        imageID = item.text("imageId") ?? ""
        launchTime = item.text("launchTime").flatMap(DateFormats.parse)
        clientToken = item.text("clientToken").flatMap { $0.isEmpty ? nil : $0 }
        zone = item.text("placement", "availabilityZone")
        privateIP = item.text("privateIpAddress")
        publicIP = item.text("ipAddress")
        subnetID = item.text("subnetId")
    }
}

/// What `RunInstances` is asked for: one instance, named, tagged, idempotent by its token.
public struct EC2Launch: Sendable, Equatable {
    public var name: String
    public var imageID: String
    public var instanceType: String
    /// The same token on every retry of one create: EC2 makes the instance at most once.
    public var clientToken: String
    public var userData: Data?
    public var subnetID: String?
    public var securityGroupIDs: [String]
    public var keyName: String?
    public var zone: String?
    /// A one-time spot instance, terminated (never stopped) when EC2 takes it back.
    public var spot: Bool
    public var tags: [String: String]
    /// A `poweroff` inside the instance terminates it (the disks are not billed on).
    public var terminateOnShutdown: Bool
    /// The root volume (gp3, at the image's root device); nil: the image's own size.
    public var rootDisk: AWSSpec.Volume?
    /// More EBS volumes, each deleted with the instance.
    public var volumes: [AWSSpec.Volume] = []

    public init(
        name: String, imageID: String, instanceType: String, clientToken: String, userData: Data? = nil, subnetID: String? = nil,
        securityGroupIDs: [String] = [], keyName: String? = nil, zone: String? = nil, spot: Bool = false, tags: [String: String] = [:],
        terminateOnShutdown: Bool = true
    ) {
        self.name = name
        self.imageID = imageID
        self.instanceType = instanceType
        self.clientToken = clientToken
        self.userData = userData
        self.subnetID = subnetID
        self.securityGroupIDs = securityGroupIDs
        self.keyName = keyName
        self.zone = zone
        self.spot = spot
        self.tags = tags
        self.terminateOnShutdown = terminateOnShutdown
    }
}

/// An AWS Query API (EC2, IAM, STS): each call one signed form POST, answered in XML.
public struct QueryAPI: Sendable {
    public let endpoint: URL
    public let signer: SigV4
    public let version: String
    public let transport: any AWSTransport
    public var timeout: TimeInterval = 30
    let now: @Sendable () -> Date

    public init(
        endpoint: URL, region: String, service: String, version: String, credentials: AWSCredentials,
        transport: any AWSTransport = URLSessionTransport(), now: @escaping @Sendable () -> Date = Date.init
    ) {
        self.endpoint = endpoint
        self.signer = SigV4(credentials: credentials, region: region, service: service)
        self.version = version
        self.transport = transport
        self.now = now
    }

    /// One action; its answer's root element, or the error AWS gave.
    public func call(_ action: String, _ parameters: [(String, String)]) async throws(AWSError) -> XMLTree {
        let form = ([("Action", action), ("Version", version)] + parameters)
            .map { "\(SigV4.encode($0.0))=\(SigV4.encode($0.1))" }.joined(separator: "&")
        var request = SignableRequest(
            method: "POST", path: endpoint.path.isEmpty ? "/" : endpoint.path,
            headers: [("Host", Self.hostHeader(endpoint)), ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
            body: Data(form.utf8))
        signer.sign(&request, at: now())
        let response = try await transport.send(
            HTTPRequest(url: endpoint, method: "POST", headers: request.headers, body: request.body), timeout: timeout)
        guard (200..<300).contains(response.status) else { throw AWSError.from(response, action: action) }
        guard let tree = XMLTree.parse(response.body) else {
            throw AWSError(code: "MalformedResponse", message: "the answer is not XML", status: response.status, action: action)
        }
        // Only the action's own answer counts: a 200 page of something else (a proxy's, a
        // captive portal's) is never read as, say, an empty list (found by attacking).
        guard tree.name == "\(action)Response" else {
            throw AWSError(
                code: "MalformedResponse", message: "the answer is <\(tree.name.prefix(40))>, not <\(action)Response>", status: response.status,
                action: action)
        }
        return tree
    }

    /// `host` or `host:port` where the port is not the scheme's own: what the request's Host
    /// header carries, and so what is signed.
    static func hostHeader(_ url: URL) -> String {
        let host = url.host ?? ""
        guard let port = url.port else { return host }
        let isDefault = (url.scheme == "https" && port == 443) || (url.scheme == "http" && port == 80)
        return isDefault ? host : "\(host):\(port)"
    }
}

/// EC2 spoken natively (no AWS CLI, which costs about half a second a call).
public struct EC2Client: Sendable {
    public let api: QueryAPI

    public init(
        endpoint: URL, region: String, credentials: AWSCredentials, transport: any AWSTransport = URLSessionTransport(),
        now: @escaping @Sendable () -> Date = Date.init
    ) {
        api = QueryAPI(
            endpoint: endpoint, region: region, service: "ec2", version: "2016-11-15", credentials: credentials, transport: transport, now: now)
    }

    func call(_ action: String, _ parameters: [(String, String)]) async throws(AWSError) -> XMLTree {
        try await api.call(action, parameters)
    }

    /// Every instance matching `filters`, following `NextToken` to the last page: a failed
    /// page fails the whole list (a list cut short would make machines look gone).
    public func describeInstances(filters: [String: [String]], pageSize: Int? = nil) async throws(AWSError) -> [EC2Instance] {
        var parameters = Self.filterParameters(filters)
        if let pageSize { parameters.append(("MaxResults", String(pageSize))) }
        var instances: [EC2Instance] = []
        var token: String?
        var seen: Set<String> = []
        repeat {
            let page = try await call("DescribeInstances", parameters + (token.map { [("NextToken", $0)] } ?? []))
            // EC2 always says its reservations, an empty set included: an answer without them is
            // not a list of none (found by attacking: it was read as every machine gone).
            guard page.child("reservationSet") != nil else {
                throw AWSError(code: "MalformedResponse", message: "the answer has no reservationSet", action: "DescribeInstances")
            }
            for reservation in page.items("reservationSet") {
                instances += reservation.items("instancesSet").map(EC2Instance.init)
            }
            token = page.text("nextToken").flatMap { $0.isEmpty ? nil : $0 }
            if let t = token, !seen.insert(t).inserted {
                throw AWSError(code: "MalformedResponse", message: "the same NextToken came twice", action: "DescribeInstances")
            }
        } while token != nil
        return instances
    }

    /// Launches one instance; with the same `clientToken`, EC2 returns the first launch's
    /// instance instead of making another.
    public func runInstances(_ launch: EC2Launch) async throws(AWSError) -> EC2Instance {
        var p: [(String, String)] = [
            ("ImageId", launch.imageID), ("InstanceType", launch.instanceType), ("MinCount", "1"), ("MaxCount", "1"),
            ("ClientToken", launch.clientToken),
            ("TagSpecification.1.ResourceType", "instance"),
        ]
        // Every volume goes with its instance: none is left behind, billed, by a terminate.
        let disks = (launch.rootDisk.map { [$0] } ?? []) + launch.volumes
        for (i, disk) in disks.enumerated() {
            let n = "BlockDeviceMapping.\(i + 1)"
            p += [
                ("\(n).DeviceName", disk.device), ("\(n).Ebs.VolumeSize", String(disk.gib)), ("\(n).Ebs.VolumeType", disk.type),
                ("\(n).Ebs.DeleteOnTermination", "true"),
            ]
        }
        let tags = [("Name", launch.name)] + launch.tags.sorted { $0.key < $1.key }.filter { $0.key != "Name" }
        for (i, tag) in tags.enumerated() {
            p += [("TagSpecification.1.Tag.\(i + 1).Key", tag.0), ("TagSpecification.1.Tag.\(i + 1).Value", tag.1)]
        }
        if launch.terminateOnShutdown { p.append(("InstanceInitiatedShutdownBehavior", "terminate")) }
        if let data = launch.userData { p.append(("UserData", data.base64EncodedString())) }
        if let subnet = launch.subnetID { p.append(("SubnetId", subnet)) }
        for (i, group) in launch.securityGroupIDs.enumerated() { p.append(("SecurityGroupId.\(i + 1)", group)) }
        if let key = launch.keyName { p.append(("KeyName", key)) }
        if let zone = launch.zone { p.append(("Placement.AvailabilityZone", zone)) }
        if launch.spot {
            p += [
                ("InstanceMarketOptions.MarketType", "spot"), ("InstanceMarketOptions.SpotOptions.SpotInstanceType", "one-time"),
                ("InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior", "terminate"),
            ]
        }
        let answer = try await call("RunInstances", p)
        guard let item = answer.items("instancesSet").first else {
            throw AWSError(code: "MalformedResponse", message: "no instance in the answer", action: "RunInstances")
        }
        return EC2Instance(item)
    }

    /// Terminates the instances named by id (never none: an empty list is refused here, as a
    /// bare `orbctl stop` is refused for OrbStack).
    public func terminateInstances(_ ids: [String]) async throws(AWSError) {
        _ = try await call("TerminateInstances", try Self.named(ids, "TerminateInstances"))
    }

    /// Stops the instances named by id (never none).
    public func stopInstances(_ ids: [String]) async throws(AWSError) {
        _ = try await call("StopInstances", try Self.named(ids, "StopInstances"))
    }

    /// Starts the stopped instances named by id (never none).
    public func startInstances(_ ids: [String]) async throws(AWSError) {
        _ = try await call("StartInstances", try Self.named(ids, "StartInstances"))
    }

    /// EC2's `Filter.N.Name` / `Filter.N.Value.M` parameters, in a stable order.
    static func filterParameters(_ filters: [String: [String]]) -> [(String, String)] {
        var parameters: [(String, String)] = []
        for (i, name) in filters.keys.sorted().enumerated() {
            parameters.append(("Filter.\(i + 1).Name", name))
            for (j, value) in filters[name]!.enumerated() { parameters.append(("Filter.\(i + 1).Value.\(j + 1)", value)) }
        }
        return parameters
    }

    /// `InstanceId.N` parameters; an empty list, or anything not an instance id, is refused
    /// before any call.
    static func named(_ ids: [String], _ action: String) throws(AWSError) -> [(String, String)] {
        guard !ids.isEmpty, ids.allSatisfy({ $0.hasPrefix("i-") && $0.count > 2 }) else {
            throw AWSError(code: "InvalidParameterValue", message: "\(action) needs instance ids", action: action)
        }
        return ids.enumerated().map { ("InstanceId.\($0.offset + 1)", $0.element) }
    }

    /// Images owned by `owners` matching `filters` (`name`, `state`, `tag:KEY`), each with its
    /// id, name and creation date.
    public func describeImages(owners: [String], filters: [String: [String]]) async throws(AWSError) -> [EC2Image] {
        var parameters = owners.enumerated().map { ("Owner.\($0.offset + 1)", $0.element) }
        parameters += Self.filterParameters(filters)
        let answer = try await call("DescribeImages", parameters)
        guard answer.child("imagesSet") != nil else {
            throw AWSError(code: "MalformedResponse", message: "the answer has no imagesSet", action: "DescribeImages")
        }
        return answer.items("imagesSet").map { item in
            var tags: [String: String] = [:]
            for tag in item.items("tagSet") { if let key = tag.text("key") { tags[key] = tag.text("value") ?? "" } }
            return EC2Image(
                id: item.text("imageId") ?? "", name: item.text("name") ?? "", state: item.text("imageState") ?? "",
                created: item.text("creationDate").flatMap(DateFormats.parse), tags: tags,
                snapshotIDs: item.items("blockDeviceMapping").compactMap { $0.text("ebs", "snapshotId") }, rootDevice: item.text("rootDeviceName"))
        }
    }

    /// An AMI of the instance, named and tagged, taken without a reboot (the instance's run goes
    /// on). Returns the image's id. Its EBS snapshots are not tagged (moto answers 500 to a
    /// snapshot tag specification here): they are found through the image.
    public func createImage(instanceID: String, name: String, tags: [String: String]) async throws(AWSError) -> String {
        var p: [(String, String)] = [("InstanceId", instanceID), ("Name", name), ("NoReboot", "true"), ("TagSpecification.1.ResourceType", "image")]
        let all = [("Name", name)] + tags.sorted { $0.key < $1.key }.filter { $0.key != "Name" }
        for (i, tag) in all.enumerated() {
            p += [("TagSpecification.1.Tag.\(i + 1).Key", tag.0), ("TagSpecification.1.Tag.\(i + 1).Value", tag.1)]
        }
        let answer = try await call("CreateImage", p)
        guard let id = answer.text("imageId"), id.hasPrefix("ami-") else {
            throw AWSError(code: "MalformedResponse", message: "no image id in the answer", action: "CreateImage")
        }
        return id
    }

    /// Tags a resource (an image, after a `CreateImage` whose own tags were not applied or whose
    /// answer was lost).
    public func createTags(_ id: String, _ tags: [String: String]) async throws(AWSError) {
        var p: [(String, String)] = [("ResourceId.1", id)]
        for (i, tag) in tags.sorted(by: { $0.key < $1.key }).enumerated() {
            p += [("Tag.\(i + 1).Key", tag.key), ("Tag.\(i + 1).Value", tag.value)]
        }
        _ = try await call("CreateTags", p)
    }

    public func deregisterImage(_ id: String) async throws(AWSError) {
        guard id.hasPrefix("ami-") else { throw AWSError(code: "InvalidParameterValue", message: "not an image id", action: "DeregisterImage") }
        _ = try await call("DeregisterImage", [("ImageId", id)])
    }

    public func deleteSnapshot(_ id: String) async throws(AWSError) {
        guard id.hasPrefix("snap-") else { throw AWSError(code: "InvalidParameterValue", message: "not a snapshot id", action: "DeleteSnapshot") }
        _ = try await call("DeleteSnapshot", [("SnapshotId", id)])
    }
}

/// An AMI as `DescribeImages` reports it.
public struct EC2Image: Sendable, Equatable {
    public var id: String
    public var name: String
    public var state: String
    public var created: Date?
    public var tags: [String: String] = [:]
    /// The EBS snapshots the image is made of (deleted with it).
    public var snapshotIDs: [String] = []
    /// The device its root volume is at (`/dev/sda1` on Ubuntu's).
    public var rootDevice: String?
}

/// STS, for the one thing repl asks of it: which account the credentials are of.
public struct STSClient: Sendable {
    public let api: QueryAPI

    public init(endpoint: URL, region: String, credentials: AWSCredentials, transport: any AWSTransport = URLSessionTransport()) {
        api = QueryAPI(endpoint: endpoint, region: region, service: "sts", version: "2011-06-15", credentials: credentials, transport: transport)
    }

    /// The account the credentials belong to (`GetCallerIdentity`, which needs no permission).
    public func account() async throws(AWSError) -> String {
        let answer = try await api.call("GetCallerIdentity", [])
        guard let account = answer.text("GetCallerIdentityResult", "Account"), !account.isEmpty else {
            throw AWSError(code: "MalformedResponse", message: "the answer names no account", action: "GetCallerIdentity")
        }
        return account
    }
}
