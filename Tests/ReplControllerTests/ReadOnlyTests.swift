import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import OrbStack
@testable import ReplController

/// Read-only means read-only (#16): a dry run (`plan`, `orphans list`, `doctor`,
/// `sweep --dry-run`) observes and plans, and writes nothing, starts nothing, probes nothing.
@Suite(.serialized) struct ReadOnlyTests {
    struct StoreView: Equatable {
        var desired: DesiredState
        var probes: [InstanceID: Date]
        var intents: [String]
        var events: Int
    }

    func view(_ store: Store) throws -> StoreView {
        StoreView(
            desired: try store.desiredState(), probes: try store.lastProbes(),
            intents: try store.openIntents().map { "\($0.id) \($0.machine) \($0.action)" }, events: try store.events(limit: 100_000).count)
    }

    @Test(.machineCommands) func aDryRunWritesNothingAndCallsOnlyList() async throws {
        let w = try World(channel: false)  // statuses would be probed with `orbctl run`
        try w.apply("kind: Run\nname: web\ncommand: sleep 600\nreplicas: 2\n---\nkind: Run\nname: next\ncommand: sleep 600\n")
        try await w.tick {
            try w.wanted(w.run("web")).allSatisfy { $0.phase == .running } && w.wanted(w.run("next")).allSatisfy { $0.phase == .running }
        }
        // Another process is acting on `next`'s machine right now (its intent is open, its pid alive).
        let next = MachineName(controlID: try w.store.controlID(), manifestID: try w.run("next").id, instanceID: w.wanted(try w.run("next"))[0].id)
            .description
        let actor = try await BackgroundProcess.start("/bin/sleep", ["60"], environment: [:], outputPath: "/dev/null")
        defer { actor.signal(SIGKILL) }
        _ = try w.store.openIntent(machine: next, action: "delete \(next) (retired)", pid: actor.pid)
        try w.store.cancel(run: try w.run("next").id)
        let before = try view(w.store)
        try await w.sim(["admin", "calls", "--reset"])
        var settings = w.controller.settings
        settings.dryRun = true
        let dry = Controller(store: w.store, provider: w.controller.provider, settings: settings)
        let report = await dry.tick()
        #expect(report.observationError == nil)
        #expect(try view(w.store) == before, "a dry run changed the store")
        let calls = try await JSONSerialization.jsonObject(with: w.sim(["admin", "calls", "--json"]).stdout) as? [String: Any]
        #expect(calls?["verbs"] as? [String: Int] == ["list": 1])
        // The machine with a live actor's intent is planning input: nothing is planned on it.
        #expect(report.plan?.actions.contains { $0.machine?.description == next } == false, "\(report.plan?.actions ?? [])")
        #expect(report.plan?.waiting[next] != nil)
    }
}
