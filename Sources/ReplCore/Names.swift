import Foundation

/// The 6-character `[0-9a-z]` id that marks which installation owns a machine.
public struct ControlID: Hashable, Sendable, CustomStringConvertible, Codable, Comparable {
    public let rawValue: String

    /// Accepts exactly 6 characters of `[0-9a-z]`.
    public init?(_ text: String) {
        guard text.utf8.count == 6, text.utf8.allSatisfy(Base36.isDigit) else { return nil }
        rawValue = text
    }

    /// A new id from the system's cryptographic random source.
    public static func generate() -> ControlID {
        var rng = SystemRandomNumberGenerator()  // arc4random_buf / getrandom: cryptographic
        return generate(using: &rng)
    }

    /// A new id from the given generator (tests pass a seeded one).
    public static func generate<G: RandomNumberGenerator>(using rng: inout G) -> ControlID {
        let alphabet = Array(Base36.alphabet)
        let text = String((0..<6).map { _ in alphabet[Int.random(in: 0..<36, using: &rng)] })
        return ControlID(text)!
    }

    public var description: String { rawValue }
    public static func < (a: ControlID, b: ControlID) -> Bool { a.rawValue < b.rawValue }

    public init(from decoder: Decoder) throws {
        let s = try decoder.singleValueContainer().decode(String.self)
        guard let id = ControlID(s) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a control id: \(s)"))
        }
        self = id
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// Lowercase base 36, the alphabet of ids in machine names.
public enum Base36 {
    public static let alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"

    static func isDigit(_ b: UInt8) -> Bool { (b >= 48 && b <= 57) || (b >= 97 && b <= 122) }

    public static func encode(_ value: UInt64) -> String { String(value, radix: 36) }

    /// Decodes canonical base 36: lowercase, no leading zeros (except `0` itself),
    /// so every id has exactly one spelling and names round-trip.
    public static func decode(_ text: Substring) -> UInt64? {
        guard !text.isEmpty, text.utf8.allSatisfy(isDigit) else { return nil }
        if text.count > 1 && text.first == "0" { return nil }
        return UInt64(text, radix: 36)
    }
}

/// A machine name of ours: `repl-{control_id}-{manifest_id}-{instance_id}`.
///
/// Ids are base 36; `manifestID` is `nil` (spelled `none`) for a machine made
/// without a manifest id. Snapshots share the instance id sequence, so no two
/// resources ever share a name. Parsing is exact:
/// `^repl-([0-9a-z]{6})-([0-9a-z]+|none)-([0-9a-z]+)$` with canonical ids.
///
/// A machine is acted on only through this value (actions and the provider take it), so a
/// name that is not ours cannot be created, stopped or deleted. The text is kept with it:
/// the planner looks every instance's machine up by name each tick.
public struct MachineName: Hashable, Sendable, CustomStringConvertible {
    public let controlID: ControlID
    /// A run's or a snapshot's id (one sequence); see ``runID``.
    public let manifestID: UInt64?
    public let instanceID: InstanceID
    /// The name as OrbStack knows it.
    public let description: String

    public static let prefix = "repl-"

    public init(controlID: ControlID, manifestID: UInt64?, instanceID: InstanceID) {
        self.controlID = controlID
        self.manifestID = manifestID
        self.instanceID = instanceID
        description = "repl-\(controlID.rawValue)-\(manifestID.map { Base36.encode($0) } ?? "none")-\(instanceID.base36)"
    }

    // The text is the name: the same text is the same machine.
    public static func == (a: MachineName, b: MachineName) -> Bool { a.description == b.description }
    public func hash(into hasher: inout Hasher) { hasher.combine(description) }

    /// An instance's machine.
    public init(controlID: ControlID, manifestID run: RunID, instanceID: InstanceID) {
        self.init(controlID: controlID, manifestID: run.rawValue, instanceID: instanceID)
    }

    /// A snapshot's machine.
    public init(controlID: ControlID, manifestID snapshot: SnapshotID, instanceID: InstanceID) {
        self.init(controlID: controlID, manifestID: snapshot.rawValue, instanceID: instanceID)
    }

    /// The run whose instance this machine would be (a snapshot's id reads as a run's that is none).
    public var runID: RunID? { manifestID.map(RunID.init) }

    /// Parses a machine name; `nil` for anything that is not exactly our pattern.
    public init?(parsing name: String) {
        guard name.hasPrefix(MachineName.prefix) else { return nil }
        // Three fields after the prefix, split by hand: the planner parses every machine's
        // name each tick, and `split` allocates.
        let rest = name.utf8.dropFirst(MachineName.prefix.utf8.count)
        let dash = UInt8(ascii: "-")
        guard let first = rest.firstIndex(of: dash) else { return nil }
        let afterFirst = rest.index(after: first)
        guard let second = rest[afterFirst...].firstIndex(of: dash) else { return nil }
        let tail = rest[rest.index(after: second)...]
        guard !tail.contains(dash), let cid = ControlID(String(Substring(rest[..<first]))),
            let instance = Base36.decode(Substring(tail))
        else { return nil }
        let middle = Substring(rest[afterFirst..<second])
        let manifest: UInt64?
        if middle == "none" {
            manifest = nil
        } else {
            guard let m = Base36.decode(middle) else { return nil }
            manifest = m
        }
        self.init(controlID: cid, manifestID: manifest, instanceID: InstanceID(instance))
    }

    /// Whether a name merely looks like ours (`repl-` prefix) without parsing.
    public static func hasOurPrefix(_ name: String) -> Bool { name.hasPrefix(prefix) }
}

/// ULID decoding: the first 10 Crockford base-32 characters of a machine's `id`
/// are its creation time in Unix milliseconds, so age is readable without a database.
public enum ULID {
    /// Each byte's Crockford value, 255 for none (a table, not a dictionary: the planner
    /// reads every machine's age each tick).
    private static let crockford: [UInt8] = {
        var map = [UInt8](repeating: 255, count: 256)
        for (i, c) in "0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8.enumerated() {
            map[Int(c)] = UInt8(i)
            if c >= UInt8(ascii: "A") { map[Int(c + 32)] = UInt8(i) }  // lowercase is accepted too
        }
        for (alias, value) in [("I", 1), ("L", 1), ("O", 0), ("i", 1), ("l", 1), ("o", 0)] {
            map[Int(alias.utf8.first!)] = UInt8(value)
        }
        return map
    }()

    /// The creation time encoded in a ULID, or `nil` when `id` is not a ULID.
    public static func timestamp(of id: String) -> Date? {
        guard id.utf8.count == 26 else { return nil }
        var ms: UInt64 = 0
        for (i, b) in id.utf8.enumerated() {
            let v = crockford[Int(b)]
            if v == 255 { return nil }
            if i < 10 { ms = ms << 5 | UInt64(v) }
        }
        guard ms < (1 << 48) else { return nil }
        return Date(timeIntervalSince1970: TimeInterval(ms) / 1000)
    }

    /// A ULID for the given time with random low bits (used by the emulator).
    public static func make<G: RandomNumberGenerator>(at date: Date, using rng: inout G) -> String {
        let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)
        var ms = UInt64(max(0, (date.timeIntervalSince1970 * 1000).rounded(.down)))
        var time = [UInt8](repeating: 0, count: 10)
        for i in stride(from: 9, through: 0, by: -1) {
            time[i] = alphabet[Int(ms & 31)]
            ms >>= 5
        }
        let random = (0..<16).map { _ in alphabet[Int.random(in: 0..<32, using: &rng)] }
        return String(decoding: time + random, as: UTF8.self)
    }
}
