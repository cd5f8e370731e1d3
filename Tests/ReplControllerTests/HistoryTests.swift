import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import ReplController

/// History off the hot path: a tick reads the runs that can still need something, never the
/// thousands that finished long ago; those stay queryable and come back when changed.
@Suite(.serialized)
struct HistoryTests {
    static let manifests = """
        kind: Run
        name: done
        command: echo finished-output
        ---
        kind: Run
        name: held
        command: "true"
        hold: 10h
        """

    func settledWorld() async throws -> World {
        let w = try World()
        try w.apply(Self.manifests)
        try await w.tick(until: {
            let done = try w.run("done"), held = try w.run("held")
            let machines = try w.machines().map(\.name)
            return done.phase == .succeeded && held.phase == .succeeded && machines.count == 1
                && done.instances.allSatisfy(\.logsCollected)
        })
        return w
    }

    @Test(.machineCommands)
    func aFinishedRunLeavesTheTickOnceSettledAndStaysQueryable() async throws {
        let w = try await settledWorld()
        // Just finished: still live (a settle time guards a list that left a machine out).
        _ = await w.controller.tick()
        #expect(try w.store.desiredState().runs.map(\.manifest.name).sorted() == ["done", "held"])

        // An hour later: the finished run, its machine gone and its log collected, is archived;
        // the held one keeps its machine and stays live.
        let later = Date().addingTimeInterval(2 * 3600)
        let report = await w.controller.tick(now: later)
        #expect(report.observationError == nil)
        #expect(try w.store.desiredState().runs.map(\.manifest.name) == ["held"])
        #expect(try w.machines().count == 1)
        // Still queryable, with its outcome and its log.
        let done = try w.run("done")
        #expect(done.phase == .succeeded && done.instances.first?.exitCode == 0)
        let log = Controller.logFile(w.controller.settings.logsDirectory, run: "done", instance: try #require(done.instances.first).id)
        #expect(try String(contentsOf: log, encoding: .utf8).contains("finished-output"))
        // And a further tick plans nothing for it.
        let again = await w.controller.tick(now: later)
        #expect(again.plan?.actions.isEmpty == true, "\(again.observationError ?? "\(again.plan?.actions ?? [])")")
    }

    @Test(.machineCommands)
    func anArchivedRunComesBackWhenItsManifestChanges() async throws {
        let w = try await settledWorld()
        _ = await w.controller.tick(now: Date().addingTimeInterval(2 * 3600))
        #expect(try !w.store.desiredState().runs.contains { $0.manifest.name == "done" })
        try w.apply("kind: Run\nname: done\ncommand: echo finished-output\nreplicas: 2\n")
        #expect(try w.store.desiredState().runs.contains { $0.manifest.name == "done" })
        try await w.tick(until: {
            let done = try w.run("done")
            return done.instances.count == 2 && done.phase == .succeeded
        })
    }

    /// `repl prune --older-than D` removes the history of deleted runs whose machines are gone
    /// (rows, logs, events), and nothing else (#18).
    @Test(.machineCommands) func pruneRemovesOnlyDeletedSettledRuns() async throws {
        let w = try await settledWorld()
        let done = try w.run("done")
        let log = Controller.logFile(w.controller.settings.logsDirectory, run: "done", instance: try #require(done.instances.first).id)
        #expect(FileManager.default.fileExists(atPath: log.path))
        try w.store.cancel(run: done.id, delete: true)
        func repl(_ args: [String]) async throws -> ProcessResult {
            try await SystemProcessRunner.run(Paths.repl, args, input: nil, timeout: 60, environment: w.environment, limit: 1 << 20)
        }
        // A deleted run whose machine is still there (held, its command running) is kept, and
        // prune says why; one that ended with its log collected (its machine deleted right
        // after) goes, with no controller needed to archive it first (found by attacking).
        let held = try w.run("held")
        try w.store.cancel(run: held.id, delete: true)
        let preview = try await repl(["prune", "--older-than", "0s", "--dry-run"])
        #expect(!preview.stdoutText.contains("held"), "\(preview.stdoutText)")
        #expect(preview.stdoutText.contains("would prune done"), "\(preview.stdoutText)\(preview.stderrText)")
        #expect(try w.store.runs().contains { $0.run.manifest.name == "done" })
        // Deleted less than a day ago: kept by --older-than 1d, saying so.
        #expect(
            try await repl(["prune", "--older-than", "1d"]).stdoutText.contains("nothing to prune: 2 deleted runs are kept, deleted less than 1d ago")
        )
        let pruned = try await repl(["prune", "--older-than", "0s"])
        #expect(pruned.status == 0 && pruned.stdoutText.contains("pruned done"), "\(pruned.stdoutText)\(pruned.stderrText)")
        #expect(try w.store.runs().map(\.run.manifest.name) == ["held"])
        #expect(!FileManager.default.fileExists(atPath: log.path))
        // The name is free again.
        try w.apply("kind: Run\nname: done\ncommand: echo again\n")
        #expect(try w.run("done").id != done.id)
    }

    @Test func aRunChangedAfterTheTickReadItIsNotArchived() throws {
        let w = try World()
        try w.apply("kind: Run\nname: r\ncommand: x\nreplicas: 0\n")
        let read = try #require(try w.store.desiredState().runs.first)
        try w.apply("kind: Run\nname: r\ncommand: x\nreplicas: 3\n")
        #expect(try w.store.archive([read], controlID: try w.store.controlID()) == 0)
        #expect(try w.store.desiredState().runs.count == 1)
        let fresh = try #require(try w.store.desiredState().runs.first)
        #expect(try w.store.archive([fresh], controlID: try w.store.controlID()) == 1)
        #expect(try w.store.desiredState().runs.isEmpty)
        #expect(try w.store.runs().count == 1)
    }
}
