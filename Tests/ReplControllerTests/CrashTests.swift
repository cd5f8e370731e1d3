import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import OrbStack
@testable import ReplController

/// The controller process killed with SIGKILL at the worst moments; the next run converges.
@Suite(.serialized) struct CrashTests {

    @Test(
        .machineCommands,
        arguments: ["after-intent:create", "after-call:create"])
    func killedAroundACreate(_ point: String) async throws {
        let w = try World()
        let file = w.root.appendingPathComponent("r.yaml")
        try "kind: Run\nname: r\ncommand: sleep 600\nreplicas: 2\n".write(to: file, atomically: true, encoding: .utf8)
        let crashed = try await w.repl(["apply", "-f", file.path], crash: point)
        #expect(crashed.status == 137, "\(crashed.stderrText)")
        #expect(try !w.store.openIntents().isEmpty)
        let again = try await w.repl(["apply", "-f", file.path])
        #expect(again.status == 0, "\(again.stderrText)")
        let machines = try w.machines()
        #expect(machines.count == 2)  // none missing
        #expect(try w.store.openIntents().isEmpty)
        let run = try w.run("r")
        #expect(run.instances.count == 2 && run.instances.allSatisfy { $0.phase >= .bootstrapping })
        // No duplicate (#21: a count of unique names cannot fail once there are two): the
        // machines are the instances', and each was created once, the crashed call included.
        let cid = try w.store.controlID()
        #expect(
            Set(machines.map(\.name)) == Set(run.instances.map { MachineName(controlID: cid, manifestID: run.id, instanceID: $0.id).description }))
        let log = (try? String(contentsOf: w.root.appendingPathComponent("sim/calls.jsonl"), encoding: .utf8)) ?? ""
        let creates = log.split(separator: "\n").compactMap { line -> String? in
            let argv = (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["argv"] as? [String] ?? []
            return argv.first == "create" && argv.count > 2 ? argv[2] : nil
        }
        #expect(creates.count == 2 && Set(creates).count == 2, "\(creates)")
        // Nothing is left to clean up: every machine is owned.
        let sweep = try await w.repl(["orphans", "sweep", "--orphan-grace", "0s", "--json"])
        #expect(sweep.status == 0)
        await #expect(try w.machines().count == 2)
    }

    @Test(
        .machineCommands,
        arguments: ["after-intent:delete", "after-call:delete"])
    func killedInTheMiddleOfADelete(_ point: String) async throws {
        let w = try World()
        let file = w.root.appendingPathComponent("r.yaml")
        try "kind: Run\nname: r\ncommand: sleep 600\n".write(to: file, atomically: true, encoding: .utf8)
        await #expect(try w.repl(["apply", "-f", file.path]).status == 0)
        await #expect(try w.machines().count == 1)
        let crashed = try await w.repl(["delete", "run", "r"], crash: point)
        #expect(crashed.status == 137)
        let sweep = try await w.repl(["orphans", "sweep"])
        #expect(sweep.status == 0, "\(sweep.stderrText)")
        await #expect(try w.machines().isEmpty)  // no leaked machine
        #expect(try w.store.openIntents().isEmpty)
        #expect(try w.run("r").phase == .cancelled)
    }
}
