import Foundation

/// A length of time in whole milliseconds, as manifests and the CLI write it.
///
/// Accepted spellings: a bare integer is milliseconds (`60000`, as the CLI's
/// `--max-duration 60000`); otherwise an integer with one unit suffix:
/// `ms`, `s`, `m`, `h` or `d` (`90s`, `10m`, `2h`, `1d`). Compound forms such as
/// `1h30m` are accepted too. Negative values are not.
public struct TimeSpan: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    /// The length in milliseconds, never negative.
    public let milliseconds: Int64

    /// The longest span accepted: 365 days. Longer values are almost certainly typos.
    public static let maximum = TimeSpan(milliseconds: 365 * 86_400_000)
    public static let zero = TimeSpan(milliseconds: 0)

    public init(milliseconds: Int64) {
        precondition(milliseconds >= 0, "a time span is never negative")
        self.milliseconds = milliseconds
    }

    public static func seconds(_ s: Int64) -> TimeSpan { TimeSpan(milliseconds: s * 1000) }
    public static func minutes(_ m: Int64) -> TimeSpan { TimeSpan(milliseconds: m * 60_000) }

    /// The span in seconds, as a `TimeInterval` for `Date` arithmetic.
    public var seconds: TimeInterval { TimeInterval(milliseconds) / 1000 }

    /// Parses the manifest/CLI spelling; `nil` when it is not a duration at all
    /// or exceeds ``maximum``.
    public init?(parsing text: String) {
        self.init(parsing: text, limit: TimeSpan.maximum.milliseconds)
    }

    /// Parses with a custom upper bound in milliseconds (used to tell "too long" from "not a duration").
    public init?(parsing text: String, limit: Int64) {
        let s = text.trimmingCharacters(in: .whitespaces)
        guard !s.isEmpty, s.count <= 40 else { return nil }
        if s.allSatisfy(\.isASCIIDigit) {
            guard let ms = Int64(s), ms <= limit else { return nil }
            self.init(milliseconds: ms)
            return
        }
        var total: Int64 = 0
        var rest = Substring(s)
        var lastUnitRank = Int.max
        while !rest.isEmpty {
            let digits = rest.prefix(while: \.isASCIIDigit)
            guard !digits.isEmpty, digits.count <= 12, let value = Int64(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            let unitText = rest.prefix(while: { $0.isLetter })
            rest = rest.dropFirst(unitText.count)
            guard let (factor, rank) = TimeSpan.units[String(unitText)], rank < lastUnitRank else { return nil }
            lastUnitRank = rank
            let (product, overflow) = value.multipliedReportingOverflow(by: factor)
            let (sum, overflow2) = total.addingReportingOverflow(product)
            guard !overflow, !overflow2 else { return nil }
            total = sum
            guard total <= limit else { return nil }
        }
        self.init(milliseconds: total)
    }

    private static let units: [String: (Int64, Int)] = [
        "d": (86_400_000, 5), "h": (3_600_000, 4), "m": (60_000, 3), "s": (1000, 2), "ms": (1, 1),
    ]

    /// The shortest exact spelling: `90s`, `10m`, `1h30m`, `250ms`, `0s`.
    public var description: String {
        if milliseconds == 0 { return "0s" }
        var rest = milliseconds
        var out = ""
        for (unit, factor) in [("d", Int64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
            if rest >= factor {
                out += "\(rest / factor)\(unit)"
                rest %= factor
            }
        }
        return out
    }

    public static func < (a: TimeSpan, b: TimeSpan) -> Bool { a.milliseconds < b.milliseconds }

    public init(from decoder: Decoder) throws {
        let ms = try decoder.singleValueContainer().decode(Int64.self)
        guard ms >= 0 else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "negative time span"))
        }
        self.init(milliseconds: ms)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(milliseconds)
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}

extension Date {
    /// This date moved forward by a span.
    public func adding(_ span: TimeSpan) -> Date { addingTimeInterval(span.seconds) }
}
