import ArgumentParser
import Foundation
import ReplStore

/// Shell completion of run names (`repl logs he<TAB>`): the runs of the state directory the
/// command line names (`--state-dir`), else `$REPL_HOME`, else `~/.repl`. It only reads.
enum RunNameCompletion {
    static let kind = CompletionKind.custom { words, _, prefix in names(words: words, prefix: prefix) }

    static func names(words: [String], prefix: String) -> [String] {
        let env = ProcessInfo.processInfo.environment
        var directory = env["REPL_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() as NSString).appendingPathComponent(".repl")
        if let i = words.firstIndex(of: "--state-dir"), words.indices.contains(i + 1) { directory = words[i + 1] }
        for w in words where w.hasPrefix("--state-dir=") { directory = String(w.dropFirst("--state-dir=".count)) }
        // Never make a store to complete a word.
        guard FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent("state.db")),
            let store = try? Store(directory: URL(fileURLWithPath: directory)),
            let runs = try? store.runs(includeDeleted: false)
        else { return [] }
        return runs.map(\.run.manifest.name).filter { $0.hasPrefix(prefix) }.sorted()
    }
}
