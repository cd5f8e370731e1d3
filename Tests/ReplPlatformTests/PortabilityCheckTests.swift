import Foundation
import ReplPlatform
import Testing

/// `scaffold/scripts/check-portability.sh`, which `.ci/run` runs: it catches each kind of code that
/// broke, or would break, the build or the behaviour on macOS, and passes this repository.
@Suite struct PortabilityCheckTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let script = root.appendingPathComponent("scaffold/scripts/check-portability.sh").path

    func check(_ root: URL) async throws -> ProcessResult {
        try await SystemProcessRunner.run(
            "/bin/bash", [Self.script, root.path], input: nil, timeout: 120,
            environment: ["PATH": "/usr/bin:/bin"], limit: 1 << 20)
    }

    /// A tree with one file of planted violations, and the same calls where they are allowed.
    func plantedTree() throws -> URL {
        let tree = FileManager.default.temporaryDirectory.appendingPathComponent("portability-\(UUID().uuidString)")
        // The planted files live beside this test as .txt, so the check of this repository skips them.
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
        let files: [String: String] = [
            "Sources/Tool/Bad.swift": try String(contentsOf: fixtures.appendingPathComponent("Bad.swift.txt"), encoding: .utf8),
            "Sources/ReplPlatform/LinuxOnly.swift": try String(contentsOf: fixtures.appendingPathComponent("LinuxOnly.swift.txt"), encoding: .utf8),
            "Sources/ReplCore/DateFormats.swift": "let formatter = DateFormatter()\n",  // portability: allowed, where it belongs
        ]
        for (path, text) in files {
            let url = tree.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        return tree
    }

    @Test func eachPlantedViolationIsNamedByFileAndLine() async throws {
        let tree = try plantedTree()
        defer { try? FileManager.default.removeItem(at: tree) }
        let r = try await check(tree)
        #expect(r.status == 1)
        let lines = r.stdoutText.split(separator: "\n").map(String.init)
        let bad = "Sources/Tool/Bad.swift"
        #expect(lines.count == 8, "\(r.stdoutText)")
        for (line, rule) in [
            (2, "Linux-only"), (3, "default-initialised"), (4, "Linux-only"), (5, "Linux-only"), (6, "Linux-only"),
            (7, "date formatter"), (8, "date formatter"), (9, "CommandLine.arguments[0] as a path"),  // portability: allowed, names a rule
        ] {
            #expect(lines.contains { $0.hasPrefix("\(bad):\(line): ") && $0.contains(rule) }, "line \(line): \(rule)\n\(r.stdoutText)")
        }
        #expect(lines.allSatisfy { $0.hasPrefix(bad + ":") })
        #expect(r.stderrText.contains("8 problem(s)"))
    }

    @Test func thisRepositoryIsClean() async throws {
        let r = try await check(Self.root)
        #expect(r.status == 0, "\(r.stdoutText)")
    }
}
