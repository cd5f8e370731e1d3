import Foundation
import OrbStack
import ReplCore

/// Finds the AMI a spec's image stands for in the client's region.
public protocol ImageLookup: Sendable {
    func ami(for image: AWSSpec.Image, arch: String, ec2: EC2Client) async throws(AWSError) -> String
}

/// An AMI id as it is; an Ubuntu release as Canonical's newest server image of it (owner
/// 099720109477), looked up once per process and release.
public final class CanonicalImages: ImageLookup, @unchecked Sendable {
    public static let canonical = "099720109477"
    private let lock = NSLock()
    private var found: [String: String] = [:]

    public init() {}

    public func ami(for image: AWSSpec.Image, arch: String, ec2: EC2Client) async throws(AWSError) -> String {
        guard case .ubuntu(let codename) = image else {
            if case .ami(let id) = image { return id }
            return ""
        }
        let key = "\(codename)/\(arch)"
        if let id = lock.withLock({ found[key] }) { return id }
        let images = try await ec2.describeImages(
            owners: [Self.canonical],
            filters: ["name": ["ubuntu/images/*/ubuntu-\(codename)-*-\(arch)-server-*"], "state": ["available"]])
        guard let newest = images.max(by: { ($0.created ?? .distantPast, $0.name) < ($1.created ?? .distantPast, $1.name) }) else {
            throw AWSError(
                code: "InvalidAMIID.NotFound", message: "no Ubuntu \(codename) \(arch) image of Canonical's in this region; give spec.image: ami-…",
                action: "DescribeImages")
        }
        lock.withLock { found[key] = newest.id }
        return newest.id
    }
}

/// EC2 as a repl provider: each machine one instance tagged `Name=<machine name>`, listed with
/// one `DescribeInstances` (every page), made exactly once by a `ClientToken` derived from its
/// name, and terminated (never left stopped and billed) when deleted.
public struct AWSProvider: Provider {
    public let ec2: EC2Client
    /// The status channel: the bucket every instance's agent reads its run from and writes its
    /// status and logs to (``InstanceAgent``).
    public let channel: Channel
    public let images: any ImageLookup
    public let throttle: Throttle
    /// Root devices by image (``rootDevice(of:)``).
    let roots = LockedValue<[String: String]>([:])
    /// The controller's limits and breaker, each EC2 call one call of its lane (a launch takes
    /// capacity: held back while the breaker is open).
    var limits: CallLimits?

    public struct Channel: Sendable {
        public let s3: S3Client
        public let bucket: String
        /// Channel objects expire this many days after they were written.
        public var expireAfterDays = 14
        let made = Once()

        public init(s3: S3Client, bucket: String) {
            self.s3 = s3
            self.bucket = bucket
        }

        /// One bucket per control id and region (bucket names are global).
        public static func bucket(controlID: ControlID, region: String) -> String { "repl-\(controlID)-\(region)" }
    }

    public init(ec2: EC2Client, channel: Channel, images: any ImageLookup = CanonicalImages(), throttle: Throttle = Throttle()) {
        self.ec2 = ec2
        self.channel = channel
        self.images = images
        self.throttle = throttle
    }

    public var capabilities: ProviderCapabilities { .aws }

    /// Every state but `terminated`: a machine shutting down is still there (and still ours).
    public static let liveStates = ["pending", "running", "stopping", "stopped", "shutting-down"]

    /// `DescribeInstances`' largest page: a fleet of up to 1,000 instances is one call (moto, and
    /// EC2 at times, page even without it).
    static let pageSize = 1000

    /// How many spent tokens a create steps over (each one an instance of this name that was
    /// launched and has ended) before it gives up.
    static let tokenAttempts = 8

    /// Every instance, then every snapshot (an AMI of ours, listed as a stopped machine once it
    /// is available): two calls, each over every page.
    public func list() async throws(ProviderError) -> [ObservedMachine] {
        let ec2 = self.ec2
        let instances = try await call("list the instances") { () async throws(AWSError) in
            try await ec2.describeInstances(filters: ["tag:Name": ["repl-*"], "instance-state-name": Self.liveStates], pageSize: Self.pageSize)
        }
        let images = try await call("list the snapshots") { () async throws(AWSError) in
            try await ec2.describeImages(owners: ["self"], filters: ["tag:Name": ["repl-*"]])
        }
        return Self.oldestFirst(instances).compactMap(Self.observed) + images.compactMap(Self.observed)
    }

    public func state(name: MachineName) async throws(ProviderError) -> MachineState? {
        if let instance = try await instances(named: name).first { return Self.state(instance.state) }
        return try await images(named: name).first.map { Self.imageState($0.state) }
    }

    public func create(name: MachineName, spec: MachineSpec, options: MachineOptions) async throws(ProviderError) {
        guard case .aws(let spec) = spec else { throw ProviderError(.invalid, "aws cannot make \(spec): that is an OrbStack machine") }
        // The second guard after the token: an instance already carrying the name is this one.
        if try await !instances(named: name).isEmpty { return }
        let images = self.images, ec2 = self.ec2
        let image: String
        do {
            image = try await call("find the image \(spec.image)") { () async throws(AWSError) in
                try await images.ami(for: spec.image, arch: spec.arch, ec2: ec2)
            }
        } catch  where error.kind == .notFound {
            // No such image in the region: the instance fails with it, never retried for ever.
            throw ProviderError(.invalid, error.message)
        }
        // A root disk of its own size is the image's root device's, named as the image names it.
        var rootDisk: AWSSpec.Volume?
        if let gib = spec.disk { rootDisk = AWSSpec.Volume(gib: gib, device: try await rootDevice(of: image)) }
        try await ensureChannel()
        let userData = Data(agent(name).utf8)
        for attempt in 1...Self.tokenAttempts {
            var launch = EC2Launch(
                name: name.description, imageID: image, instanceType: spec.instanceType, clientToken: Self.clientToken(name, attempt: attempt),
                userData: userData, subnetID: spec.subnet, securityGroupIDs: spec.securityGroups, keyName: spec.keyName, zone: spec.zone,
                spot: spec.spot, tags: ["repl:control": name.controlID.description])
            launch.rootDisk = rootDisk
            launch.volumes = spec.volumes ?? []
            let asked = launch
            do {
                let instance = try await call("launch \(name)", lane: .addressTaking, scope: spec.capacityScope) { () async throws(AWSError) in
                    try await ec2.runInstances(asked)
                }
                // A token already spent on an instance of this name that has ended gives that
                // instance back; the next token makes a new one.
                if !["terminated", "shutting-down"].contains(instance.state) { return }
            } catch  where error.message.contains("IdempotentParameterMismatch") {
                // This token launched an instance already, from user data signed on another day:
                // that instance is this machine.
                return
            }
        }
        throw ProviderError(.failed, "\(name) was launched and ended \(Self.tokenAttempts) times; delete the run and apply it again")
    }

    /// The device an image's root volume is at, asked once per image and process.
    func rootDevice(of image: String) async throws(ProviderError) -> String {
        if let known = roots.withLock({ $0[image] }) { return known }
        let ec2 = self.ec2
        let found = try await call("find the root device of \(image)") { () async throws(AWSError) in
            try await ec2.describeImages(owners: [], filters: ["image-id": [image]]).first
        }
        guard let device = found?.rootDevice, !device.isEmpty else {
            throw ProviderError(.invalid, "image \(image) names no root device, so spec.disk cannot size it; remove spec.disk")
        }
        roots.withLock { $0[image] = device }
        return device
    }

    /// An instance of the snapshot's AMI, of the type its source was: made exactly once, as a
    /// create is.
    public func clone(snapshot: MachineName, name: MachineName) async throws(ProviderError) {
        guard let image = try await images(named: snapshot).first, image.state == "available" else {
            throw ProviderError(.failed, "snapshot \(snapshot) is not available yet")
        }
        var spec = AWSSpec(instanceType: image.tags["repl:instanceType"] ?? AWSSpec.defaultInstanceType, image: .ami(image.id))
        spec.subnet = image.tags["repl:subnet"]
        try await create(name: name, spec: .aws(spec), options: .none)
    }

    /// An AMI of the source's instance, tagged with the snapshot's name (and the source's type,
    /// for its clones). A retry finds the image of that name and is done.
    public func snapshot(source: MachineName, name: MachineName) async throws(ProviderError) {
        if try await !images(named: name).isEmpty { return }
        guard let instance = try await instances(named: source).first else {
            throw ProviderError(.notFound, "\(source) has no instance to snapshot")
        }
        var labels = ["repl:control": name.controlID.description, "repl:instanceType": instance.instanceType]
        if let subnet = instance.subnetID { labels["repl:subnet"] = subnet }
        labels["Name"] = name.description
        let ec2 = self.ec2, tags = labels
        // Tagged again by id: a retry after a crash, or an engine that took the image's own
        // tags and dropped them, finds it by its AMI name and names it.
        try await call("snapshot \(source) as \(name)", lane: .heavy) { () async throws(AWSError) in
            var id: String
            do throws(AWSError) {
                id = try await ec2.createImage(instanceID: instance.id, name: name.description, tags: tags)
            } catch  where error.code == "InvalidAMIName.Duplicate" {
                guard let found = try await ec2.describeImages(owners: ["self"], filters: ["name": [name.description]]).first else { throw error }
                id = found.id
            }
            try await ec2.createTags(id, tags)
        }
    }

    public func start(name: MachineName) async throws(ProviderError) {
        let ids = try await instances(named: name).filter { $0.state == "stopped" }.map(\.id)
        guard !ids.isEmpty else { return }
        try await call("start \(name)") { () async throws(AWSError) in try await ec2.startInstances(ids) }
    }

    public func stop(name: MachineName) async throws(ProviderError) {
        let ids = try await instances(named: name).filter { ["pending", "running"].contains($0.state) }.map(\.id)
        guard !ids.isEmpty else { return }
        try await call("stop \(name)") { () async throws(AWSError) in try await ec2.stopInstances(ids) }
    }

    /// Terminates every instance carrying the name (a duplicate too); a snapshot's AMI is
    /// deregistered and its EBS snapshots deleted; none is done.
    public func delete(name: MachineName) async throws(ProviderError) {
        let ids = try await instances(named: name).filter { $0.state != "shutting-down" }.map(\.id)
        let ec2 = self.ec2
        for image in try await images(named: name) {
            try await call("deregister \(image.id) (\(name))") { () async throws(AWSError) in
                do throws(AWSError) { try await ec2.deregisterImage(image.id) } catch  where error.kind == .notFound {}
                for snapshot in image.snapshotIDs {
                    do throws(AWSError) { try await ec2.deleteSnapshot(snapshot) } catch  where error.kind == .notFound {}
                }
            }
        }
        guard !ids.isEmpty else { return }
        do {
            try await call("terminate \(name)") { () async throws(AWSError) in try await ec2.terminateInstances(ids) }
        } catch  where error.kind == .notFound {
            return
        }
    }

    /// Puts the run's launch where the instance's agent fetches it; the launcher starts it once
    /// however often it is put.
    public func startRun(name: MachineName, payload: RunPayload) async throws(ProviderError) {
        try await ensureChannel()
        let launch = InstanceAgent.launch(payload)
        try await call("put the run of \(name)") { () async throws(AWSError) in
            try await channel.s3.putObject(channel.bucket, InstanceAgent.key(name, "launch"), launch)
        }
    }

    /// The status the agent copied to S3; none yet reads as unreadable (the instance is still
    /// booting, or its agent has not copied it).
    public func probe(name: MachineName) async throws(ProviderError) -> ProbeResult {
        let status = try await call("read the status of \(name)") { () async throws(AWSError) in
            try await channel.s3.getObject(channel.bucket, InstanceAgent.key(name, "status"))
        }
        guard let status else { return .unreadable("no status from the instance yet") }
        return StatusFile.read(String(decoding: status, as: UTF8.self)).result
    }

    public func logs(name: MachineName, bootstrap: Bool, from offset: Int) async throws(ProviderError) -> Data {
        let data = try await call("read the logs of \(name)") { () async throws(AWSError) in
            try await channel.s3.getObject(channel.bucket, InstanceAgent.key(name, bootstrap ? "bootstrap.log" : "run.log"))
        }
        guard let data, data.count > offset else { return Data() }
        return data.subdata(in: offset..<data.count)
    }

    /// One listing of every machine's channel objects; a machine's status fetched when its tag
    /// changed, and its logs from the host's size when they grew, or at once with a final
    /// status (the agent puts the status last, so logs read after a final status are whole).
    public func fetchChannel(_ marks: [MachineName: ChannelMark]) async throws(ProviderError) -> [MachineName: ChannelUpdate]? {
        guard !marks.isEmpty else { return [:] }
        let channel = self.channel
        // The bucket is made before any instance is launched: one missing now was deleted, and no
        // status can come (found by attacking: read as "no status yet", exit 0).
        let listed = try await call("list the status channel") { () async throws(AWSError) -> [S3Client.Listed] in
            try await channel.s3.listObjects(channel.bucket, prefix: "machines/")
        }
        var objects: [String: S3Client.Listed] = [:]
        for object in listed { objects[object.key] = object }
        let wanted = marks.compactMap { name, mark -> (MachineName, ChannelMark, S3Client.Listed, [String: Int])? in
            guard let status = objects[InstanceAgent.key(name, "status")] else { return nil }
            let sizes = [
                "run.log": objects[InstanceAgent.key(name, "run.log")]?.size ?? 0,
                "bootstrap.log": objects[InstanceAgent.key(name, "bootstrap.log")]?.size ?? 0,
            ]
            let changed =
                status.etag != mark.statusTag || status.etag.isEmpty || sizes["run.log"] != mark.output || sizes["bootstrap.log"] != mark.bootstrap
            return changed ? (name, mark, status, sizes) : nil
        }
        let provider = self
        return await withTaskGroup(of: (MachineName, ChannelUpdate?).self) { group in
            for (name, mark, status, sizes) in wanted {
                group.addTask { (name, try? await provider.fetchChanged(name, mark: mark, status: status, sizes: sizes)) }
            }
            var updates: [MachineName: ChannelUpdate] = [:]
            for await (name, update) in group {
                if let update { updates[name] = update }
            }
            return updates
        }
    }

    /// What changed of one machine's channel (``fetchChannel(_:)``).
    func fetchChanged(_ name: MachineName, mark: ChannelMark, status: S3Client.Listed, sizes: [String: Int]) async throws(ProviderError)
        -> ChannelUpdate
    {
        let channel = self.channel
        var update = ChannelUpdate()
        var final = false
        if status.etag != mark.statusTag || status.etag.isEmpty {
            let data = try await call("read the status of \(name)") { () async throws(AWSError) in
                try await channel.s3.getObject(channel.bucket, InstanceAgent.key(name, "status"))
            }
            guard let data else { return update }
            update.status = data
            update.statusTag = status.etag
            final = StatusFile.read(String(decoding: data, as: UTF8.self)).result.isFinal
        }
        for (file, held) in [("run.log", mark.output), ("bootstrap.log", mark.bootstrap)] {
            let size = sizes[file] ?? 0
            guard final || size != held else { continue }
            // A log only grows; one smaller than the host's copy is read whole and replaces it.
            let offset = size < held ? 0 : held
            let data = try await call("read the logs of \(name)") { () async throws(AWSError) in
                try await channel.s3.getObject(channel.bucket, InstanceAgent.key(name, file), from: offset)
            }
            guard let data, offset == 0 || !data.isEmpty else { continue }
            let piece = ChannelUpdate.Piece(offset: offset, data: data)
            if file == "run.log" { update.output = piece } else { update.bootstrap = piece }
        }
        return update
    }

    // MARK: - The channel

    /// The bucket and its expiry rule, made once per process.
    func ensureChannel() async throws(ProviderError) {
        if channel.made.done { return }
        let channel = self.channel
        try await call("make the bucket \(channel.bucket)") { () async throws(AWSError) in
            try await channel.s3.createBucket(channel.bucket)
            try await channel.s3.expire(channel.bucket, prefix: "machines/", days: channel.expireAfterDays)
        }
        channel.made.mark()
    }

    /// The instance's user data: the agent with its presigned URLs, signed at the start of the
    /// day (UTC) so that a create retried the same day asks EC2 for exactly the same launch.
    func agent(_ name: MachineName) -> String {
        let day = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / 86_400).rounded(.down) * 86_400)
        let s3 = S3Client(endpoint: channel.s3.endpoint, region: channel.s3.region, credentials: channel.s3.signer.credentials, now: { day })
        let get = s3.presignedURL("GET", bucket: channel.bucket, key: InstanceAgent.key(name, "launch"), expires: InstanceAgent.urlLifetime)!
        var puts: [String: URL] = [:]
        for file in InstanceAgent.written {
            puts[file] = s3.presignedURL("PUT", bucket: channel.bucket, key: InstanceAgent.key(name, file), expires: InstanceAgent.urlLifetime)
        }
        return InstanceAgent.userData(machine: name, launchURL: get, putURLs: puts)
    }

    public func address(name: MachineName) async throws(ProviderError) -> String? {
        try await instances(named: name).first.flatMap { $0.publicIP ?? $0.privateIP }
    }

    public func manifestCopy(name: MachineName) async throws(ProviderError) -> String? { nil }

    public func limited(by limits: CallLimits) -> any Provider {
        var limited = self
        limited.limits = limits
        return limited
    }

    // MARK: - Reading instances

    /// The live instances carrying `name`, oldest first.
    func instances(named name: MachineName) async throws(ProviderError) -> [EC2Instance] {
        let found = try await call("look up \(name)") { () async throws(AWSError) in
            try await ec2.describeInstances(filters: ["tag:Name": [name.description], "instance-state-name": Self.liveStates])
        }
        return Self.oldestFirst(found.filter { $0.name == name.description })
    }

    /// Our AMIs carrying `name` (a snapshot's machine).
    func images(named name: MachineName) async throws(ProviderError) -> [EC2Image] {
        let ec2 = self.ec2
        let found = try await call("look up the snapshot \(name)") { () async throws(AWSError) in
            try await ec2.describeImages(owners: ["self"], filters: ["tag:Name": [name.description]])
        }
        return found.filter { $0.tags["Name"] == name.description && !Self.endedImageStates.contains($0.state) }
    }

    static func observed(_ image: EC2Image) -> ObservedMachine? {
        guard let name = image.tags["Name"], !name.isEmpty, !endedImageStates.contains(image.state) else { return nil }
        var machine = ObservedMachine(id: image.id, name: name, state: imageState(image.state), distro: "ami", version: image.name, arch: "")
        machine.launchedAt = image.created
        return machine
    }

    /// An AMI in these states is no snapshot any more (nor ever will be).
    static let endedImageStates: Set<String> = ["deregistered", "failed"]

    /// An AMI as a snapshot machine: available is a stopped machine (ready to clone).
    static func imageState(_ text: String) -> MachineState {
        switch text {
        case "available": return .stopped
        case "pending": return .creating
        default: return .other(text)
        }
    }

    static func oldestFirst(_ instances: [EC2Instance]) -> [EC2Instance] {
        instances.sorted { ($0.launchTime ?? .distantFuture, $0.id) < ($1.launchTime ?? .distantFuture, $1.id) }
    }

    static func observed(_ instance: EC2Instance) -> ObservedMachine? {
        guard let name = instance.name, !name.isEmpty else { return nil }
        var machine = ObservedMachine(
            id: instance.id, name: name, state: state(instance.state), distro: "ec2", version: instance.instanceType, arch: instance.imageID)
        machine.launchedAt = instance.launchTime
        return machine
    }

    static func state(_ text: String) -> MachineState {
        switch text {
        case "pending": return .creating
        case "running": return .running
        case "stopping": return .stopping
        case "stopped": return .stopped
        case "shutting-down": return .deleting
        default: return .other(text)
        }
    }

    /// The idempotency token of a machine's `attempt`th launch: the same on every retry and after
    /// a crash, so EC2 makes the instance at most once (64 ASCII characters at most).
    public static func clientToken(_ name: MachineName, attempt: Int) -> String {
        let digest = SHA256.hash(Data("repl:\(name)".utf8)).prefix(16).map { String(format: "%02x", $0) }.joined()
        return "repl-\(digest)-\(attempt)"
    }

    // MARK: - Calls

    /// One EC2 call under the controller's limits and through the throttle, its error in the
    /// controller's terms.
    func call<T: Sendable>(
        _ what: String, lane: CallLane = .light, scope: String = "", _ body: @escaping @Sendable () async throws(AWSError) -> T
    ) async throws(ProviderError) -> T {
        guard let limits else { return try await Self.attempt(what, throttle, body) }
        let throttle = self.throttle
        return try await limits.run(lane, scope: scope) { () async throws(ProviderError) -> T in try await Self.attempt(what, throttle, body) }
    }

    static func attempt<T>(_ what: String, _ throttle: Throttle, _ body: () async throws(AWSError) -> T) async throws(ProviderError) -> T {
        do {
            return try await throttle.run(body)
        } catch {
            throw providerError(error, what)
        }
    }

    static func providerError(_ error: AWSError, _ what: String) -> ProviderError {
        let message = "\(what): \(error.description)"
        switch error.kind {
        case .capacity: return ProviderError(.capacity, message)
        case .quota:
            return ProviderError(
                .capacity, "\(message) (an account limit: ask for more in the Service Quotas console, EC2, for this instance family)")
        case .throttled: return ProviderError(error.code == "Transport" ? .timedOut : .throttled, message)
        // What a launch names and is not there (an image, a subnet, a key pair) is a wrong request.
        case .notFound: return ProviderError(error.action == "RunInstances" ? .invalid : .notFound, message)
        case .auth:
            return ProviderError(
                .denied,
                "\(message); check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or `aws sso login` when they expired)")
        case .invalid: return ProviderError(.invalid, message)
        }
    }
}

/// A value any task reads and changes under one lock.
final class LockedValue<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<T>(_ body: (inout Value) -> T) -> T { lock.withLock { body(&value) } }
}

/// A flag set once, read by any task.
final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var done: Bool { lock.withLock { value } }
    func mark() { lock.withLock { value = true } }
}

/// One shared slowdown for every EC2 call of a process: a throttled call (or a 5xx) waits a
/// jittered, doubling delay and is tried again, and meanwhile every other call waits too, so a
/// fleet's calls do not keep hitting a limit that just said no.
public final class Throttle: @unchecked Sendable {
    private let lock = NSLock()
    private var calmUntil = Date.distantPast
    private var strikes = 0
    public let attempts: Int
    public let base: TimeInterval
    public let ceiling: TimeInterval

    public init(attempts: Int = 5, base: TimeInterval = 0.2, ceiling: TimeInterval = 20) {
        self.attempts = attempts
        self.base = base
        self.ceiling = ceiling
    }

    func run<T>(_ body: () async throws(AWSError) -> T) async throws(AWSError) -> T {
        var attempt = 0
        while true {
            attempt += 1
            let wait = lock.withLock { calmUntil.timeIntervalSinceNow }
            if wait > 0 { try? await Task.sleep(nanoseconds: UInt64(wait * 1e9)) }
            do {
                let value = try await body()
                lock.withLock { strikes = 0 }
                return value
            } catch  where error.kind == .throttled && error.code != "Transport" && attempt < attempts {
                lock.withLock {
                    strikes += 1
                    let delay = min(ceiling, base * pow(2, Double(strikes - 1))) * Double.random(in: 0.5...1.0)
                    calmUntil = max(calmUntil, Date().addingTimeInterval(delay))
                }
            }
        }
    }
}
