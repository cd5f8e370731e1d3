import ArgumentParser
import Foundation
import ReplController
import ReplCore

struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "Stopped clones of a run's first instance, kept as bases for fast clones.",
        subcommands: [SnapshotCreate.self, SnapshotList.self, SnapshotDelete.self], defaultSubcommand: SnapshotList.self)
}

struct SnapshotCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Snapshot a run's first instance.",
                                                    discussion: "Example: repl snapshot create base base-snap")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The run to snapshot.") var run: String
    @Argument(help: "The snapshot's name.") var name: String

    func run() async throws {
        let context = Context(global)
        let record = try context.findRun(run)
        let yaml = "kind: Snapshot\nname: \"\(name)\"\nfrom: \"\(record.run.manifest.name)\"\n"
        let known = try context.store().knownNames()
        let set: ManifestSet
        do {
            set = try ManifestParser(knownRuns: known.runs, knownSnapshots: known.snapshots).parse(yaml, file: "arguments")
        } catch { throw CLIError.input(error.diagnostics.map(\.message).joined(separator: "\n")) }
        _ = try await Converger(context: context).apply(set, wait: false, dryRun: false)
        // Tick until the snapshot's machine exists (the source must have started its run).
        let controller = try await context.controller()
        let lease = LeaseKeeper(store: try context.store(), holder: "snapshot")
        controller.lease = lease
        defer { lease.release() }
        for _ in 0..<600 {
            if try context.store().snapshots().first(where: { $0.name == name })?.createdAt != nil { break }
            if try lease.acquire() == nil { _ = await controller.tick() }
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        if context.json { context.printJSON(["snapshot": name, "from": record.run.manifest.name]) } else { context.say("snapshot \(name) of \(record.run.manifest.name): ready") }
    }
}

struct SnapshotList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List snapshots.", discussion: "Example: repl snapshot list")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let context = Context(global)
        let store = try context.store()
        let cid = try store.controlID()
        let snaps = try store.snapshots().filter { !$0.deleted }
        if context.json {
            context.printJSON(["snapshots": snaps.map { ["name": $0.name, "from": $0.fromRun, "ready": $0.createdAt != nil,
                                                         "machine": MachineName(controlID: cid, manifestID: $0.id, instanceID: $0.instanceID).description] }])
            return
        }
        if snaps.isEmpty { print("No snapshots."); return }
        print(Table.render(["NAME", "FROM", "MACHINE", "READY"], snaps.map {
            [$0.name, $0.fromRun, MachineName(controlID: cid, manifestID: $0.id, instanceID: $0.instanceID).description, $0.createdAt == nil ? "no" : "yes"]
        }))
    }
}

struct SnapshotDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a snapshot and its machine.",
                                                    discussion: "Example: repl snapshot delete base-snap")
    @OptionGroup var global: GlobalOptions
    @Argument var name: String

    func run() async throws {
        var d = try Delete.parse(["snapshot", name])
        d.global = global
        try await d.run()
    }
}
