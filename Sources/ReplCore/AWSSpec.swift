import Foundation

/// The machine of a `provider: aws` run: an EC2 instance type and image, where it runs, and
/// how it is reached. Written as the `spec:` mapping of the manifest:
///
///     provider: aws
///     spec:
///       instanceType: t3.micro        # default t3.micro
///       image: ubuntu:noble           # or ami-0123456789abcdef0; default ubuntu:noble
///       region: eu-west-1             # default AWS_REGION, or the profile's
///       subnet: subnet-0abc…          # optional, with securityGroups, keyName, zone
///       spot: true                    # optional
public struct AWSSpec: Hashable, Sendable, Codable, CustomStringConvertible {
    public var instanceType: String
    public var image: Image
    /// `arm64` or `amd64`: from the instance type (Graviton families carry a `g`), or given.
    public var arch: String
    public var region: String?
    public var zone: String?
    public var subnet: String?
    public var securityGroups: [String]
    public var keyName: String?
    public var spot: Bool
    /// The EC2 endpoint (moto: `http://127.0.0.1:5000`); default AWS_ENDPOINT_URL, else AWS's.
    public var endpoint: String?
    /// The root volume's size in GiB (gp3); nil for the image's own.
    public var disk: Int?
    /// More EBS volumes, made with the instance and deleted with it (never left billed).
    public var volumes: [Volume]?

    /// An EBS volume of an instance: its size, type and device.
    public struct Volume: Hashable, Sendable, Codable, CustomStringConvertible {
        public var gib: Int
        public var type: String
        public var device: String

        public init(gib: Int, type: String = "gp3", device: String) {
            self.gib = gib
            self.type = type
            self.device = device
        }

        public var description: String { "\(gib)G \(type) at \(device)" }

        /// The EBS types a volume can be made of without more parameters (io1 and io2 need their
        /// IOPS, which a volume here cannot give: found by attacking, every launch failed).
        public static let types = ["gp3", "gp2", "st1", "sc1", "standard"]

        /// The sizes EBS makes a volume of `type` in, in GiB.
        public static func sizes(_ type: String) -> ClosedRange<Int> {
            switch type {
            case "st1", "sc1": return 125...16_384
            case "standard": return 1...1_024
            default: return 1...16_384
            }
        }
        /// EBS's largest volume (16 TiB; 64 TiB for io2 Block Express is not offered here).
        public static let maxGiB = 16_384
        /// The devices volumes are attached at, in order: `/dev/sdf` to `/dev/sdp`.
        public static let devices = "fghijklmnop".map { "/dev/sd\($0)" }
    }

    public enum Image: Hashable, Sendable, Codable, CustomStringConvertible {
        /// An AMI by id, used as it is.
        case ami(String)
        /// An Ubuntu release by codename, resolved to the region's current AMI at create.
        case ubuntu(String)

        public var description: String {
            switch self {
            case .ami(let id): return id
            case .ubuntu(let codename): return "ubuntu:\(codename)"
            }
        }
    }

    public init(
        instanceType: String = AWSSpec.defaultInstanceType, image: Image = .ubuntu("noble"), arch: String? = nil, region: String? = nil,
        zone: String? = nil, subnet: String? = nil, securityGroups: [String] = [], keyName: String? = nil, spot: Bool = false,
        endpoint: String? = nil, disk: Int? = nil, volumes: [Volume]? = nil
    ) {
        self.instanceType = instanceType
        self.image = image
        self.arch = arch ?? Self.arch(of: instanceType)
        self.region = region
        self.zone = zone
        self.subnet = subnet
        self.securityGroups = securityGroups
        self.keyName = keyName
        self.spot = spot
        self.endpoint = endpoint
        self.disk = disk
        self.volumes = volumes
    }

    public static let defaultInstanceType = "t3.micro"

    public var description: String {
        var parts = ["aws", instanceType, image.description]
        if let region { parts.append(region) }
        if spot { parts.append("spot") }
        if let disk { parts.append("disk \(disk)G") }
        for volume in volumes ?? [] { parts.append("+\(volume.gib)G \(volume.type)") }
        return parts.joined(separator: " ")
    }

    /// What EC2's capacity is short of when it says so: this instance type where it runs (a
    /// zone, a subnet's, or wherever EC2 puts it). Each has a circuit breaker of its own.
    public var capacityScope: String {
        "\(instanceType) in \(zone ?? subnet.map { "subnet \($0)" } ?? "any zone")"
    }

    /// The keys of the `spec:` mapping.
    public static let keys = [
        "instanceType", "image", "arch", "region", "zone", "subnet", "securityGroups", "keyName", "spot", "endpoint", "disk", "volumes",
    ]

    /// A volume's size in whole GiB (EBS counts in GiB; a part is rounded up).
    public static func volumeSize(_ text: String, minimum: Int = 1) -> Result<Int, FieldProblem> {
        guard let size = ByteSize(parsing: text) else {
            return .failure(FieldProblem("\"\(text.prefix(40))\" is not a size\(Int64(text) != nil ? " (it has no unit)" : ""); use 30G, 100G or 1T"))
        }
        let gib = Int((size.bytes + (1 << 30) - 1) >> 30)
        guard gib >= minimum else { return .failure(FieldProblem("\(size) is too small; at least \(minimum)G")) }
        guard gib <= Volume.maxGiB else { return .failure(FieldProblem("\(size) is more than an EBS volume holds (16T)")) }
        return .success(gib)
    }

    /// Graviton (arm64) families carry a `g` after their generation: t4g, m7g, c7gn, x2gd, g5g.
    public static func arch(of instanceType: String) -> String {
        let family = instanceType.split(separator: ".").first.map(String.init) ?? ""
        guard let digit = family.firstIndex(where: \.isNumber) else { return "amd64" }
        let suffix = family[digit...].drop(while: \.isNumber)
        return suffix.contains("g") ? "arm64" : "amd64"
    }

    // MARK: - Field checks (the messages go after the key's name)

    public static func instanceType(_ text: String) -> Result<String, FieldProblem> {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        let valid =
            parts.count == 2 && parts.allSatisfy { !$0.isEmpty }
            && text.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "." || $0 == "-" }
            && parts[0].contains(where: \.isNumber)
        return valid ? .success(text) : .failure(FieldProblem("\"\(text.prefix(60))\" is not an EC2 instance type (e.g. t3.micro, m7g.large)"))
    }

    public static let ubuntuReleases: [(version: String, codename: String)] = [
        ("20.04", "focal"), ("22.04", "jammy"), ("24.04", "noble"), ("25.04", "plucky"), ("25.10", "questing"),
    ]

    public static func image(_ text: String) -> Result<Image, FieldProblem> {
        if text.hasPrefix("ami-") {
            let hex = text.dropFirst(4)
            guard [8, 17].contains(hex.count), hex.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
                return .failure(FieldProblem("\"\(text.prefix(60))\" is not an AMI id (ami- and 8 or 17 lowercase hex digits)"))
            }
            return .success(.ami(text))
        }
        let parts = text.lowercased().split(separator: ":", maxSplits: 1).map(String.init)
        if parts.first == "ubuntu" {
            let release = parts.count > 1 ? parts[1] : "noble"
            if let known = ubuntuReleases.first(where: { $0.codename == release || $0.version == release }) {
                return .success(.ubuntu(known.codename))
            }
            return .failure(
                FieldProblem(
                    "Ubuntu \"\(release)\" is not a release repl can look up (known: \(ubuntuReleases.map { "\($0.codename) (\($0.version))" }.joined(separator: ", ")))"
                ))
        }
        return .failure(FieldProblem("\"\(text.prefix(60))\" is neither an AMI id (ami-…) nor an Ubuntu release (ubuntu:noble)"))
    }

    public static func arch(_ text: String) -> Result<String, FieldProblem> {
        switch text {
        case "arm64", "aarch64": return .success("arm64")
        case "amd64", "x86_64": return .success("amd64")
        default: return .failure(FieldProblem("\"\(text.prefix(60))\" is not arm64 or amd64"))
        }
    }

    /// `eu-west-1`, `us-gov-west-1`, `ap-southeast-4`: letters and dashes, ending in a number.
    public static func region(_ text: String) -> Result<String, FieldProblem> {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        let valid =
            parts.count >= 3 && parts.dropLast().allSatisfy { !$0.isEmpty && $0.allSatisfy { ("a"..."z").contains($0) } }
            && parts.last.map { !$0.isEmpty && $0.allSatisfy(\.isNumber) } == true
        return valid ? .success(text) : .failure(FieldProblem("\"\(text.prefix(60))\" is not an AWS region (e.g. eu-west-1)"))
    }

    /// An availability zone of the region: the region's name and a letter (`eu-west-1a`).
    public static func zone(_ text: String, region: String?) -> Result<String, FieldProblem> {
        guard let last = text.last, ("a"..."z").contains(last), case .success = Self.region(String(text.dropLast())) else {
            return .failure(FieldProblem("\"\(text.prefix(60))\" is not an availability zone (e.g. eu-west-1a)"))
        }
        if let region, String(text.dropLast()) != region {
            return .failure(FieldProblem("\(text) is not in the spec's region \(region)"))
        }
        return .success(text)
    }

    /// An EC2 resource id: `subnet-`, `sg-` and a hex number.
    public static func resourceID(_ text: String, prefix: String, what: String) -> Result<String, FieldProblem> {
        let hex = text.hasPrefix(prefix + "-") ? text.dropFirst(prefix.count + 1) : ""
        guard !hex.isEmpty, hex.count <= 17, hex.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
            return .failure(FieldProblem("\"\(text.prefix(60))\" is not a \(what) id (\(prefix)- and lowercase hex digits)"))
        }
        return .success(text)
    }

    public static func endpoint(_ text: String) -> Result<String, FieldProblem> {
        guard let url = URL(string: text), ["http", "https"].contains(url.scheme ?? ""), url.host?.isEmpty == false else {
            return .failure(FieldProblem("\"\(text.prefix(80))\" is not an http(s) URL"))
        }
        if url.query != nil || url.fragment != nil || text.contains("?") || text.contains("#") {
            return .failure(
                FieldProblem("\"\(text.prefix(80))\" has a query or fragment; give the service's base URL (e.g. http://127.0.0.1:5000)"))
        }
        return .success(text)
    }
}
