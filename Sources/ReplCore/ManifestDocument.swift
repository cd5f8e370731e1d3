import Foundation
import Yams

/// Validation of one document, collecting every problem.
struct DocumentContext {
    let file: String
    /// The document's provider's (the parser's default until its `provider:` is read).
    var capabilities: ProviderCapabilities
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
        // The provider first: what else a Run may say depends on it.
        var provider = capabilities.name
        if kind == .run, let f = fields["provider"], let p = string(f.value, key: "provider"),
            let known = checked(RunFields.provider(p), f.value, key: "provider")
        {
            provider = known.name
            capabilities = known
        }
        let allowed = kind == .run ? ManifestParser.runKeys : ManifestParser.snapshotKeys
        for (key, (keyNode, _)) in fields.sorted(by: { ($0.value.key.mark?.line ?? 0) < ($1.value.key.mark?.line ?? 0) })
        where !allowed.contains(key) || (kind == .run && capabilities.unsupportedKeyReason(key) != nil) {
            if kind == .run, provider == "aws", AWSSpec.keys.contains(key) {
                error(keyNode, "\(key): belongs under spec: on aws (spec: {\(key): \(Self.scalarText(fields[key]!.value))})")
            } else if let reason = capabilities.unsupportedKeyReason(key) {
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
        var places = ["name", "from"].reduce(into: [String: SourceLocation]()) { places, key in
            if let field = fields[key] { places[key] = location(field.value) }
        }
        // Every other key where it stands: a clone's provider is known only across documents,
        // and what that provider cannot honour is named there.
        for (key, field) in fields where places[key] == nil { places[key] = location(field.key) }
        switch kind {
        case .snapshot:
            let from = fields["from"].flatMap { f in string(f.value, key: "from").flatMap { checkReference($0, node: f.value, key: "from") } }
            if fields["from"] == nil { error(root, "from: missing; a Snapshot needs the name of the Run to clone") }
            let labels = stringMap(fields["labels"], key: "labels", keyRule: .label)
            guard let name, let from, diagnostics.isEmpty else { return nil }
            return LocatedManifest(manifest: .snapshot(SnapshotManifest(name: name, from: from, labels: labels)), location: here, fields: places)
        case .run:
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
            } else if provider == "aws" {
                if let spec = awsSpec(specField) { source = .aws(spec) }
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
                        files: files, artifacts: artifacts)), location: here, fields: places)
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
}
