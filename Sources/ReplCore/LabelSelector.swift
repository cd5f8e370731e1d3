import Foundation

/// A kubectl-like label selector: `key=value[,key2=value2]`, `key!=value`, or a bare `key`
/// (the label is present). Every term must hold.
public struct LabelSelector: Sendable, Equatable {
    public enum Term: Sendable, Equatable {
        case equals(String, String), notEquals(String, String), exists(String)
    }
    public let terms: [Term]

    /// Parses a selector; the error says which term is wrong.
    public init(parsing text: String) throws(ManifestError) {
        var terms: [Term] = []
        for raw in text.split(separator: ",", omittingEmptySubsequences: false) {
            let term = raw.trimmingCharacters(in: .whitespaces)
            func bad(_ why: String) -> ManifestError {
                let shown = term.count > 60 ? String(term.prefix(60)) + "…" : term
                return ManifestError([
                    ManifestDiagnostic(
                        SourceLocation(file: "-l", line: 1, column: 1),
                        "\(shown.debugDescription): \(why) (use key=value, key!=value or key)")
                ])
            }
            if term.isEmpty { throw bad("an empty term") }
            // Keys are label names as manifests allow them (1–63 characters) without the
            // characters of selector syntax repl does not read (`!key`, `key in (a,b)`).
            let keyEnd = term.range(of: "!=")?.lowerBound ?? term.firstIndex(of: "=") ?? term.endIndex
            let key = term[..<keyEnd]
            if key.count > 63 { throw bad("a key of \(key.count) characters; label names have at most 63") }
            if key.hasPrefix("!") { throw bad("!key (absent) is not supported; use key!=value") }
            if key.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) { throw bad("the key contains control characters") }
            if key.contains(where: { "()<>".contains($0) }) || key.contains(" in ") || key.contains(" notin ") {
                throw bad("set-based selectors (key in (a,b)) are not supported")
            }
            if key.contains(where: \.isWhitespace) { throw bad("the key has spaces; write key=value without them") }
            if key.contains("!") { throw bad("the key contains !") }
            if let range = term.range(of: "!=") {
                let key = String(term[..<range.lowerBound]), value = String(term[range.upperBound...])
                guard !key.isEmpty else { throw bad("no key") }
                terms.append(.notEquals(key, value))
            } else if let eq = term.firstIndex(of: "=") {
                let key = String(term[..<eq]), value = String(term[term.index(after: eq)...].drop { $0 == "=" })
                guard !key.isEmpty else { throw bad("no key") }
                terms.append(.equals(key, value))
            } else {
                terms.append(.exists(term))
            }
        }
        self.terms = terms
    }

    public func matches(_ labels: [String: String]) -> Bool {
        terms.allSatisfy { term in
            switch term {
            case let .equals(k, v): return labels[k] == v
            case let .notEquals(k, v): return labels[k] != v
            case let .exists(k): return labels[k] != nil
            }
        }
    }
}
