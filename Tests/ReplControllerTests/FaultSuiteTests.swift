import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import OrbStack
@testable import ReplController

/// The reliability scenarios (docs/RELIABILITY.md): each asserts the final machines and store.
/// `REPL_LONG=1` runs the long variants; CI runs them reduced.
@Suite(.serialized) struct FaultSuiteTests {
    static let long = ProcessInfo.processInfo.environment["REPL_LONG"] == "1"

    /// Stops and deletes in the emulator's call log, by machine name.
    func destructiveCalls(_ w: World) throws -> [String] {
        let text = (try? String(contentsOf: w.root.appendingPathComponent("sim/calls.jsonl"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").flatMap { line -> [String] in
            let argv = (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["argv"] as? [String] ?? []
            guard let verb = argv.first, verb == "stop" || verb == "delete" else { return [] }
            return argv.dropFirst().filter { !$0.hasPrefix("-") }
        }
    }

    /// `stop` or `delete` calls that name no machine (a bare `orbctl stop` stops all of OrbStack).
    func bareDestructiveCalls(_ w: World) throws -> Int {
        let text = (try? String(contentsOf: w.root.appendingPathComponent("sim/calls.jsonl"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { line in
            let argv = (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["argv"] as? [String] ?? []
            guard let verb = argv.first, verb == "stop" || verb == "delete" else { return false }
            return argv.dropFirst().allSatisfy { $0.hasPrefix("-") }
        }.count
    }

    @Test(
        .machineCommands,
        arguments: ["fails", "garbage", "null", "hangs"])
    func aBadListTouchesNothingAndTheNextGoodTickConverges(_ fault: String) async throws {
        let w = try World()
        let cid = try w.store.controlID()
        try await w.sim(["create", "ubuntu", "repl-\(cid)-o1-o1"])  // an old orphan
        try await w.sim(["admin", "clock", "advance", "10m"])
        try w.apply("kind: Run\nname: a\ncommand: sleep 600\n")
        // A fake orbctl in front of the emulator that spoils `list` once.
        let fake = w.root.appendingPathComponent("bin/fake-orbctl").path
        let spoil: String
        switch fault {
        case "fails": spoil = "echo '[-32098] internal error' >&2; exit 1"
        case "garbage": spoil = "echo 'Segmentation fault (core dumped)'; exit 0"
        case "null": spoil = "echo null; exit 0"
        default: spoil = "sleep 600"
        }
        let flag = w.root.appendingPathComponent("spoiled").path
        try """
        #!/bin/sh
        if [ "$1" = list ] && [ ! -e "\(flag)" ]; then touch "\(flag)"; \(spoil); fi
        exec "\(w.orbctl)" "$@"
        """.write(toFile: fake, atomically: true, encoding: .utf8)
        chmod(fake, 0o755)
        try await w.sim(["admin", "calls", "--reset"])
        var client = OrbctlClient(command: OrbctlCommand(executable: fake), runner: SystemProcessRunner(environment: w.environment))
        client.timeouts.quick = 3  // a hung list ends quickly; a loaded machine still lists in time
        client.deleteGrace = 0.01
        var settings = w.controller.settings
        settings.probeInterval = 0
        let controller = Controller(store: w.store, provider: OrbStackProvider(client: client), settings: settings)
        let bad = await controller.tick()
        #expect(bad.observationError != nil && bad.outcomes.isEmpty)
        #expect(try destructiveCalls(w).isEmpty)
        #expect(try w.machines().count == 1)
        // The next good tick converges: the orphan goes, the run starts.
        for _ in 0..<30 where try !(w.machines().count == 1 && w.run("a").instances.first?.phase ?? .pending >= .bootstrapping) {
            _ = await controller.tick()
        }
        #expect(try w.machines().map(\.name) != ["repl-\(cid)-o1-o1"])
        #expect(try w.run("a").instances.first?.phase ?? .pending >= .bootstrapping)
    }

    @Test(.machineCommands)
    func aCreateThatTimesOutButCompletesIsAdoptedNotDuplicated() async throws {
        let w = try World()
        try await w.sim(["admin", "latency", "create", "2500"])
        try w.apply("kind: Run\nname: slow\ncommand: sleep 600\n")
        var client = OrbctlClient(command: OrbctlCommand(executable: w.orbctl), runner: SystemProcessRunner(environment: w.environment))
        client.timeouts.create = 1
        client.pollInterval = 0.05
        let controller = Controller(store: w.store, provider: OrbStackProvider(client: client), settings: w.controller.settings)
        let first = await controller.tick()
        #expect(first.outcomes.contains { if case .create = $0.action { return $0.error?.kind == .timedOut } else { return false } })
        // The machine finishes booting in the background; later ticks adopt it.
        try await Task.sleep(nanoseconds: 3_000_000_000)
        try w.store.clearFailure(machine: try w.machines().first?.name ?? "")
        let until = Date().addingTimeInterval(30)
        while try w.run("slow").instances.first?.phase ?? .pending < .bootstrapping, Date() < until {
            _ = await controller.tick()
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(try w.machines().count == 1)
        #expect(try w.run("slow").instances.count == 1 && w.run("slow").instances[0].phase >= .bootstrapping)
    }

    @Test(.machineCommands)
    func killedAtRandomPointsDuringATenRunApply() async throws {
        let w = try World()
        let file = w.root.appendingPathComponent("ten.yaml")
        try (0..<10).map { "kind: Run\nname: r\($0)\ncommand: sleep 600\n" }.joined(separator: "---\n")
            .write(to: file, atomically: true, encoding: .utf8)
        var rng = SystemRandomNumberGenerator()
        let points = Self.long ? 20 : 5
        var killed = 0
        for _ in 0..<points {
            let n = Int.random(in: 1...20, using: &rng)
            if try await w.repl(["apply", "-f", file.path], extra: ["REPL_TEST_CRASH_AFTER": "\(n)"]).status == 137 { killed += 1 }
        }
        #expect(killed >= 1)  // the first apply always has 20 actions to do, so it is killed
        let final = try await w.repl(["apply", "-f", file.path])
        #expect(final.status == 0, "\(final.stderrText)")
        let machines = try w.machines()
        #expect(machines.count == 10)  // no duplicate, none leaked
        #expect(Set(machines.map(\.name)).count == 10)
        #expect(try w.store.openIntents().isEmpty)
        #expect(try w.store.runs().allSatisfy { record in record.run.instances.filter { record.run.wants($0) }.count == 1 })
    }

    @Test(.machineCommands)
    func unmanagedAndForeignMachinesAreNeverTouched() async throws {
        let w = try World()
        let unmanaged = (0..<(Self.long ? 100 : 30)).map { "dev-\($0)" }
        let foreign = (0..<(Self.long ? 20 : 8)).map { "repl-zzzzzz-\(Base36.encode(UInt64($0 + 1)))-1" }
        for name in unmanaged + foreign { try await w.sim(["create", "ubuntu", name]) }
        try await w.sim(["admin", "clock", "advance", "1h"])
        try await w.sim(["admin", "calls", "--reset"])
        let file = w.root.appendingPathComponent("churn.yaml")
        try "kind: Run\nname: short\ncommand: \"true\"\nreplicas: 3\n".write(to: file, atomically: true, encoding: .utf8)
        // Another installation's machines exist: this one is a second installation on purpose.
        await #expect(try w.repl(["apply", "-f", file.path, "--wait", "--new-installation"]).status == 0)
        await #expect(try w.repl(["orphans", "sweep", "--orphan-grace", "0s"]).status == 0)
        await #expect(try w.repl(["delete", "run", "short"]).status == 0)
        let touched = Set(try destructiveCalls(w))
        #expect(touched.isDisjoint(with: unmanaged + foreign))
        #expect(Set(try w.machines().map(\.name)) == Set(unmanaged + foreign))
        // States, not names alone (#21): a bare `orbctl stop` names nothing and stops them all.
        let stopped = try w.machines().filter { $0.state != .running }.map(\.name)
        #expect(stopped.isEmpty, "\(stopped)")
        #expect(try bareDestructiveCalls(w) == 0)
    }

    /// Short runs in waves through a small pool: graceful stops return every address, so the
    /// pool never runs out (long: 300 runs through 64 addresses; CI: 48 through 16).
    @Test(.machineCommands)
    func churnNeverExhaustsThePool() async throws {
        let w = try World()
        let (total, pool, wave) = Self.long ? (300, 64, 30) : (48, 16, 12)
        try await w.sim(["admin", "ip-pool", "\(pool)"])
        var done = 0
        while done < total {
            let file = w.root.appendingPathComponent("wave\(done).yaml")
            try (done..<(done + wave)).map { "kind: Run\nname: c\($0)\ncommand: sleep 0.2\n" }.joined(separator: "---\n")
                .write(to: file, atomically: true, encoding: .utf8)
            let out = try await w.repl(["apply", "-f", file.path, "--wait", "--quiet"])
            #expect(out.status == 0, "wave at \(done): \(out.stderrText)")
            done += wave
        }
        #expect(try w.machines().isEmpty)
        #expect(try w.store.breaker().failures == 0)
        #expect(try w.store.runs().filter { $0.run.phase == .succeeded }.count == total)
    }

    /// `watch`, cron sweeps and applies at the same time: one actor at a time, nothing done twice
    /// (CI: 10 seconds; long: a minute).
    @Test(.machineCommands)
    func watchSweepAndApplyAtOnce() async throws {
        let w = try World()
        let file = w.root.appendingPathComponent("fleet.yaml")
        try "kind: Run\nname: svc\nreplicas: 3\n---\nkind: Run\nname: job\ncommand: sleep 1\nhold: 0s\n"
            .write(to: file, atomically: true, encoding: .utf8)
        try await w.sim(["admin", "calls", "--reset"])
        let watch = try await BackgroundProcess.start(
            Paths.repl, ["--orbctl", w.orbctl, "watch", "-f", file.path, "--interval", "200ms"],
            environment: w.environment, outputPath: w.root.appendingPathComponent("watch.log").path)
        let until = Date().addingTimeInterval(Self.long ? 60 : 10)
        var refused = 0
        while Date() < until {
            let sweep = try await w.repl(["orphans", "sweep"])
            #expect(sweep.status == 0)
            if sweep.stdoutText.contains("holds the controller lease") { refused += 1 }
            let apply = try await w.repl(["apply", "-f", file.path])
            #expect(apply.status == 0)
            try await Task.sleep(nanoseconds: UInt64(200_000) * 1000)
        }
        watch.signal(SIGINT)
        _ = try await watch.wait()
        #expect(refused > 0, "watch said: \((try? String(contentsOf: w.root.appendingPathComponent("watch.log"), encoding: .utf8)) ?? "")")
        // Nothing was done twice: each machine name was created at most once.
        let text = try String(contentsOf: w.root.appendingPathComponent("sim/calls.jsonl"), encoding: .utf8)
        var creates: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let argv = (try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["argv"] as? [String] ?? []
            if argv.first == "create", argv.count > 2 { creates[argv[2], default: 0] += 1 }
        }
        #expect(creates.values.allSatisfy { $0 == 1 }, "created twice: \(creates.filter { $0.value > 1 })")
        #expect(try w.machines().filter { $0.name.hasPrefix("repl-") }.count == 3)  // svc's three; job finished and went
    }
}
