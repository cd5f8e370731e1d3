import ArgumentParser
import Foundation
import ReplController
import ReplCore
import ReplStore

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove runs or snapshots from desired state; the controller deletes their machines.",
        discussion:
            "Example: repl delete -f examples/hello.yaml   ·   repl delete run hello   ·   repl delete -l team=ml   ·   repl delete snapshot base-snap"
    )

    @OptionGroup var global: GlobalOptions
    @Option(name: .shortAndLong, help: "Delete what these manifests declare.") var file: [String] = []
    @Argument(help: "`run NAME` (or `run #ID`) or `snapshot NAME`: exact names, never a prefix.") var target: [String] = []
    @Option(
        name: [.customShort("l"), .customLong("selector")], help: "Delete every run whose labels match (key=value[,key2=value2], key!=value, key).")
    var selector: String?

    func validate() throws {
        if selector != nil && (!file.isEmpty || !target.isEmpty) { throw ValidationError("use -l alone, not with -f or a name") }
        if selector == nil && file.isEmpty && target.count != 2 {
            throw ValidationError("use -f PATH, -l SELECTOR, or `run NAME`, or `snapshot NAME`")
        }
        if target.count == 2 && !["run", "snapshot"].contains(target[0]) { throw ValidationError("say `run NAME` or `snapshot NAME`") }
    }

    func run() async throws {
        let context = Context(global)
        let store = try context.store()
        var runs: [String] = [], snapshots: [String] = []
        if let selector {
            // Labels are matched exactly; a selector that matches nothing deletes nothing.
            runs = try context.runs(matching: selector).map(\.run.manifest.name)
            if runs.isEmpty { throw CLIError.input("no run's labels match \(selector) (see `repl run list -o wide`); nothing was deleted") }
        } else if !file.isEmpty {
            let sources = try ManifestFiles.load(file)
            let set = try ManifestParser(
                knownRuns: Set(try store.runs().map(\.run.manifest.name)), knownSnapshots: Set(try store.snapshots().map(\.name))
            ).parse(sources)
            runs = set.runs.map(\.name)
            snapshots = set.snapshots.map(\.name)
        } else if target[0] == "run" {
            runs = [target[1]]
        } else {
            snapshots = [target[1]]
        }
        // Exactly the names given, all of them found before anything is deleted: a name that
        // matches nothing deletes nothing at all, never a look-alike.
        var records: [RunRecord] = [], missing: [String] = []
        for name in runs {
            do { records.append(try context.exactRun(name)) } catch { missing.append("run \(name)") }
        }
        let knownSnapshots = Set(try store.snapshots().filter { !$0.deleted }.map(\.name))
        missing += snapshots.filter { !knownSnapshots.contains($0) }.map { "snapshot \($0)" }
        if !missing.isEmpty {
            throw CLIError.input(
                "nothing was deleted: no \(missing.joined(separator: ", no ")) (see `repl run list`, `repl snapshot list`; give full names, or #ID for a run)"
            )
        }
        // A snapshot a live run still needs (an instance not yet cloned from it) would leave that
        // run waiting for ever (found by attacking): refused unless the run goes too.
        let leaving = Set(records.map(\.run.manifest.name))
        for record in try store.runs() where !leaving.contains(record.run.manifest.name) && !record.run.cancelled {
            guard case .snapshot(let from) = record.run.manifest.source, snapshots.contains(from),
                record.run.instances.contains(where: { record.run.wants($0) && $0.phase < .bootstrapping })
            else { continue }
            throw CLIError.input(
                "nothing was deleted: run \(record.run.manifest.name) still clones snapshot \(from) (an instance is not made yet); delete the run first, or both together"
            )
        }
        try await context.requireUsableAWS()
        var done: [String] = []
        for record in records {
            try store.cancel(run: record.run.id, delete: true)
            done.append("run \(record.run.manifest.name)")
        }
        for name in snapshots {
            guard try store.deleteSnapshot(named: name) else { throw CLIError.input("no snapshot named \"\(name)\" (see `repl snapshot list`)") }
            done.append("snapshot \(name)")
        }
        // One tick now when no other process acts; else the process that does deletes them.
        if let e = try await Manager(controller: try await context.controller(), holder: "delete").once().report?.observationError {
            context.warn("recorded; machines will be deleted by the next tick (\(e))")
        }
        if context.json { context.printJSON(["deleted": done]) } else { for d in done { context.say("\(d): deleted") } }
    }
}
