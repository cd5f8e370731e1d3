import Foundation
import ReplTestSupport
import Testing

@testable import ReplCore

/// Random and mutated YAML: the parser never crashes or hangs, and whatever it accepts is valid.
struct ManifestFuzzTests {
    /// 20,000 cases in the normal run; `REPL_LONG=1` runs 100,000.
    static let cases = ProcessInfo.processInfo.environment["REPL_LONG"] == "1" ? 100_000 : 20_000

    static let seeds: [String] = [
        "kind: Run\nname: hello\nspec: ubuntu:noble\ncommand: echo hello\nmaxDuration: 60s\n",
        "kind: Run\nname: a\nreplicas: 3\nhold: 30s\nenv: {A: b, C: 1}\nlabels: {x: y}\nbootstrap: |\n  apt-get update\n",
        "kind: Run\nname: base\n---\nkind: Snapshot\nname: snap\nfrom: base\n---\nkind: Run\nname: fast\nfrom: snap\ncommand: ./job.sh\n",
    ]
    static let fragments = [
        "kind", "Run", "Snapshot", "name", "spec", "from", "command", "maxDuration", "replicas", "hold", "env",
        "labels", ":", " ", "\n", "---", "- ", "{", "}", "[", "]", "\"", "'", "|", ">", "&a", "*a", "!!str", "#",
        "\t", "0", "-1", "999999999999999999999", "1h30m", "ubuntu:noble:arm64", "\u{0}", "ü", "🚀", "\\", "%", "@", "`",
    ]

    static func mutate(_ text: String, _ rng: inout SeededGenerator) -> String {
        var chars = Array(text.unicodeScalars)
        for _ in 0..<Int.random(in: 1...6, using: &rng) {
            let pos = chars.isEmpty ? 0 : Int.random(in: 0...chars.count, using: &rng)
            switch Int.random(in: 0..<4, using: &rng) {
            case 0 where !chars.isEmpty && pos < chars.count: chars.remove(at: pos)
            case 1: chars.insert(contentsOf: fragments.randomElement(using: &rng)!.unicodeScalars, at: pos)
            case 2 where !chars.isEmpty && pos < chars.count:
                chars[pos] = Unicode.Scalar(UInt8.random(in: 32...126, using: &rng))
            default:
                if chars.count > 4 {
                    let a = Int.random(in: 0..<chars.count, using: &rng), b = Int.random(in: a..<chars.count, using: &rng)
                    chars.insert(contentsOf: chars[a..<b], at: pos)
                }
            }
        }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: chars)
        return String(out)
    }

    @Test func noCrashNoHangNoInvalidAccepted() throws {
        var rng = SeededGenerator(seed: 90210)
        var accepted = 0, rejected = 0
        let parser = ManifestParser()
        let start = Date()
        for i in 0..<Self.cases {
            let text =
                i % 10 == 0
                ? (0..<Int.random(in: 1...30, using: &rng)).map { _ in Self.fragments.randomElement(using: &rng)! }.joined()
                : Self.mutate(Self.seeds[i % Self.seeds.count], &rng)
            do {
                let set = try parser.parse(text, file: "fuzz.yaml")
                accepted += 1
                // Whatever is accepted obeys the rules.
                for doc in set.documents {
                    #expect(RunFields.nameProblem(doc.manifest.name) == nil, "accepted a bad name in \(text.debugDescription)")
                    if case .run(let run) = doc.manifest {
                        #expect((0...ManifestParser.maxReplicas).contains(run.replicas))
                        #expect(run.maxDuration.map { $0 > .zero && $0 <= TimeSpan.maximum } ?? true)
                        #expect(run.command.map { !$0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty } ?? true)
                    }
                }
            } catch {
                rejected += 1
                #expect(!error.diagnostics.isEmpty)
                for d in error.diagnostics { #expect(d.location.line >= 0 && d.location.file == "fuzz.yaml") }
            }
        }
        #expect(accepted > 100 && rejected > 100, "the generator should produce both: \(accepted) accepted, \(rejected) rejected")
        #expect(Date().timeIntervalSince(start) < 120, "the parser is too slow on small inputs")
    }
}
