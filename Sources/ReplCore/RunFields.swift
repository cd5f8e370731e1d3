import Foundation

/// Why a field's value is not valid: a message without the field's name, which the caller
/// puts in front (the manifest parser names the key and its line, `repl run` the flag).
public struct FieldProblem: Error, Equatable, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

/// The checks of a Run's fields on their values, once for both ways a Run is written: a
/// manifest (``ManifestParser``, after it has read the YAML node's type) and `repl run`'s flags.
public enum RunFields {
    /// Names of runs and snapshots: `[a-z0-9-]`, 1–40 characters, starting with a letter or digit.
    public static func name(_ text: String) -> Result<String, FieldProblem> {
        if let problem = nameProblem(text) { return .failure(FieldProblem("\"\(text.prefix(60))\" \(problem)")) }
        return .success(text)
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

    public static func provider(_ text: String) -> Result<ProviderCapabilities, FieldProblem> {
        if let known = ProviderCapabilities.known.first(where: { $0.name == text }) { return .success(known) }
        return .failure(
            FieldProblem("unknown provider \"\(text.prefix(40))\" (supported: \(ProviderCapabilities.known.map(\.name).joined(separator: ", ")))"))
    }

    public static func spec(_ text: String) -> Result<Spec, FieldProblem> {
        do { return .success(try Spec(parsing: text)) } catch { return .failure(FieldProblem(error.description)) }
    }

    /// A command: not blank, and small enough to travel inside the wrapper.
    public static func command(_ text: String) -> Result<String, FieldProblem> {
        if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            return .failure(FieldProblem("is empty; give a command or remove the key to keep the machine up"))
        }
        return script(text)
    }

    /// A command or bootstrap script: at most ``ManifestParser/maxScriptBytes``.
    public static func script(_ text: String) -> Result<String, FieldProblem> {
        // A shell reads a script with a NUL as a binary file and runs none of it (exit 126).
        if text.unicodeScalars.contains("\0") { return .failure(FieldProblem("contains a NUL byte, which a shell script cannot hold")) }
        guard text.utf8.count <= ManifestParser.maxScriptBytes else {
            return .failure(
                FieldProblem(
                    "is \(text.utf8.count / 1024) KiB; at most \(ManifestParser.maxScriptBytes / 1024) KiB "
                        + "(copy a long script into the machine with bootstrap and run it)"))
        }
        return .success(text)
    }

    /// `maxDuration` (never 0) and `hold` (0 allowed): milliseconds or 90s, 10m, 2h, 1d.
    public static func duration(_ text: String, allowZero: Bool) -> Result<TimeSpan, FieldProblem> {
        guard let span = TimeSpan(parsing: text) else {
            if TimeSpan(parsing: text, limit: .max) != nil {
                return .failure(FieldProblem("\"\(text)\" is longer than the maximum of \(TimeSpan.maximum)"))
            }
            return .failure(FieldProblem("\"\(text.prefix(40))\" is not a duration (use 300s, 5m or 300000)"))
        }
        if !allowZero && span == .zero { return .failure(FieldProblem("must be longer than 0 (remove the key for no deadline)")) }
        return .success(span)
    }

    public static func integer(_ value: Int, range: ClosedRange<Int>) -> Result<Int, FieldProblem> {
        range.contains(value) ? .success(value) : .failure(FieldProblem("\(value) is out of range (\(range.lowerBound)–\(range.upperBound))"))
    }

    public static func replicas(_ value: Int) -> Result<Int, FieldProblem> { integer(value, range: 0...ManifestParser.maxReplicas) }
    public static func cpus(_ value: Int) -> Result<Int, FieldProblem> { integer(value, range: 1...ManifestParser.maxCPUs) }
    public static func memory(_ text: String) -> Result<ByteSize, FieldProblem> { size(text, example: "4G", minimum: ByteSize(bytes: 512 << 20)) }
    public static func disk(_ text: String) -> Result<ByteSize, FieldProblem> { size(text, example: "64G", minimum: ByteSize(bytes: 1 << 30)) }

    static func size(_ text: String, example: String, minimum: ByteSize) -> Result<ByteSize, FieldProblem> {
        guard let size = ByteSize(parsing: text) else {
            let unitless = Int64(text) != nil
            return .failure(FieldProblem("\"\(text.prefix(40))\" is not a size\(unitless ? " (it has no unit)" : ""); use \(example), 512M or 1T"))
        }
        guard size >= minimum else { return .failure(FieldProblem("\(size) is too small; at least \(minimum)")) }
        return .success(size)
    }

    public static func user(_ text: String) -> Result<String, FieldProblem> {
        guard MachineOptions.isUsername(text) else {
            return .failure(
                FieldProblem(
                    "\"\(text.prefix(40))\" is not a Linux user name (lowercase letters, digits, _ and -, "
                        + "at most 32, not starting with a digit or -)"))
        }
        return .success(text)
    }

    /// A cloud-init document for machines made from `source`.
    public static func userData(_ text: String, source: RunSource) -> Result<String, FieldProblem> {
        if let problem = ManifestParser.userDataProblem(text) { return .failure(FieldProblem(problem)) }
        if case .spec(let spec) = source, let distro = Distro.named(spec.distro), !distro.cloudInit {
            let others = Distro.all.filter { !$0.cloudInit && $0 != distro }.map(\.name)
            let list = others.dropLast().joined(separator: ", ") + (others.count > 1 ? " and " : "") + (others.last ?? "")
            return .failure(FieldProblem("\(distro.name) has no cloud-init image in OrbStack (nor have \(list)); provision with bootstrap instead"))
        }
        return .success(text)
    }

    /// A run's `from`: a snapshot declared beside it or applied before.
    public static func snapshotReference(_ from: String, snapshots: Set<String>, runs: Set<String>) -> FieldProblem? {
        guard !snapshots.contains(from) else { return nil }
        let hint =
            runs.contains(from)
            ? " (\"\(from)\" is a Run; make a Snapshot of it first)"
            : ManifestParser.suggestion(from, among: snapshots).map { " (did you mean \"\($0)\"?)" } ?? ""
        return FieldProblem("no Snapshot named \"\(from)\"\(hint)")
    }
}
