import Foundation

/// An id of the store's, one type per thing it names, so that a snapshot's id is never
/// passed as a run's: a run's, a snapshot's (both the `manifest_id` part of machine names,
/// from one sequence) or an instance's (the `instance_id` part). Encoded as the bare number.
public protocol StoreIdentifier: RawRepresentable<UInt64>, Hashable, Comparable, Sendable, Codable, ExpressibleByIntegerLiteral,
    CustomStringConvertible
{
    init(rawValue: UInt64)
}

extension StoreIdentifier {
    public init(_ value: UInt64) { self.init(rawValue: value) }
    /// From a count or an index (not negative).
    public init(_ value: Int) { self.init(rawValue: UInt64(value)) }
    public init(integerLiteral value: UInt64) { self.init(rawValue: value) }
    public init(from decoder: Decoder) throws { self.init(rawValue: try decoder.singleValueContainer().decode(UInt64.self)) }
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }
    /// The id after this one in its sequence.
    public var next: Self { self + 1 }
    /// The id `n` after this one in its sequence.
    public static func + (id: Self, n: UInt64) -> Self { Self(rawValue: id.rawValue + n) }
    /// As machine names spell it: lowercase base 36.
    public var base36: String { Base36.encode(rawValue) }
}

/// A run's id: the `manifest_id` part of its machines' names.
public struct RunID: StoreIdentifier {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
}

/// A snapshot's id: the `manifest_id` part of its machine's name (the runs' sequence).
public struct SnapshotID: StoreIdentifier {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
}

/// An instance's id (and a snapshot machine's): the `instance_id` part of a machine name.
public struct InstanceID: StoreIdentifier {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
}

extension Base36 {
    public static func encode(_ id: some StoreIdentifier) -> String { encode(id.rawValue) }
}
