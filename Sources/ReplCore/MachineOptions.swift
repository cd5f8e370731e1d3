import Foundation

/// OrbStack's own options for a run's machines, given at `orbctl create`: they cannot change on
/// a machine that exists, so a change of any of them replaces the machines (a new generation).
/// Manifest keys `resources: {cpus, memory, disk}`, `isolated`, `user` and `userData`.
public struct MachineOptions: Hashable, Sendable, Codable {
    /// `create --cpus N` (OrbStack 2.2.0+).
    public var cpus: Int?
    /// `create --memory SIZE` (OrbStack 2.2.0+).
    public var memory: ByteSize?
    /// `create --disk SIZE` (OrbStack 2.2.0+).
    public var disk: ByteSize?
    /// `create --isolated` (OrbStack 2.1.0+): no `/mnt/mac`, no way to the Mac over the network,
    /// so no host status channel either (its status is read by probing the machine).
    public var isolated: Bool
    /// `create -u NAME`: the machine's default user (what `orbctl run`, `repl exec` and `repl ssh`
    /// use unless told otherwise). The bootstrap and the command still run as root.
    public var user: String?
    /// `create -c FILE`: a cloud-init document (`#cloud-config` or a `#!` script); the run's
    /// bootstrap waits until cloud-init has finished.
    public var userData: String?

    public init(
        cpus: Int? = nil, memory: ByteSize? = nil, disk: ByteSize? = nil, isolated: Bool = false,
        user: String? = nil, userData: String? = nil
    ) {
        self.cpus = cpus
        self.memory = memory
        self.disk = disk
        self.isolated = isolated
        self.user = user
        self.userData = userData
    }

    public static let none = MachineOptions()

    /// A Linux account name: lowercase letters, digits, `_` and `-`, at most 32, not starting
    /// with a digit or `-` (so never read as an option).
    public static func isUsername(_ name: String) -> Bool {
        name.wholeMatch(of: /[a-z_][a-z0-9_-]{0,31}/) != nil
    }

    public var hasResources: Bool { cpus != nil || memory != nil || disk != nil }

    /// The OrbStack release each option needs, as `orbctl version` numbers them
    /// (major·10⁶ + minor·10⁴ + patch·100): per-machine limits arrived in 2.2.0 [orbstack issue
    /// #789], isolated machines in 2.1.0 [docs.orbstack.dev/machines/isolated].
    public var requirements: [(option: String, version: String, number: Int)] {
        var out: [(String, String, Int)] = []
        if hasResources { out.append(("resources", "2.2.0", 2_020_000)) }
        if isolated { out.append(("isolated", "2.1.0", 2_010_000)) }
        return out
    }

    /// The `orbctl create` flags, but `-c FILE` (the caller writes the user data to a file).
    public var createFlags: [String] {
        var flags: [String] = []
        if let cpus { flags += ["--cpus", String(cpus)] }
        if let memory { flags += ["--memory", memory.description] }
        if let disk { flags += ["--disk", disk.description] }
        if isolated { flags.append("--isolated") }
        if let user { flags += ["-u", user] }
        return flags
    }

    /// The part that replaces machines when it changes; empty for the defaults, so runs applied
    /// before these keys existed keep their generation.
    var fingerprint: String {
        guard self != .none else { return "" }
        return [
            cpus.map(String.init) ?? "-", memory?.description ?? "-", disk?.description ?? "-", isolated ? "isolated" : "shared",
            user ?? "-", userData?.debugDescription ?? "-",
        ].joined(separator: ",")
    }
}

/// A size of memory or disk: `4G`, `512M`, `64GiB`, `1T` (binary units, as OrbStack reads them).
public struct ByteSize: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    public var bytes: Int64

    public init(bytes: Int64) { self.bytes = bytes }

    static let units: [(String, Int64)] = [("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)]

    /// Reads `4G`, `4g`, `4GiB`, `4GB`, `512M`, `1.5G`; nil for anything else (a bare number
    /// has no unit and is refused: 4 of what?).
    public init?(parsing text: String) {
        guard let m = text.trimmingCharacters(in: .whitespaces).wholeMatch(of: /([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT])(?:i?[bB])?/),
            let value = Double(m.output.1)
        else { return nil }
        let unit = ByteSize.units.first { $0.0 == m.output.2.uppercased() }!.1
        let bytes = value * Double(unit)
        guard bytes >= 1, bytes < Double(Int64.max / 2) else { return nil }
        self.bytes = Int64(bytes.rounded())
    }

    /// The largest unit that states it exactly: `4G`, `1536M`.
    public var description: String {
        for (name, size) in ByteSize.units where bytes >= size && bytes % size == 0 { return "\(bytes / size)\(name)" }
        return "\(bytes)"
    }

    public static func < (a: ByteSize, b: ByteSize) -> Bool { a.bytes < b.bytes }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let size = ByteSize(parsing: text) ?? Int64(text).map(ByteSize.init(bytes:)) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a size: \(text)"))
        }
        self = size
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// `files:` one copy into the machine before its bootstrap: a file to a path, or a directory's
/// contents into a directory, without what `exclude` names (tar patterns: `.git`, `*.o`).
public struct FileCopy: Hashable, Sendable, Codable {
    /// Absolute, resolved from the manifest's directory when the manifest gave it relative.
    public var from: String
    /// Absolute, in the machine.
    public var to: String
    public var exclude: [String]

    public init(from: String, to: String, exclude: [String] = []) {
        self.from = from
        self.to = to
        self.exclude = exclude
    }
}
