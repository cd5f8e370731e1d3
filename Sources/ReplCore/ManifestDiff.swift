import Foundation

extension RunManifest {
    /// What changed from `old` to this manifest, a field a line: `bootstrap: "echo one" → "echo two"`.
    /// Values are quoted and cut at 60 characters; env values are never shown (they may be secrets).
    public func differences(from old: RunManifest) -> [String] {
        func show(_ text: String?) -> String {
            guard let text else { return "none" }
            let quoted = text.debugDescription
            return quoted.count > 62 ? String(quoted.prefix(60)) + "…\"" : quoted
        }
        var out: [String] = []
        func field(_ name: String, _ a: String, _ b: String) { if a != b { out.append("\(name): \(a) → \(b)") } }
        field("source", old.source.description, source.description)
        field("bootstrap", show(old.bootstrap), show(bootstrap))
        field("command", show(old.command), show(command))
        if old.env != env {
            let keys = Set(old.env.keys).union(env.keys).sorted().filter { old.env[$0] != env[$0] }
            out.append(
                "env: " + keys.map { k in old.env[k] == nil ? "+\(k)" : env[k] == nil ? "-\(k)" : "~\(k)" }.joined(separator: " ")
                    + " (values not shown)")
        }
        func resources(_ o: MachineOptions) -> String {
            guard o.hasResources else { return "none" }
            return "{"
                + [o.cpus.map { "cpus: \($0)" }, o.memory.map { "memory: \($0)" }, o.disk.map { "disk: \($0)" }]
                .compactMap { $0 }.joined(separator: ", ") + "}"
        }
        field("resources", resources(old.options), resources(options))
        field("isolated", "\(old.options.isolated)", "\(options.isolated)")
        field("user", old.options.user ?? "none", options.user ?? "none")
        field("userData", show(old.options.userData), show(options.userData))
        func copies(_ f: [FileCopy]) -> String {
            f.isEmpty
                ? "none"
                : f.map { "\($0.from) → \($0.to)" + ($0.exclude.isEmpty ? "" : " (without \($0.exclude.joined(separator: ", ")))") }.joined(
                    separator: "; ")
        }
        field("files", copies(old.files), copies(files))
        field(
            "artifacts", old.artifacts.isEmpty ? "none" : old.artifacts.joined(separator: ", "),
            artifacts.isEmpty ? "none" : artifacts.joined(separator: ", "))
        field("replicas", "\(old.replicas)", "\(replicas)")
        field("maxDuration", old.maxDuration.map { "\($0)" } ?? "none", maxDuration.map { "\($0)" } ?? "none")
        field("hold", "\(old.hold)", "\(hold)")
        if old.labels != labels {
            func text(_ l: [String: String]) -> String {
                l.isEmpty ? "{}" : l.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            }
            out.append("labels: \(text(old.labels)) → \(text(labels))")
        }
        return out
    }
}
