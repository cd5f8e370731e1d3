import Foundation

/// A JSON document built from the dictionaries and arrays the commands assemble, encoded with
/// `JSONEncoder`: `JSONSerialization`'s sorted keys compare each pair through the locale on
/// Linux, two thirds of `run list --json` with 1,000 runs.
enum JSONDocument: Encodable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case array([JSONDocument])
    case object([String: JSONDocument])

    /// The document for a value made of dictionaries, arrays, strings, numbers, booleans and
    /// optionals (nil is null). Anything else is described as a string rather than dropped.
    init(_ value: Any?) {
        guard let value else { self = .null; return }
        switch value {
        case let v as JSONDocument: self = v
        case let v as String: self = .string(v)
        case let v as Bool: self = .bool(v)
        case let v as Int: self = .int(Int64(v))
        case let v as Int32: self = .int(Int64(v))
        case let v as Int64: self = .int(v)
        case let v as UInt64: self = .uint(v)
        case let v as UInt32: self = .uint(UInt64(v))
        case let v as Double: self = .double(v)
        case let v as [String: String]: self = .object(v.mapValues { .string($0) })
        case let v as [String]: self = .array(v.map { .string($0) })
        case let v as [String: Any]: self = .object(v.mapValues { JSONDocument($0) })
        case let v as [Any]: self = .array(v.map { JSONDocument($0) })
        case is NSNull: self = .null
        default:
            // An optional held in an `Any` (`x as Any` where x is nil) is not nil to `guard let`.
            let mirror = Mirror(reflecting: value)
            if mirror.displayStyle == .optional {
                self = mirror.children.first.map { JSONDocument($0.value) } ?? .null
            } else {
                self = .string("\(value)")
            }
        }
    }

    /// The same document as plain Swift values (null is `NSNull`), for the YAML writer.
    var plain: Any {
        switch self {
        case .null: return NSNull()
        case .bool(let v): return v
        case .int(let v): return Int(v)
        case .uint(let v): return v
        case .double(let v): return v
        case .string(let v): return v
        case .array(let v): return v.map(\.plain)
        case .object(let v): return v.mapValues(\.plain)
        }
    }

    func encode(to encoder: Encoder) throws {
        switch self {
        case .null:
            var c = encoder.singleValueContainer()
            try c.encodeNil()
        case .bool(let v):
            var c = encoder.singleValueContainer()
            try c.encode(v)
        case .int(let v):
            var c = encoder.singleValueContainer()
            try c.encode(v)
        case .uint(let v):
            var c = encoder.singleValueContainer()
            try c.encode(v)
        case .double(let v):
            var c = encoder.singleValueContainer()
            try c.encode(v)
        case .string(let v):
            var c = encoder.singleValueContainer()
            try c.encode(v)
        case .array(let v):
            var c = encoder.unkeyedContainer()
            for element in v {
                switch element {
                case .null: try c.encodeNil()
                case .bool(let x): try c.encode(x)
                case .int(let x): try c.encode(x)
                case .string(let x): try c.encode(x)
                default: try c.encode(element)
                }
            }
        case .object(let v):
            // Leaves through the container's own typed methods: the generic path costs a
            // dynamic cast and a nested encoder per value.
            var c = encoder.container(keyedBy: Key.self)
            for (key, element) in v {
                switch element {
                case .null: try c.encodeNil(forKey: Key(key))
                case .bool(let x): try c.encode(x, forKey: Key(key))
                case .int(let x): try c.encode(x, forKey: Key(key))
                case .string(let x): try c.encode(x, forKey: Key(key))
                default: try c.encode(element, forKey: Key(key))
                }
            }
        }
    }

    struct Key: CodingKey {
        let stringValue: String
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    /// Pretty-printed, keys sorted, slashes as they are (one encoder per process).
    nonisolated(unsafe) static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    /// One line, keys sorted (for streams of documents, one per line).
    nonisolated(unsafe) static let lineEncoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    func text(pretty: Bool = true) -> String {
        let data = (try? (pretty ? Self.encoder : Self.lineEncoder).encode(self)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
