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

    func crossCheck(_ documents: [LocatedManifest], declared: [ManifestKind: Set<String>]) -> [ManifestDiagnostic] {
        var diagnostics: [ManifestDiagnostic] = []
        var seen: [ManifestKind: [String: SourceLocation]] = [:]
        for doc in documents {
            let kind = doc.manifest.kind
            if let first = seen[kind]?[doc.manifest.name] {
                diagnostics.append(
                    ManifestDiagnostic(
                        doc.location,
                        "name: \(kind.rawValue) \"\(doc.manifest.name)\" is already defined at \(first); names are unique per kind"))
            } else {
                seen[kind, default: [:]][doc.manifest.name] = doc.location
            }
        }
        let runs = declared[.run, default: []].union(knownRuns)
        let snapshots = declared[.snapshot, default: []].union(knownSnapshots)
        for doc in documents {
            switch doc.manifest {
            case .run(let run):
                if case .snapshot(let from) = run.source, let problem = RunFields.snapshotReference(from, snapshots: snapshots, runs: runs) {
                    diagnostics.append(ManifestDiagnostic(doc.location, "from: \(problem.message)"))
                }
            case .snapshot(let snap):
                if !runs.contains(snap.from) {
                    let hint = Self.suggestion(snap.from, among: runs).map { " (did you mean \"\($0)\"?)" } ?? ""
                    diagnostics.append(ManifestDiagnostic(doc.location, "from: no Run named \"\(snap.from)\"\(hint)"))
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
                            doc.location,
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

/// Validation of one document, collecting every problem.
struct DocumentContext {
    let file: String
    let capabilities: ProviderCapabilities
    var diagnostics: [ManifestDiagnostic] = []
    /// The document's kind and name when both are readable, even if it is invalid.
    var declared: (ManifestKind, String)?

    init(file: String, capabilities: ProviderCapabilities) {
        self.file = file
        self.capabilities = capabilities
    }

    func location(_ node: Node) -> SourceLocation {
        guard let mark = node.mark else { return SourceLocation(file: file, line: 1, column: 1) }
        return SourceLocation(file: file, line: mark.line, column: mark.column)
    }

    mutating func error(_ node: Node, _ message: String) {
        diagnostics.append(ManifestDiagnostic(location(node), message))
    }

    static func isNull(_ node: Node) -> Bool {
        if case .scalar(let s) = node { return s.resolvedTagName == .null || (s.string.isEmpty && s.style == .plain) }
        return false
    }

    mutating func manifest(from root: Node) -> LocatedManifest? {
        if Self.isNull(root) { return nil }  // an empty document, e.g. after a trailing `---`
        guard case .mapping(let mapping) = root else {
            error(root, "a manifest must be a mapping of keys (kind, name, …), not \(Self.describe(root))")
            return nil
        }
        var fields: [String: (key: Node, value: Node)] = [:]
        for (key, value) in mapping {
            guard case .scalar(let k) = key, !Self.isNull(key) else {
                error(key, "keys must be plain words, not \(Self.describe(key))")
                continue
            }
            fields[k.string] = (key, value)
        }
        guard let kindField = fields["kind"] else {
            error(root, "kind: missing; add `kind: Run` or `kind: Snapshot`")
            return nil
        }
        guard let kindText = string(kindField.value, key: "kind") else { return nil }
        guard let kind = ManifestKind(rawValue: kindText) else {
            let hint =
                ManifestParser.suggestion(kindText, among: ManifestKind.allCases.map(\.rawValue))
                .map { "did you mean \($0)?" } ?? "use Run or Snapshot"
            error(kindField.value, "kind: unknown kind \"\(kindText)\"; \(hint)")
            return nil
        }
        let allowed = kind == .run ? ManifestParser.runKeys : ManifestParser.snapshotKeys
        for (key, (keyNode, _)) in fields.sorted(by: { ($0.value.key.mark?.line ?? 0) < ($1.value.key.mark?.line ?? 0) })
        where !allowed.contains(key) {
            if let reason = capabilities.unsupportedKeyReason(key) {
                error(keyNode, "\(key): not supported: \(reason); remove this key")
            } else if kind == .run, ["cpus", "cpu", "memory", "disk"].contains(key) {
                error(keyNode, "\(key): belongs under resources: (resources: {cpus: 2, memory: 4G, disk: 64G})")
            } else if let guess = ManifestParser.suggestion(key, among: allowed) {
                error(keyNode, "\(key): unknown key; did you mean \(guess)?")
            } else if kind == .snapshot, ManifestParser.runKeys.contains(key) {
                error(keyNode, "\(key): not a Snapshot key (a Snapshot has only \(ManifestParser.snapshotKeys.dropFirst().joined(separator: ", ")))")
            } else {
                error(keyNode, "\(key): unknown key (known keys: \(allowed.dropFirst().joined(separator: ", ")))")
            }
        }
        let here = location(root)
        let name = self.name(fields["name"], document: root)
        if let name { declared = (kind, name) }
        switch kind {
        case .snapshot:
            let from = fields["from"].flatMap { f in string(f.value, key: "from").flatMap { checkReference($0, node: f.value, key: "from") } }
            if fields["from"] == nil { error(root, "from: missing; a Snapshot needs the name of the Run to clone") }
            let labels = stringMap(fields["labels"], key: "labels", keyRule: .label)
            guard let name, let from, diagnostics.isEmpty else { return nil }
            return LocatedManifest(manifest: .snapshot(SnapshotManifest(name: name, from: from, labels: labels)), location: here)
        case .run:
            var provider = "orbstack"
            if let f = fields["provider"], let p = string(f.value, key: "provider"),
                let known = checked(RunFields.provider(p, capabilities: capabilities), f.value, key: "provider")
            {
                provider = known
            }
            var source = RunSource.spec(.defaultSpec)
            let specField = fields["spec"].flatMap { Self.isNull($0.value) ? nil : $0 }
            let fromField = fields["from"].flatMap { Self.isNull($0.value) ? nil : $0 }
            if let s = specField, let f = fromField {
                error(
                    f.key,
                    "from: cannot be combined with spec (line \(s.key.mark?.line ?? 0)); a clone takes its spec from the snapshot, so remove one of them"
                )
            } else if let f = fromField {
                if let from = string(f.value, key: "from").flatMap({ checkReference($0, node: f.value, key: "from") }) {
                    source = .snapshot(from)
                }
            } else if let s = specField, let text = string(s.value, key: "spec"), let spec = checked(RunFields.spec(text), s.value, key: "spec") {
                source = .spec(spec)
            }
            let command = optionalString(fields["command"], key: "command").flatMap {
                checked(RunFields.command($0), fields["command"]!.value, key: "command")
            }
            let bootstrap = optionalString(fields["bootstrap"], key: "bootstrap").flatMap {
                checked(RunFields.script($0), fields["bootstrap"]!.value, key: "bootstrap")
            }
            let maxDuration = duration(fields["maxDuration"], key: "maxDuration", allowZero: false)
            let hold = duration(fields["hold"], key: "hold", allowZero: true) ?? .zero
            let replicas = integer(fields["replicas"], key: "replicas", range: 0...ManifestParser.maxReplicas) ?? 1
            let env = stringMap(fields["env"], key: "env", keyRule: .environment)
            let labels = stringMap(fields["labels"], key: "labels", keyRule: .label)
            let options = machineOptions(fields, source: source)
            let files = fileCopies(fields["files"])
            let artifacts = artifactGlobs(fields["artifacts"])
            guard let name, diagnostics.isEmpty else { return nil }
            return LocatedManifest(
                manifest: .run(
                    RunManifest(
                        name: name, provider: provider, source: source, command: command, maxDuration: maxDuration,
                        bootstrap: bootstrap, replicas: replicas, hold: hold, env: env, labels: labels, options: options,
                        files: files, artifacts: artifacts)), location: here)
        }
    }

    // MARK: - Machine options

    /// `resources`, `isolated`, `user` and `userData`: OrbStack's own options at create.
    mutating func machineOptions(_ fields: [String: (key: Node, value: Node)], source: RunSource) -> MachineOptions {
        var options = MachineOptions()
        if let field = fields["resources"], !Self.isNull(field.value) {
            if case .mapping(let mapping) = field.value {
                for (k, v) in mapping {
                    guard case .scalar(let key) = k else {
                        error(k, "resources: keys must be words, not \(Self.describe(k))")
                        continue
                    }
                    switch key.string {
                    case "cpus":
                        options.cpus = integer((k, v), key: "resources.cpus", range: 1...ManifestParser.maxCPUs)
                    case "memory":
                        options.memory = size(v, key: "resources.memory", example: "4G").flatMap {
                            checked(RunFields.memory($0), v, key: "resources.memory")
                        }
                    case "disk":
                        options.disk = size(v, key: "resources.disk", example: "64G").flatMap {
                            checked(RunFields.disk($0), v, key: "resources.disk")
                        }
                    default:
                        let hint =
                            ManifestParser.suggestion(key.string, among: ManifestParser.resourceKeys).map { "did you mean \($0)?" }
                            ?? "use cpus, memory or disk"
                        error(k, "resources.\(key.string.prefix(40)): unknown key; \(hint)")
                    }
                }
            } else {
                error(field.value, "resources: expected a mapping such as {cpus: 2, memory: 4G, disk: 64G}, got \(Self.describe(field.value))")
            }
        }
        if let field = fields["isolated"], !Self.isNull(field.value) {
            if case .scalar(let s) = field.value, s.resolvedTagName == .bool {
                options.isolated = ["true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y"].contains(s.string)
            } else {
                error(field.value, "isolated: expected true or false, got \(Self.describe(field.value))")
            }
        }
        if let field = fields["user"], let user = optionalString(field, key: "user") {
            options.user = checked(RunFields.user(user), field.value, key: "user")
        }
        if let field = fields["userData"], let text = optionalString(field, key: "userData") {
            options.userData = checked(RunFields.userData(text, source: source), field.value, key: "userData")
        }
        return options
    }

    /// `files: [{from: ./src, to: /srv/app, exclude: [".git"]}]`: `from` relative to the
    /// manifest's directory (the working directory for standard input), and there now.
    mutating func fileCopies(_ field: (key: Node, value: Node)?) -> [FileCopy] {
        guard let field, !Self.isNull(field.value) else { return [] }
        guard case .sequence(let items) = field.value else {
            error(field.value, "files: expected a list such as [{from: ./src, to: /srv/app}], got \(Self.describe(field.value))")
            return []
        }
        var out: [FileCopy] = []
        var targets: [String: Int] = [:]
        for (index, item) in items.enumerated() {
            let key = "files[\(index)]"
            guard case .mapping(let mapping) = item else {
                error(item, "\(key): expected {from: PATH, to: PATH}, got \(Self.describe(item))")
                continue
            }
            var entry: [String: (key: Node, value: Node)] = [:]
            for (k, v) in mapping {
                guard case .scalar(let name) = k, ["from", "to", "exclude"].contains(name.string) else {
                    let word = { if case .scalar(let n) = k { return n.string } else { return "?" } }()
                    let hint =
                        ManifestParser.suggestion(word, among: ["from", "to", "exclude"]).map { "did you mean \($0)?" } ?? "use from, to and exclude"
                    error(k, "\(key).\(word.prefix(40)): unknown key; \(hint)")
                    continue
                }
                entry[name.string] = (k, v)
            }
            guard let fromField = entry["from"] else { error(item, "\(key).from: missing; the file or directory to copy"); continue }
            guard let toField = entry["to"] else { error(item, "\(key).to: missing; where it goes in the machine (an absolute path)"); continue }
            guard let from = string(fromField.value, key: "\(key).from"), let to = string(toField.value, key: "\(key).to") else { continue }
            guard to.hasPrefix("/"), !to.split(separator: "/").contains("..") else {
                error(toField.value, "\(key).to: \"\(to.prefix(60))\" is not an absolute path in the machine (as /srv/app)")
                continue
            }
            let target = (to as NSString).standardizingPath
            if target == "/" { error(toField.value, "\(key).to: / is the machine's root; give a directory under it (as /srv/app)"); continue }
            if target == "/mnt/mac" || target.hasPrefix("/mnt/mac/") {
                error(toField.value, "\(key).to: \(target) is the Mac's own file system seen from the machine; give a path in the machine")
                continue
            }
            if let earlier = targets[target] {
                error(toField.value, "\(key).to: \(target) is already the target of files[\(earlier)]")
                continue
            }
            targets[target] = index
            if from.isEmpty { error(fromField.value, "\(key).from: is empty; give a file or directory"); continue }
            let base =
                file == "<stdin>" || file == "flags" || !file.contains("/")
                ? FileManager.default.currentDirectoryPath : (file as NSString).deletingLastPathComponent
            let absolute = ((from.hasPrefix("/") ? from : (base as NSString).appendingPathComponent(from)) as NSString).standardizingPath
            guard let type = (try? FileManager.default.attributesOfItem(atPath: absolute))?[.type] as? FileAttributeType,
                FileManager.default.fileExists(atPath: absolute)
            else {
                error(
                    fromField.value, "\(key).from: \(absolute) does not exist\(from.hasPrefix("/") ? "" : " (relative to the manifest's directory)")")
                continue
            }
            // A regular file or a directory (a link to one is followed); never a device, a fifo
            // or a socket, which would never end or mean nothing in the machine.
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: absolute, isDirectory: &isDirectory)
            let resolved =
                type == .typeSymbolicLink
                ? (try? FileManager.default.attributesOfItem(atPath: (absolute as NSString).resolvingSymlinksInPath))?[.type] as? FileAttributeType
                : type
            guard isDirectory.boolValue || resolved == .typeRegular else {
                error(fromField.value, "\(key).from: \(absolute) is neither a file nor a directory")
                continue
            }
            if absolute == "/" { error(fromField.value, "\(key).from: / is the whole host; give the directory to copy"); continue }
            var exclude: [String] = []
            if let ex = entry["exclude"], !Self.isNull(ex.value) {
                if case .sequence(let patterns) = ex.value {
                    for p in patterns { if let text = string(p, key: "\(key).exclude") { exclude.append(text) } }
                } else {
                    error(ex.value, "\(key).exclude: expected a list of patterns such as [\".git\", \"*.o\"], got \(Self.describe(ex.value))")
                }
            }
            out.append(FileCopy(from: absolute, to: to, exclude: exclude))
        }
        return out
    }

    /// `artifacts: ["/srv/out/*.json"]`: absolute globs in the machine.
    mutating func artifactGlobs(_ field: (key: Node, value: Node)?) -> [String] {
        guard let field, !Self.isNull(field.value) else { return [] }
        guard case .sequence(let items) = field.value else {
            error(field.value, "artifacts: expected a list of paths or globs such as [\"/srv/out/*.json\"], got \(Self.describe(field.value))")
            return []
        }
        var out: [String] = []
        for (index, item) in items.enumerated() {
            guard let glob = string(item, key: "artifacts[\(index)]") else { continue }
            guard glob.hasPrefix("/"), !glob.split(separator: "/").contains(".."), !glob.contains(where: { $0.isNewline }) else {
                error(item, "artifacts[\(index)]: \"\(glob.prefix(60))\" is not an absolute path or glob in the machine (as /srv/out/*.json)")
                continue
            }
            out.append(glob)
        }
        return out
    }

    /// A size's text, once the node is a scalar (``RunFields`` reads it).
    mutating func size(_ node: Node, key: String, example: String) -> String? {
        guard case .scalar(let s) = node, s.resolvedTagName != .null else {
            error(node, "\(key): expected a size such as \(example), got \(Self.describe(node))")
            return nil
        }
        return s.string
    }

    /// The value of a field check, or its problem recorded against `node` under `key`.
    mutating func checked<T>(_ result: Result<T, FieldProblem>, _ node: Node, key: String) -> T? {
        switch result {
        case .success(let value): return value
        case .failure(let problem):
            error(node, "\(key): \(problem.message)")
            return nil
        }
    }

    // MARK: - Field readers

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

    /// Why a run or snapshot name is invalid, or `nil` when it is fine.
    public static func nameProblem(_ text: String) -> String? {
        if text.isEmpty { return "is empty; use lowercase letters, digits and '-'" }
        if text.count > ManifestParser.maxNameLength {
            return "is \(text.count) characters long; use at most \(ManifestParser.maxNameLength)"
        }
        if !text.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }) {
            let lowered = text.lowercased()
            if lowered != text, nameProblem(lowered) == nil { return "has uppercase letters; use \"\(lowered)\"" }
            return "may only contain lowercase letters, digits and '-'"
        }
        if text.hasPrefix("-") { return "must start with a letter or digit" }
        return nil
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
        return out
    }
}

extension Node.Scalar {
    /// The scalar's tag after YAML's implicit resolution (`!!int` for `3`, `!!str` for `"3"`).
    var resolvedTagName: Tag.Name { Tag.Name(rawValue: Node.scalar(self).tag.rawValue) }
}
