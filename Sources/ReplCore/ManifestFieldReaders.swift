import Foundation
import Yams

extension DocumentContext {
    // MARK: - Field readers

    /// A scalar's text as written, for a hint; `…` for anything else.
    static func scalarText(_ node: Node) -> String {
        if case .scalar(let s) = node { return String(s.string.prefix(40)) }
        return "…"
    }

    static func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let s):
            switch s.resolvedTagName {
            case .int: return "a number (\(s.string))"
            case .float: return "a number (\(s.string))"
            case .bool: return "a boolean (\(s.string))"
            case .null: return "empty"
            default: return "the text \"\(s.string.prefix(40))\""
            }
        }
    }

    mutating func name(_ field: (key: Node, value: Node)?, document: Node) -> String? {
        guard let field else {
            error(document, "name: missing; add a name of lowercase letters, digits and '-'")
            return nil
        }
        guard let text = string(field.value, key: "name") else { return nil }
        return checkReference(text, node: field.value, key: "name")
    }

    /// Names of runs and snapshots: `[a-z0-9-]`, 1–40 characters, starting with a letter or digit.
    mutating func checkReference(_ text: String, node: Node, key: String) -> String? {
        checked(RunFields.name(text), node, key: key)
    }

    mutating func string(_ node: Node, key: String) -> String? {
        guard case .scalar(let s) = node, s.resolvedTagName == .str || s.style != .plain else {
            if case .scalar(let s) = node, s.resolvedTagName != .null {
                error(node, "\(key): expected text, got \(Self.describe(node)); quote it: \(key): \"\(s.string)\"")
            } else {
                error(node, "\(key): expected text, got \(Self.describe(node))")
            }
            return nil
        }
        return s.string
    }

    mutating func optionalString(_ field: (key: Node, value: Node)?, key: String) -> String? {
        guard let field, !Self.isNull(field.value) else { return nil }
        return string(field.value, key: key)
    }

    mutating func duration(_ field: (key: Node, value: Node)?, key: String, allowZero: Bool) -> TimeSpan? {
        guard let field, !Self.isNull(field.value) else { return nil }
        guard case .scalar(let s) = field.value, s.resolvedTagName == .int || s.resolvedTagName == .str || s.style != .plain else {
            error(field.value, "\(key): expected a duration, got \(Self.describe(field.value)) (use 300s, 5m or 300000)")
            return nil
        }
        return checked(RunFields.duration(s.string, allowZero: allowZero), field.value, key: key)
    }

    mutating func integer(_ field: (key: Node, value: Node)?, key: String, range: ClosedRange<Int>) -> Int? {
        guard let field, !Self.isNull(field.value) else { return nil }
        guard case .scalar(let s) = field.value, s.resolvedTagName == .int, let value = Int(s.string) else {
            error(field.value, "\(key): expected a whole number, got \(Self.describe(field.value))")
            return nil
        }
        return checked(RunFields.integer(value, range: range), field.value, key: key)
    }

    enum KeyRule { case environment, label }

    mutating func stringMap(_ field: (key: Node, value: Node)?, key: String, keyRule: KeyRule) -> [String: String] {
        guard let field, !Self.isNull(field.value) else { return [:] }
        guard case .mapping(let mapping) = field.value else {
            error(field.value, "\(key): expected a mapping such as {NAME: value}, got \(Self.describe(field.value))")
            return [:]
        }
        var out: [String: String] = [:]
        for (k, v) in mapping {
            guard case .scalar(let ks) = k else {
                error(k, "\(key): keys must be words, not \(Self.describe(k))")
                continue
            }
            switch keyRule {
            case .environment:
                let ok =
                    !ks.string.isEmpty
                    && ks.string.unicodeScalars.enumerated().allSatisfy { i, c in
                        c == "_" || ("A"..."Z").contains(c) || ("a"..."z").contains(c) || (i > 0 && ("0"..."9").contains(c))
                    }
                if !ok {
                    error(k, "\(key): \"\(ks.string.prefix(40))\" is not a valid variable name (letters, digits and _, not starting with a digit)")
                    continue
                }
            case .label:
                if ks.string.isEmpty || ks.string.count > 63 {
                    error(k, "\(key): label names are 1–63 characters")
                    continue
                }
            }
            guard case .scalar(let vs) = v, vs.resolvedTagName != .null else {
                error(v, "\(key).\(ks.string): expected a value such as text or a number, got \(Self.describe(v))")
                continue
            }
            if vs.string.unicodeScalars.contains("\0") {
                error(v, "\(key).\(ks.string): contains a NUL byte")
                continue
            }
            // Linux holds one environment entry (`KEY=value`) in at most 128 KiB (MAX_ARG_STRLEN);
            // past it every program the command starts fails (found by attacking).
            if keyRule == .environment, ks.string.utf8.count + vs.string.utf8.count + 2 > ManifestParser.maxEnvironmentEntry {
                error(
                    v,
                    "\(key).\(ks.string): is \(vs.string.utf8.count / 1024) KiB; one environment variable holds at most 128 KiB on Linux "
                        + "(put large data in a file, with bootstrap or userData)")
                continue
            }
            out[ks.string] = vs.string
        }
        // The wrapper sets each variable before the command starts: a megabyte of them took it
        // 20 s, and a deadline ran out before the command began (found by attacking).
        let total = out.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count + 2 }
        if keyRule == .environment, total > ManifestParser.maxEnvironment {
            error(
                field.key,
                "\(key): holds \(total / 1024) KiB in all; at most \(ManifestParser.maxEnvironment / 1024) KiB (put large data in a file, with files or bootstrap)"
            )
        }
        return out
    }
}

extension Node.Scalar {
    /// The scalar's tag after YAML's implicit resolution (`!!int` for `3`, `!!str` for `"3"`).
    var resolvedTagName: Tag.Name { Tag.Name(rawValue: Node.scalar(self).tag.rawValue) }
}
