import ArgumentParser
import Foundation
import ReplController
import ReplCore

/// `repl prune --older-than D`: deleted runs stay as history (`run list --all`, `logs`) until
/// pruned; this removes those deleted longer ago than D, with their logs and events.
struct Prune: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove the history of runs deleted longer ago than --older-than (their rows, logs and events).",
        discussion: "Only deleted runs whose machines are gone are pruned; live and finished runs are kept.\nExample: repl prune --older-than 30d")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Prune runs deleted longer ago than this (e.g. 7d, 12h).") var olderThan: String
    @Flag(help: "Show what would be pruned and remove nothing.") var dryRun = false

    func run() async throws {
        let context = Context(global)
        guard let age = TimeSpan(parsing: olderThan) else {
            if TimeSpan(parsing: olderThan, limit: .max) != nil {
                throw CLIError.input("--older-than: \"\(olderThan)\" is longer than the maximum of \(TimeSpan.maximum)")
            }
            throw CLIError.input("--older-than: \"\(olderThan)\" is not a duration (use 7d, 12h or 90m)")
        }
        let store = try context.store()
        let cutoff = Date().addingTimeInterval(-age.seconds)
        let pruned: [DesiredRun]
        if dryRun {
            let scratch = try store.scratchCopy()
            pruned = try scratch.prune(deletedBefore: cutoff)
        } else {
            pruned = try store.prune(deletedBefore: cutoff)
            let logs = context.stateDirectory.appendingPathComponent("logs")
            for run in pruned {
                for instance in run.instances {
                    for bootstrap in [false, true] {
                        try? FileManager.default.removeItem(
                            at: Controller.logFile(logs, run: run.manifest.name, instance: instance.id, bootstrap: bootstrap))
                    }
                }
            }
        }
        if context.json {
            context.printJSON(["dryRun": dryRun, "pruned": pruned.map(\.manifest.name)])
        } else if pruned.isEmpty {
            // Say why: nothing deleted, or deleted runs too young or whose machines are not gone yet.
            let kept = try store.runs().filter(\.deleted).count
            context.say(
                kept == 0
                    ? "nothing to prune: no run is deleted"
                    : "nothing to prune: \(kept) deleted run\(kept == 1 ? " is" : "s are") kept, deleted less than \(age) ago "
                        + "or with machines not gone yet (a controller removes them: `repl watch` or the next sweep)")
        } else {
            for run in pruned {
                context.say(
                    "\(dryRun ? "would prune" : "pruned") \(run.manifest.name) (#\(Base36.encode(run.id)), \(run.instances.count) instance\(run.instances.count == 1 ? "" : "s"))"
                )
            }
        }
    }
}
