import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import OrbStack

/// Every command the README shows exists (#18): each `repl SUB [SUB]` it names answers
/// `--help` with exit 0, and every flag it shows for that command is one the command knows.
@Suite struct ReadmeCommandTests {
    @Test func everyCommandTheReadmeShowsParses() async throws {
        let readme = try String(contentsOf: CLITests.root.appendingPathComponent("README.md"), encoding: .utf8)
        let groups: Set<String> = ["run", "snapshot", "orphans", "delete"]
        var shown: [String: Set<String>] = [:]  // command path → flags shown with it
        for match in readme.matches(
            of: /(?:`|\$ |^)repl ((?:--orbctl sim |--state-dir \S+ )?)([a-z][a-z-]*)(?: ([a-z]+))?([^`\n]*)/.anchorsMatchLineEndings())
        {
            var path = String(match.output.2)
            if let sub = match.output.3, groups.contains(path), !["run", "snapshot"].contains(String(sub)) || path != "delete" {
                path += " " + sub
            }
            let flags = String(match.output.4).matches(of: /(?:^|\s|\[)(--[a-z][a-z-]*)/).map { String($0.output.1) }
            shown[path, default: []].formUnion(flags)
        }
        #expect(shown.count >= 20, "\(shown.keys.sorted())")
        let home = CLITests.Home()
        for (path, flags) in shown.sorted(by: { $0.key < $1.key }) {
            var words = path.split(separator: " ").map(String.init)
            // `delete run NAME` and `run NAME …` (the bare `run`) take positional words, not subcommands.
            if words.first == "delete" || (words.first == "run" && !["list", "status", "cancel"].contains(words.last ?? "")) { words = [words[0]] }
            let help = try await CLITests.run(home, words + ["--help"])
            #expect(help.status == 0, "repl \(words.joined(separator: " ")) --help: \(help.stderr)")
            // Its own help, not the root's (an unknown word falls back to it).
            #expect(help.stdout.contains("USAGE: repl \(words.joined(separator: " "))"), "the README shows `repl \(path)`, which is no command")
            for flag in flags
            where !["--help", "--orbctl", "--state-dir", "--json", "--quiet", "--version", "--generate-completion-script"].contains(flag) {
                #expect(
                    help.stdout.contains(flag),
                    "the README shows `repl \(path) … \(flag)`, which `repl \(words.joined(separator: " ")) --help` does not list")
            }
        }
    }
}

/// The README's quick start shows what a real run prints (#18): its transcript of
/// `apply -f examples/hello.yaml --wait` is what the binary prints here, but for the control
/// id and the host's architecture.
@Suite(.serialized) struct ReadmeTranscriptTests {
    static func normalized(_ text: some StringProtocol) -> String {
        String(text).replacing(/repl-[0-9a-z]{6}-/, with: "repl-CID-").replacing(/:(amd64|arm64)\)/, with: ":ARCH)")
    }

    @Test(.machineCommands) func theQuickStartPrintsWhatTheReadmeShows() async throws {
        let readme = try String(contentsOf: CLITests.root.appendingPathComponent("README.md"), encoding: .utf8)
        let prompt = "$ repl --orbctl sim apply -f examples/hello.yaml --wait\n"
        let start = try #require(readme.range(of: prompt), "the README shows no quick-start transcript")
        let shown = readme[start.upperBound...].components(separatedBy: "\n\n")[0] + "\n"
        // Standard output is the command's own output, standard error the progress; how the two
        // interleave on a terminal depends on timing, so each is checked in its own order.
        let r = try await CLITests.run(CLITests.Home(), ["--orbctl", "sim", "apply", "-f", "examples/hello.yaml", "--wait"])
        #expect(r.status == 0 && r.stdout == "hello\n", "\(r.stdout)")  // the first screen's promise, too
        var progress = Self.normalized(shown).split(separator: "\n").map(String.init)
        let output = try #require(progress.firstIndex(of: "hello"), "the README's transcript shows no output")
        progress.remove(at: output)
        #expect(
            Self.normalized(r.stderr).split(separator: "\n").map(String.init) == progress,
            "printed on standard error:\n\(r.stderr)\nthe README shows:\n\(shown)")
        #expect(readme.contains("swift run repl --orbctl sim apply -f examples/hello.yaml --wait   # try it: prints \"hello\", exits 0"))
    }
}

/// One error format and a version (#18).
@Suite(.serialized) struct OutputFormatTests {
    /// Escape sequences in orbctl's stderr (or a machine's text) are shown, never interpreted.
    @Test(.machineCommands) func controlCharactersFromOrbctlAreMadeVisible() async throws {
        let home = CLITests.Home()
        let sim = home.dir.appendingPathComponent("state/sim/bin/orbctl").path
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "doctor"]).status >= 0)  // sets the emulator up
        var env = home.environment
        env["ORBSIM_HOME"] = home.dir.appendingPathComponent("state/sim").path
        let fail = try await CLITests.exec(
            sim, ["admin", "fail", "create", "--times", "9", "--message", "boom \u{1B}]0;pwned\u{07}\u{1B}[2J end"], env: env)
        #expect(fail.status == 0, "\(fail.stderr)")
        let file = home.dir.appendingPathComponent("x.yaml")
        try "kind: Run\nname: x\ncommand: \"true\"\n".write(to: file, atomically: true, encoding: .utf8)
        let out = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", file.path, "--timeout", "3s"])
        #expect(out.status == 1)
        #expect(out.stderr.contains("boom \\x1B]0;pwned\\x07\\x1B[2J end"), "\(out.stderr)")
        #expect(!out.stderr.contains("\u{1B}") && !out.stdout.contains("\u{1B}") && !out.stderr.contains("\u{07}"))
    }

    @Test func versionAndErrorsHaveOneForm() async throws {
        let home = CLITests.Home()
        let version = try await CLITests.run(home, ["--version"])
        #expect(version.status == 0 && version.stdout.wholeMatch(of: /[0-9]+\.[0-9]+\.[0-9]+\n/) != nil, "\(version.stdout)")
        for args in [["--bogus"], ["run", "list", "--nope"], ["logs"]] {
            let out = try await CLITests.run(home, args)
            #expect(out.status == 2, "\(args)")
            #expect(out.stderr.hasPrefix("repl: ") && !out.stderr.contains("Error:"), "\(args): \(out.stderr)")
            #expect(out.stdout.isEmpty)
        }
    }
}
