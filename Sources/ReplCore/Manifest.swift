import Foundation

/// What a run's machines are made from: a fresh OrbStack machine of a spec, an EC2 instance
/// (`provider: aws`), or a clone of a snapshot.
public enum RunSource: Hashable, Sendable, Codable, CustomStringConvertible {
    case spec(Spec)
    case snapshot(String)
    case aws(AWSSpec)

    public var description: String {
        switch self {
        case .spec(let s): return s.description
        case .snapshot(let n): return "snapshot \(n)"
        case .aws(let s): return s.description
        }
    }

    /// What a fresh machine is made as; nil for a clone.
    public var machineSpec: MachineSpec? {
        switch self {
        case .spec(let s): return .orbstack(s)
        case .aws(let s): return .aws(s)
        case .snapshot: return nil
        }
    }
}

/// One machine as a provider makes it: an OrbStack machine of a spec, or an EC2 instance.
public enum MachineSpec: Hashable, Sendable, CustomStringConvertible {
    case orbstack(Spec)
    case aws(AWSSpec)

    public var description: String {
        switch self {
        case .orbstack(let s): return s.description
        case .aws(let s): return s.description
        }
    }
}

/// A `kind: Run` document: N machines (replicas) of one spec, each running the
/// same command once. Keys mirror the flags of `repl run` one to one.
public struct RunManifest: Hashable, Sendable, Codable {
    public var name: String
    /// `orbstack` (the default) or `aws`.
    public var provider: String
    public var source: RunSource
    /// Without a command the machine stays up until deleted or `maxDuration`.
    public var command: String?
    /// No deadline when `nil`.
    public var maxDuration: TimeSpan?
    /// Run as root before the command; failures are logged, not fatal.
    public var bootstrap: String?
    public var replicas: Int
    /// How long a machine is kept after its command ends.
    public var hold: TimeSpan
    public var env: [String: String]
    public var labels: [String: String]
    /// OrbStack's own machine options (resources, isolated, user, userData).
    public var options: MachineOptions
    /// Copied into each machine before its bootstrap.
    public var files: [FileCopy]
    /// Globs in the machine copied back to `$REPL_HOME/artifacts/RUN/N/` after the command ends.
    public var artifacts: [String]

    public init(
        name: String, provider: String = "orbstack", source: RunSource = .spec(.defaultSpec),
        command: String? = nil, maxDuration: TimeSpan? = nil, bootstrap: String? = nil,
        replicas: Int = 1, hold: TimeSpan = .zero, env: [String: String] = [:], labels: [String: String] = [:],
        options: MachineOptions = .none, files: [FileCopy] = [], artifacts: [String] = []
    ) {
        self.name = name
        self.provider = provider
        self.source = source
        self.command = command
        self.maxDuration = maxDuration
        self.bootstrap = bootstrap
        self.replicas = replicas
        self.hold = hold
        self.env = env
        self.labels = labels
        self.options = options
        self.files = files
        self.artifacts = artifacts
    }

    /// Manifests stored before `options` existed have none.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        provider = try c.decode(String.self, forKey: .provider)
        source = try c.decode(RunSource.self, forKey: .source)
        command = try c.decodeIfPresent(String.self, forKey: .command)
        maxDuration = try c.decodeIfPresent(TimeSpan.self, forKey: .maxDuration)
        bootstrap = try c.decodeIfPresent(String.self, forKey: .bootstrap)
        replicas = try c.decode(Int.self, forKey: .replicas)
        hold = try c.decode(TimeSpan.self, forKey: .hold)
        env = try c.decode([String: String].self, forKey: .env)
        labels = try c.decode([String: String].self, forKey: .labels)
        options = try c.decodeIfPresent(MachineOptions.self, forKey: .options) ?? .none
        files = try c.decodeIfPresent([FileCopy].self, forKey: .files) ?? []
        artifacts = try c.decodeIfPresent([String].self, forKey: .artifacts) ?? []
    }

    /// The part of the manifest whose change replaces the machines (a new
    /// generation): source, bootstrap, command, env and the machine options. Replicas, hold,
    /// maxDuration and labels change in place.
    public var generationFingerprint: String {
        let envText = env.keys.sorted().map { "\($0)=\(env[$0]!.debugDescription)" }.joined(separator: ",")
        var parts = [source.description, bootstrap?.debugDescription ?? "-", command?.debugDescription ?? "-", envText]
        // Only when set: a run applied before the options existed keeps its generation.
        if options != .none { parts.append(options.fingerprint) }
        // What is copied in is part of the machine as the bootstrap finds it.
        if !files.isEmpty { parts.append(files.map { "\($0.from)>\($0.to)-\($0.exclude.joined(separator: "|"))" }.joined(separator: ";")) }
        return parts.joined(separator: "\u{1F}")
    }
}

/// A `kind: Snapshot` document: a stopped clone of a run's first instance, kept as a
/// base for fast clones.
public struct SnapshotManifest: Hashable, Sendable, Codable {
    public var name: String
    /// The name of the run whose first instance is cloned.
    public var from: String
    public var labels: [String: String]

    public init(name: String, from: String, labels: [String: String] = [:]) {
        self.name = name
        self.from = from
        self.labels = labels
    }
}

/// One YAML document.
public enum Manifest: Hashable, Sendable {
    case run(RunManifest)
    case snapshot(SnapshotManifest)

    public var name: String {
        switch self {
        case .run(let r): return r.name
        case .snapshot(let s): return s.name
        }
    }

    public var kind: ManifestKind {
        switch self {
        case .run: return .run
        case .snapshot: return .snapshot
        }
    }
}

public enum ManifestKind: String, Sendable, Codable, CaseIterable {
    case run = "Run"
    case snapshot = "Snapshot"
}

/// Where a document came from, for messages.
public struct SourceLocation: Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }
    /// `file:line:column`, or just `file` for problems with the file as a whole (line 0).
    public var description: String { line > 0 ? "\(file):\(line):\(column)" : file }
}

/// A manifest with the place it was read from.
public struct LocatedManifest: Hashable, Sendable {
    public var manifest: Manifest
    public var location: SourceLocation
    /// Where the values of `name` and `from` stand, for problems found across documents.
    public var fields: [String: SourceLocation]

    public init(manifest: Manifest, location: SourceLocation, fields: [String: SourceLocation] = [:]) {
        self.manifest = manifest
        self.location = location
        self.fields = fields
    }

    /// Where the value of `key` stands, else the document.
    public func location(of key: String) -> SourceLocation { fields[key] ?? location }
}

/// The documents of one apply, validated together: names unique per kind and
/// every `from` resolved.
public struct ManifestSet: Sendable, Equatable {
    public var documents: [LocatedManifest]

    /// Documents checked as ``ManifestParser`` checks them (`repl run` checks its flags with ``RunFields``).
    public init(documents: [LocatedManifest]) {
        self.documents = documents
    }

    public var runs: [RunManifest] {
        documents.compactMap { if case .run(let r) = $0.manifest { return r } else { return nil } }
    }
    public var snapshots: [SnapshotManifest] {
        documents.compactMap { if case .snapshot(let s) = $0.manifest { return s } else { return nil } }
    }
}

/// One problem found in a manifest, with its exact place and how to fix it.
public struct ManifestDiagnostic: Hashable, Sendable, CustomStringConvertible {
    public var location: SourceLocation
    public var message: String
    public init(_ location: SourceLocation, _ message: String) {
        self.location = location
        self.message = message
    }
    /// `file:line:column: message`
    public var description: String { "\(location): \(message)" }
}

/// Every problem found in a set of manifests; when thrown, nothing was applied.
public struct ManifestError: Error, Sendable, CustomStringConvertible, Equatable {
    public var diagnostics: [ManifestDiagnostic]
    /// Sorted as a reader goes through the files: files in the order given, then by line and
    /// column (validation finds them in another order).
    public init(_ diagnostics: [ManifestDiagnostic]) {
        var fileOrder: [String: Int] = [:]
        for d in diagnostics where fileOrder[d.location.file] == nil { fileOrder[d.location.file] = fileOrder.count }
        self.diagnostics = diagnostics.enumerated().sorted { a, b in
            let ka = (fileOrder[a.element.location.file]!, a.element.location.line, a.element.location.column, a.offset)
            let kb = (fileOrder[b.element.location.file]!, b.element.location.line, b.element.location.column, b.offset)
            return ka < kb
        }.map(\.element)
    }
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}
