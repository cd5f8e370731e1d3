import Foundation
import ReplCore

/// The copy of a run's manifest written into each machine (`/etc/repl/manifest.yaml`), so
/// `repl recover` can rebuild the run after the store is lost: a header line naming the run,
/// its generation and the instance, then the manifest as JSON (which is YAML). ``text(run:instance:)``
/// writes it; ``read(_:)`` reads it back through the manifest parser's checks (a machine can
/// write anything there).
public enum ManifestCopy {
    public static let path = "/etc/repl/manifest.yaml"

    public struct Copy: Equatable, Sendable {
        public var runID: RunID
        public var generation: Int
        public var instance: InstanceID
        public var manifest: RunManifest
    }

    /// The manifest's fields as a manifest file spells them: a recovered run is the run that
    /// was applied (a missing option would differ, and the next apply would replace its machines).
    struct Document: Codable {
        var kind = "Run"
        var name: String
        var replicas: Int
        var hold: String
        var spec: String?
        var from: String?
        var command: String?
        var bootstrap: String?
        var maxDuration: String?
        var env: [String: String]?
        var labels: [String: String]?
        var resources: Resources?
        var isolated: Bool?
        var user: String?
        var userData: String?
        var files: [File]?
        var artifacts: [String]?

        struct Resources: Codable {
            var cpus: Int?
            var memory: String?
            var disk: String?
        }

        struct File: Codable {
            var from: String
            var to: String
            var exclude: [String]
        }
    }

    public static func text(run: DesiredRun, instance: InstanceState) -> String {
        let m = run.manifest, o = m.options
        var doc = Document(name: m.name, replicas: m.replicas, hold: m.hold.description)
        switch m.source {
        case .spec(let spec): doc.spec = spec.description
        case .snapshot(let snapshot): doc.from = snapshot
        case .aws(let spec): doc.spec = spec.description
        }
        doc.command = m.command
        doc.bootstrap = m.bootstrap
        doc.maxDuration = m.maxDuration?.description
        doc.env = m.env.isEmpty ? nil : m.env
        doc.labels = m.labels.isEmpty ? nil : m.labels
        if o.hasResources { doc.resources = Document.Resources(cpus: o.cpus, memory: o.memory?.description, disk: o.disk?.description) }
        doc.isolated = o.isolated ? true : nil
        doc.user = o.user
        doc.userData = o.userData
        doc.files = m.files.isEmpty ? nil : m.files.map { Document.File(from: $0.from, to: $0.to, exclude: $0.exclude) }
        doc.artifacts = m.artifacts.isEmpty ? nil : m.artifacts
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        let json = (try? encoder.encode(doc)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return "# repl run \(Base36.encode(run.id)) generation \(run.generation) instance \(Base36.encode(instance.id))\n\(json)\n"
    }

    /// The copy, or nil when it is not one this writer wrote (or the manifest in it is not valid).
    public static func read(_ text: String) -> Copy? {
        guard let newline = text.firstIndex(of: "\n") else { return nil }
        let header = text[..<newline].split(separator: " ")
        guard header.count == 8, header[0] == "#", header[1] == "repl", header[2] == "run", header[4] == "generation",
            header[6] == "instance", let runID = Base36.decode(header[3]), let generation = Int(header[5]),
            let instance = Base36.decode(header[7])
        else { return nil }
        let body = String(text[text.index(after: newline)...])
        // A clone's `from` names a snapshot the lost store no longer knows: any name is accepted here.
        var parser = ManifestParser()
        struct Source: Decodable { var from: String? }
        if let from = (try? JSONDecoder().decode(Source.self, from: Data(body.utf8)))?.from { parser.knownSnapshots = [from] }
        guard let set = try? parser.parse(body, file: path), set.runs.count == 1, let run = set.runs.first else { return nil }
        return Copy(runID: RunID(runID), generation: generation, instance: InstanceID(instance), manifest: run)
    }
}
