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
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Snapshot a run's first instance.",
        discussion: "Example: repl snapshot create base base-snap")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The run to snapshot: its exact name, or #ID.") var run: String
    @Argument(help: "The snapshot's name.") var name: String
    @Option(help: "How long to wait for the snapshot to be taken (default 10m).") var timeout: String = "10m"

    func timeoutSeconds() throws -> TimeInterval {
        guard let span = TimeSpan(parsing: timeout) else {
            throw CLIError.input("--timeout: \"\(timeout)\" is not a duration (use 90s, 10m or 600000)")
        }
        return span.seconds
    }

    func run() async throws {
        let context = Context(global)
        let limit = try timeoutSeconds()
        let record = try context.exactRun(run)
        let yaml = "kind: Snapshot\nname: \"\(name)\"\nfrom: \"\(record.run.manifest.name)\"\n"
        let known = try context.store().knownNames()
        let set: ManifestSet
        do {
            set = try ManifestParser(knownRuns: known.runs, knownSnapshots: known.snapshots).parse(yaml, file: "arguments")
        } catch { throw CLIError.input(error.diagnostics.map(\.message).joined(separator: "\n")) }
        let store = try context.store()
        let created = try store.apply(set).contains(.created(name))
        context.progress("snapshot \(name) of \(record.run.manifest.name): \(created ? "recorded" : "already recorded"), waiting for it to be taken")
        // Tick until the snapshot's machine exists (the source must have started its run), and
        // say so honestly when it cannot be taken or is not taken in time.
        let manager = Manager(controller: try await context.controller(), holder: "snapshot")
        defer { manager.release() }
        let deadline = Date().addingTimeInterval(limit)
        var why = "not taken yet"
        try await manager.run(idle: 0.2) { turn in
            guard let snap = try store.snapshots().first(where: { $0.name == name }) else {
                throw CLIError.failure("snapshot \(name) was deleted while it was being taken")
            }
            if snap.createdAt != nil { return false }
            let machine = MachineName(controlID: try store.controlID(), manifestID: snap.id, instanceID: snap.instanceID).description
            if let waiting = turn.report?.plan?.waiting[machine] {
                why = waiting
                if waiting.hasPrefix(Planner.cannotBeTaken) {
                    // What this command recorded goes again: nothing half-done is left behind.
                    if created { try store.deleteSnapshot(named: name) }
                    throw CLIError.failure(
                        "snapshot \(name) \(waiting). \(created ? "Nothing was kept" : "It stays recorded; `repl snapshot delete \(name)` removes it")"
                    )
                }
            } else if case .heldBy(let holder) = turn {
                why = "\(holder.holder) (pid \(holder.pid)) holds the controller lease and takes it"
            }
            if Date() > deadline {
                throw CLIError.failure(
                    "snapshot \(name) is not ready after \(timeout): \(why). It stays recorded: `repl watch` or the next sweep goes on with it")
            }
            return true
        }
        if context.json {
            context.printJSON(["snapshot": name, "from": record.run.manifest.name])
        } else {
            context.say("snapshot \(name) of \(record.run.manifest.name): ready")
        }
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
            context.printJSON([
                "snapshots": snaps.map {
                    [
                        "name": $0.name, "from": $0.fromRun, "ready": $0.createdAt != nil,
                        "machine": MachineName(controlID: cid, manifestID: $0.id, instanceID: $0.instanceID).description,
                    ]
                }
            ])
            return
        }
        if snaps.isEmpty { print("No snapshots."); return }
        print(
            Table.render(
                ["NAME", "FROM", "MACHINE", "READY"],
                snaps.map {
                    [
                        $0.name, $0.fromRun, MachineName(controlID: cid, manifestID: $0.id, instanceID: $0.instanceID).description,
                        $0.createdAt == nil ? "no" : "yes",
                    ]
                }))
    }
}

struct SnapshotDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete a snapshot and its machine.",
        discussion: "Example: repl snapshot delete base-snap")
    @OptionGroup var global: GlobalOptions
    @Argument var name: String

    func run() async throws {
        var d = try Delete.parse(["snapshot", name])
        d.global = global
        try await d.run()
    }
}
