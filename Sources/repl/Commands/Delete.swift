import ArgumentParser
import Foundation
import ReplCore

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove runs or snapshots from desired state; the controller deletes their machines.",
        discussion: "Example: repl delete -f examples/hello.yaml   ·   repl delete run hello   ·   repl delete snapshot base-snap")

    @OptionGroup var global: GlobalOptions
    @Option(name: .shortAndLong, help: "Delete what these manifests declare.") var file: [String] = []
    @Argument(help: "`run NAME` or `snapshot NAME`.") var target: [String] = []

    func validate() throws {
        if file.isEmpty && target.count != 2 { throw ValidationError("use -f PATH, or `run NAME`, or `snapshot NAME`") }
        if target.count == 2 && !["run", "snapshot"].contains(target[0]) { throw ValidationError("say `run NAME` or `snapshot NAME`") }
    }

    func run() async throws {
        let context = Context(global)
        let store = try context.store()
        var runs: [String] = [], snapshots: [String] = []
        if !file.isEmpty {
            let sources = try ManifestFiles.load(file)
            let set = try ManifestParser(knownRuns: Set(try store.runs().map(\.run.manifest.name)), knownSnapshots: Set(try store.snapshots().map(\.name))).parse(sources)
            runs = set.runs.map(\.name)
            snapshots = set.snapshots.map(\.name)
        } else if target[0] == "run" {
            runs = [target[1]]
        } else {
            snapshots = [target[1]]
        }
        var done: [String] = []
        for name in runs {
            let record = try context.findRun(name)
            try store.cancel(run: record.run.id, delete: true)
            done.append("run \(record.run.manifest.name)")
        }
        for name in snapshots {
            guard try store.deleteSnapshot(named: name) else { throw CLIError.input("no snapshot named \"\(name)\" (see `repl snapshot list`)") }
            done.append("snapshot \(name)")
        }
        if try store.acquireLease(holder: "delete") == nil {
            defer { store.releaseLease() }
            let controller = try await context.controller()
            let report = await controller.tick()
            if let e = report.observationError { context.warn("recorded; machines will be deleted by the next tick (\(e))") }
        }
        if context.json { context.printJSON(["deleted": done]) } else { for d in done { context.say("\(d): deleted") } }
    }
}
