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
                ManifestError([ManifestDiagnostic(SourceLocation(file: "-l", line: 1, column: 1), "\"\(term)\": \(why) (use key=value, key!=value or key)")])
            }
            if term.isEmpty { throw bad("an empty term") }
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
