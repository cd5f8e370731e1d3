import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import OrbStack
@testable import ReplController

/// A list is trusted only as far as it deserves (#16): a running machine missing from one list
/// is confirmed gone (`orbctl info NAME`) before its instance is failed.
@Suite(.serialized) struct ListTrustTests {
    /// A controller whose orbctl answers `list` with `answer` the next `times` times.
    func lyingController(_ w: World, answer: String, times: Int = 1) throws -> Controller {
        let fake = w.root.appendingPathComponent("bin/lying-orbctl").path
        let count = w.root.appendingPathComponent("lies").path
        try """
        #!/bin/sh
        if [ "$1" = list ]; then
          n=$(cat "\(count)" 2>/dev/null || echo 0)
          if [ "$n" -lt \(times) ]; then echo $((n + 1)) > "\(count)"; printf '%s\\n' '\(answer)'; exit 0; fi
        fi
        exec "\(w.orbctl)" "$@"
        """.write(toFile: fake, atomically: true, encoding: .utf8)
        chmod(fake, 0o755)
        var client = OrbctlClient(command: OrbctlCommand(executable: fake), runner: SystemProcessRunner(environment: w.environment))
        client.deleteGrace = 0.01
        return Controller(store: w.store, provider: OrbStackProvider(client: client), settings: w.controller.settings)
    }

    @Test(.machineCommands) func aTransientlyEmptyListFailsNothingAndDeletesNothing() async throws {
        let w = try World()
        try w.apply("kind: Run\nname: web\ncommand: sleep 600\nreplicas: 3\n")
        try await w.tick { try w.wanted(w.run("web")).allSatisfy { $0.phase == .running } }
        let before = Set(try w.machines().map(\.name))
        // OrbStack restarting: one list answers `[]`.
        let lying = try lyingController(w, answer: "[]")
        let report = await lying.tick()
        #expect(report.observationError != nil, "an empty list while 3 machines run must not be trusted")
        #expect(report.outcomes.isEmpty)
        #expect(try w.wanted(w.run("web")).allSatisfy { $0.phase == .running })
        // The next (true) ticks: nothing is failed, nothing deleted.
        for _ in 0..<3 { _ = await lying.tick() }
        #expect(try w.wanted(w.run("web")).allSatisfy { $0.phase == .running })
        #expect(Set(try w.machines().map(\.name)) == before)
    }

    @Test(.machineCommands) func aMachineReallyGoneIsConfirmedAndItsInstanceFailed() async throws {
        let w = try World(channel: false)
        try w.apply("kind: Run\nname: web\ncommand: sleep 600\nreplicas: 2\n")
        try await w.tick { try w.wanted(w.run("web")).allSatisfy { $0.phase == .running } }
        let victim = try w.machines().map(\.name).sorted()[0]
        try await w.sim(["delete", "-f", victim])
        try await w.tick { try w.wanted(w.run("web")).contains { $0.phase == .failed } }
        let run = try w.run("web")
        #expect(run.instances.filter { $0.phase == .failed }.count == 1)
        #expect(run.instances.first { $0.phase == .failed }?.reason?.contains("disappeared") == true)
    }
}
