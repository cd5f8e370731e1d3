import Foundation
import Yams

/// One manifest file's text and the name used for it in messages
/// (its path as given, or `<stdin>`).
public struct ManifestSource: Sendable, Equatable {
    public var name: String
    public var text: String
    public init(name: String, text: String) {
        self.name = name
        self.text = text
    }
}

/// Turns YAML text into validated manifests, reporting every problem in every
/// file with its file, line and column and how to fix it.
public struct ManifestParser: Sendable {
    /// What the target provider can do; keys it cannot honour are errors.
    public var capabilities: ProviderCapabilities
    /// Runs already in the store, so a snapshot may name one applied earlier.
    public var knownRuns: Set<String>
    /// Snapshots already in the store, so a run may clone one applied earlier.
    public var knownSnapshots: Set<String>

    public init(capabilities: ProviderCapabilities = .orbstack, knownRuns: Set<String> = [], knownSnapshots: Set<String> = []) {
        self.capabilities = capabilities
        self.knownRuns = knownRuns
        self.knownSnapshots = knownSnapshots
    }

    static let runKeys = [
        "kind", "name", "provider", "spec", "from", "command", "maxDuration",
        "bootstrap", "replicas", "hold", "env", "labels", "resources", "isolated", "user", "userData", "files", "artifacts",
    ]
    static let resourceKeys = ["cpus", "memory", "disk"]
    static let snapshotKeys = ["kind", "name", "from", "labels"]
    public static let maxReplicas = 1000
    public static let maxCPUs = 256
    /// `MAX_ARG_STRLEN` of Linux: one `KEY=value` entry with its NUL.
    public static let maxEnvironmentEntry = 128 * 1024
    /// All of a run's `env` together: set by the wrapper before the command starts.
    public static let maxEnvironment = 256 * 1024

    /// Why a `userData` text is not a cloud-init document repl can hand to OrbStack, or nil.
    public static func userDataProblem(_ text: String) -> String? {
        if text.utf8.count > maxScriptBytes { return "is \(text.utf8.count / 1024) KiB; at most \(maxScriptBytes / 1024) KiB" }
        if text.hasPrefix("#!") { return nil }
        guard text.hasPrefix("#cloud-config") else {
            return "must start with #cloud-config (a cloud-init document) or #! (a script)"
        }
        do {
            let document = try Yams.load(yaml: text)
            if document != nil, !(document is [String: Any]) { return "the #cloud-config document must be a mapping (write_files:, runcmd:, …)" }
        } catch let error as YamlError {
            let d = ManifestParser.diagnostic(for: error, file: "userData")
            let message = d.message.hasPrefix("invalid YAML: ") ? String(d.message.dropFirst(14)) : d.message
            return "is not valid YAML (line \(d.location.line) of the document): \(message)"
        } catch {
            return "is not valid YAML: \(error)"
        }
        return nil
    }
    public static let maxNameLength = 40
    /// A command or bootstrap longer than this is refused: it travels inside the wrapper.
    public static let maxScriptBytes = 1 << 20

    /// Parses and validates all sources together. Throws ``ManifestError`` with
    /// every diagnostic when anything is wrong; then nothing may be applied.
    public func parse(_ sources: [ManifestSource]) throws(ManifestError) -> ManifestSet {
        var diagnostics: [ManifestDiagnostic] = []
        var documents: [LocatedManifest] = []
        var declared: [ManifestKind: Set<String>] = [:]
        for source in sources {
            let (docs, diags, names) = parseFile(source)
            documents += docs
            diagnostics += diags
            for (kind, name) in names { declared[kind, default: []].insert(name) }
        }
        diagnostics += crossCheck(documents, declared: declared)
        if diagnostics.isEmpty { diagnostics += inferCloneProviders(&documents) }
        guard diagnostics.isEmpty else { throw ManifestError(diagnostics) }
        if documents.isEmpty {
            let where_ = SourceLocation(file: sources.first?.name ?? "<input>", line: 1, column: 1)
            throw ManifestError([ManifestDiagnostic(where_, "no manifests found (expected documents with kind: Run or kind: Snapshot)")])
        }
        return ManifestSet(documents: documents)
    }

    /// Convenience for one text.
    public func parse(_ text: String, file: String) throws(ManifestError) -> ManifestSet {
        try parse([ManifestSource(name: file, text: text)])
    }

    // MARK: - Files and documents

    /// The valid documents of one file, its problems, and the (kind, name) of every
    /// document that has both, valid or not, so one bad document does not make
    /// references to it look dangling too.
    func parseFile(_ source: ManifestSource) -> ([LocatedManifest], [ManifestDiagnostic], [(ManifestKind, String)]) {
        var documents: [LocatedManifest] = []
        var diagnostics: [ManifestDiagnostic] = []
        var declared: [(ManifestKind, String)] = []
        if source.text.utf8.contains(0) {
            return (
                [],
                [
                    ManifestDiagnostic(
                        SourceLocation(file: source.name, line: 1, column: 1),
                        "the file contains NUL bytes; a manifest is UTF-8 text")
                ], []
            )
        }
        do {
            let parser = try Parser(yaml: source.text)
            while let root = try parser.nextRoot() {
                var context = DocumentContext(file: source.name, capabilities: capabilities)
                if let manifest = context.manifest(from: root) {
                    documents.append(manifest)
                }
                if let d = context.declared { declared.append(d) }
                diagnostics += context.diagnostics
            }
        } catch let error as YamlError {
            diagnostics.append(Self.diagnostic(for: error, file: source.name))
        } catch {
            diagnostics.append(
                ManifestDiagnostic(
                    SourceLocation(file: source.name, line: 1, column: 1),
                    "cannot read YAML: \(error)"))
        }
        return (documents, diagnostics, declared)
    }

    static func diagnostic(for error: YamlError, file: String) -> ManifestDiagnostic {
        func at(_ mark: Mark) -> SourceLocation { SourceLocation(file: file, line: max(1, mark.line), column: max(1, mark.column)) }
        switch error {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            let detail = context.map { "\(problem) \($0.text)" } ?? problem
            return ManifestDiagnostic(at(mark), "invalid YAML: \(detail)")
        case let .duplicatedKeysInMapping(duplicates, context):
            let key = duplicates.first ?? "?"
            return ManifestDiagnostic(at(context.mark), "\(key): key appears more than once in the same document; keep one")
        case let .reader(problem, offset, _, _):
            return ManifestDiagnostic(
                SourceLocation(file: file, line: 1, column: 1),
                "cannot read the file as UTF-8 text: \(problem)\(offset.map { " at byte \($0)" } ?? "")")
        default:
            return ManifestDiagnostic(SourceLocation(file: file, line: 1, column: 1), "invalid YAML: \(error)")
        }
    }

    // MARK: - Checks across documents

    /// A run cloned `from:` a snapshot, without a `provider:` of its own, runs on its snapshot's
    /// provider (an AMI clones onto EC2): found through the snapshot's run in these documents,
    /// and what that provider cannot honour named where it stands. One whose snapshot is not
    /// here takes the state directory's provider when applied (``Self/adoptProvider``).
    func inferCloneProviders(_ documents: inout [LocatedManifest]) -> [ManifestDiagnostic] {
        var runs: [String: RunManifest] = [:], snapshots: [String: String] = [:]
        for doc in documents {
            switch doc.manifest {
            case .run(let run): runs[run.name] = run
            case .snapshot(let snap): snapshots[snap.name] = snap.from
            }
        }
        /// The provider of the run a snapshot chain ends at (a run with a spec, or a provider of its own).
        func provider(ofSnapshot snapshot: String, documents: [LocatedManifest]) -> String? {
            var snapshot = snapshot
            for _ in 0...documents.count {
                guard let from = snapshots[snapshot], let run = runs[from] else { return nil }
                let doc = documents.first { if case .run(let r) = $0.manifest { return r.name == run.name } else { return false } }
                guard case .snapshot(let next) = run.source, doc?.fields["provider"] == nil else { return run.provider }
                snapshot = next
            }
            return nil
        }
        var diagnostics: [ManifestDiagnostic] = []
        for (index, doc) in documents.enumerated() {
            guard case .run(var run) = doc.manifest, case .snapshot(let snapshot) = run.source, doc.fields["provider"] == nil,
                let inferred = provider(ofSnapshot: snapshot, documents: documents), inferred != run.provider
            else { continue }
            diagnostics += Self.adopt(inferred, run: &run, document: doc, why: "snapshot \(snapshot) is of a run on \(inferred)")
            documents[index].manifest = .run(run)
        }
        return diagnostics
    }

    /// Puts a clone run on `provider`, naming each key it has that the provider cannot honour.
    public static func adopt(_ provider: String, run: inout RunManifest, document: LocatedManifest, why: String) -> [ManifestDiagnostic] {
        guard let capabilities = ProviderCapabilities.known.first(where: { $0.name == provider }) else { return [] }
        run.provider = provider
        return document.fields.keys.sorted().compactMap { key in
            capabilities.unsupportedKeyReason(key).map {
                ManifestDiagnostic(document.location(of: key), "\(key): not supported on \(provider) (\(why)): \($0); remove this key")
            }
        }
    }

    func crossCheck(_ documents: [LocatedManifest], declared: [ManifestKind: Set<String>]) -> [ManifestDiagnostic] {
        var diagnostics: [ManifestDiagnostic] = []
        var seen: [ManifestKind: [String: SourceLocation]] = [:]
        for doc in documents {
            let kind = doc.manifest.kind
            if let first = seen[kind]?[doc.manifest.name] {
                diagnostics.append(
                    ManifestDiagnostic(
                        doc.location(of: "name"),
                        "name: \(kind.rawValue) \"\(doc.manifest.name)\" is already defined at \(first); names are unique per kind"))
            } else {
                seen[kind, default: [:]][doc.manifest.name] = doc.location(of: "name")
            }
        }
        let runs = declared[.run, default: []].union(knownRuns)
        let snapshots = declared[.snapshot, default: []].union(knownSnapshots)
        for doc in documents {
            switch doc.manifest {
            case .run(let run):
                if case .snapshot(let from) = run.source, let problem = RunFields.snapshotReference(from, snapshots: snapshots, runs: runs) {
                    diagnostics.append(ManifestDiagnostic(doc.location(of: "from"), "from: \(problem.message)"))
                }
            case .snapshot(let snap):
                let from = documents.lazy.compactMap { d -> RunManifest? in
                    if case .run(let r) = d.manifest, r.name == snap.from { return r } else { return nil }
                }.first
                if let from, let provider = ProviderCapabilities.known.first(where: { $0.name == from.provider }), !provider.snapshots {
                    diagnostics.append(
                        ManifestDiagnostic(
                            doc.location(of: "from"), "from: run \(from.name) runs on \(from.provider), which cannot take snapshots yet"))
                } else if !runs.contains(snap.from) {
                    let hint = Self.suggestion(snap.from, among: runs).map { " (did you mean \"\($0)\"?)" } ?? ""
                    diagnostics.append(ManifestDiagnostic(doc.location(of: "from"), "from: no Run named \"\(snap.from)\"\(hint)"))
                }
            }
        }
        // A snapshot taken of a run that clones that very snapshot (directly or through others)
        // can never be taken: every run in the loop waits for ever (found by attacking).
        var runFrom: [String: String] = [:], snapshotFrom: [String: String] = [:]
        for doc in documents {
            switch doc.manifest {
            case .run(let run): if case .snapshot(let from) = run.source { runFrom[run.name] = from }
            case .snapshot(let snap): snapshotFrom[snap.name] = snap.from
            }
        }
        for doc in documents {
            guard case .snapshot(let snap) = doc.manifest else { continue }
            var chain = [snap.name], run = snap.from
            while let next = runFrom[run], chain.count <= documents.count {
                chain.append(run)
                if next == snap.name {
                    diagnostics.append(
                        ManifestDiagnostic(
                            doc.location(of: "from"),
                            "from: Snapshot \"\(snap.name)\" is taken from a run that clones it ("
                                + (chain + [snap.name]).joined(separator: " → ") + "); it could never be taken: start the loop from a spec"))
                    break
                }
                chain.append(next)
                guard let after = snapshotFrom[next] else { break }
                run = after
            }
        }
        return diagnostics
    }

    /// The closest candidate within edit distance 2, for did-you-mean hints.
    static func suggestion(_ word: String, among candidates: some Sequence<String>) -> String? {
        var best: (String, Int)?
        for c in candidates {
            let d = editDistance(word.lowercased(), c.lowercased())
            if d <= max(1, min(2, word.count / 3)), best == nil || d < best!.1 { best = (c, d) }
        }
        return best?.0
    }

    /// Optimal string alignment distance: insertions, deletions, substitutions and
    /// swaps of neighbours each cost 1 (`bsae` is one step from `base`).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }
}
