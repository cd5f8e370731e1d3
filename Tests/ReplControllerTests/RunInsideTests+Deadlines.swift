import Foundation
import GRDB
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import OrbStack
@testable import ReplController

/// The run inside the machine, continued: deadlines, what attacking the channel found,
/// stopped machines, logs and the calls a tick costs.
extension RunInsideTests {
    // MARK: Deadlines

    @Test(.machineCommands, arguments: [true, false])
    func aQuickRunReadLateBySweepIsSucceeded(_ channel: Bool) async throws {
        let w = try World(channel: channel)
        w.controller.settings.deadlineMargin = 15  // the default: the machine is still up 8 s later
        try w.apply("kind: Run\nname: q\ncommand: echo hi\nmaxDuration: 5s\n")
        try await w.tick { try w.wanted(w.run("q")).first?.phase ?? .pending >= .bootstrapping }
        try await Task.sleep(nanoseconds: 8_000_000_000)
        try await w.tick { try w.run("q").phase.isTerminal && w.machines().isEmpty }
        let instance = try w.wanted(w.run("q"))[0]
        #expect(instance.phase == .succeeded && instance.exitCode == 0)
    }

    @Test(.machineCommands) func exhaustionNeverYieldsASucceededRun() async throws {
        let w = try World()
        try await w.sim(["admin", "ip-pool", "1"])
        try await w.sim(["create", "ubuntu", "someone-else"])
        try w.apply("kind: Run\nname: idle\nmaxDuration: 1s\n")
        let until = Date().addingTimeInterval(4)
        while Date() < until {
            _ = await w.controller.tick()
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        let run = try w.run("idle")
        #expect(run.phase != .succeeded)
        #expect(run.instances.allSatisfy { $0.startedAt == nil && !$0.phase.isTerminal })
    }

    @Test(.machineCommands) func aCommandKilledAfterItsGraceIsTimedOut() async throws {
        let w = try World()
        // Ignores SIGTERM: the wrapper's grace ends in SIGKILL (exit 137), still a timeout.
        try w.apply("kind: Run\nname: stubborn\ncommand: trap '' TERM; sleep 60 & wait; sleep 60\nmaxDuration: 2s\n")
        try await w.tick(until: { try w.run("stubborn").phase.isTerminal }, seconds: 40)
        #expect(try w.wanted(w.run("stubborn"))[0].phase == .timedOut)
    }

    /// Found by attacking (round 2): the controller deleted the machine within a second of the
    /// deadline's SIGTERM. The command has its grace to clean up, and its last words are kept.
    @Test(.machineCommands) func aCommandGetsItsGraceAfterTheDeadline() async throws {
        let w = try World()
        // The machine is powered off `deadlineMargin` after the deadline: as by default, after
        // the grace (the World's 1 s would power it off with the SIGTERM).
        w.controller.settings.deadlineMargin = 8
        try w.apply(
            "kind: Run\nname: r\ncommand: trap 'echo got-term' TERM; echo start; sleep 6 & wait; echo after-wait; sleep 1; echo late; exit 0\nmaxDuration: 3s\n"
        )
        try await w.tick(until: { try w.run("r").phase.isTerminal && w.run("r").instances.allSatisfy(\.logsCollected) }, seconds: 40)
        let instance = try w.wanted(w.run("r"))[0]
        #expect(instance.phase == .timedOut)
        let log = try String(
            contentsOf: Controller.logFile(w.root.appendingPathComponent("state/logs"), run: "r", instance: instance.id), encoding: .utf8)
        #expect(log.hasSuffix("late\n"), "\(log)")
    }

    @Test(.machineCommands) func aLongerMaxDurationAppliedInPlaceReachesTheRunningCommand() async throws {
        let w = try World()
        try w.apply("kind: Run\nname: grow\ncommand: sleep 600\nmaxDuration: 4s\n")
        try await w.tick { try w.wanted(w.run("grow")).first?.phase == .running }
        let before = try w.run("grow").generation
        try w.apply("kind: Run\nname: grow\ncommand: sleep 600\nmaxDuration: 1h\n")
        #expect(try w.run("grow").generation == before)  // in place, not a replacement
        _ = await w.controller.tick()
        try await Task.sleep(nanoseconds: 8_000_000_000)
        _ = await w.controller.tick()
        #expect(try w.wanted(w.run("grow")).first?.phase == .running)
        #expect(try w.machines().first?.state == .running)
        let status = try await w.sim(["run", "-m", machineName(w, "grow"), "-u", "root", "cat", "/var/lib/repl/status"]).stdoutText
        #expect(status.hasPrefix("running"))
    }

    // MARK: Found by attacking the channel (round 1)

    /// Restarted behind repl's back: the wrapper and the command died with it. Its heartbeat
    /// stops, and the run fails instead of showing `Running` for ever (with and without the channel).
    @Test(.machineCommands, arguments: [true, false]) func aMachineRestartedBehindOurBackFailsItsRun(_ channel: Bool) async throws {
        let w = try World(channel: channel)
        try w.apply("kind: Run\nname: r\ncommand: sleep 600\n")
        try await w.tick { try w.wanted(w.run("r")).first?.phase == .running }
        let machine = try machineName(w, "r")
        try await Task.sleep(nanoseconds: 6_000_000_000)  // older than the heartbeat timeout (5 s here)
        try await w.sim(["restart", machine])
        try await w.tick(until: { try w.run("r").phase.isTerminal && w.machines().isEmpty }, seconds: 60)
        let instance = try w.wanted(w.run("r"))[0]
        #expect(instance.phase == .failed && instance.reason?.contains("restarted") == true, "\(instance)")
    }

    /// A list that shows a running command's machine stopped (once: OrbStack restarting, a
    /// lying orbctl) is confirmed by name before the run is judged: the command goes on, and no
    /// machine is stopped or deleted (found by an attacker: one such list failed the run and
    /// deleted its machine). A machine that really stopped still fails its run.
    @Test(.machineCommands, arguments: [true, false]) func oneListShowingARunningMachineStoppedFailsNothing(_ channel: Bool) async throws {
        let w = try World(channel: channel)
        try w.apply("kind: Run\nname: r\ncommand: sleep 600\n")
        try await w.tick { try w.wanted(w.run("r")).first?.phase == .running }
        let liar = StoppedInList(w.controller.provider)
        let report = await controller(w, provider: liar, store: w.store).tick()
        #expect(report.observationError?.contains("not trusted") == true, "\(report.observationError ?? "trusted")")
        #expect(try w.wanted(w.run("r")).first?.phase == .running)
        #expect(try w.machines().map(\.state) == [.running])
        // It really stops: the run fails, as before.
        try await w.sim(["stop", try machineName(w, "r")])
        try await w.tick(until: { try w.run("r").phase.isTerminal }, seconds: 60)
        #expect(try w.wanted(w.run("r"))[0].phase == .failed)
    }

    /// A held run's artifacts are copied when its command ends, not when its machine goes: a
    /// machine that stops during the hold (its own timer, a restart, Ctrl-C in `exec`) kept
    /// them out of reach (found by an attacker: `apply --wait` then a sweep, nothing copied).
    @Test(.machineCommands) func aHeldRunsArtifactsAreCopiedWhenItsCommandEnds() async throws {
        let w = try World()
        try w.apply("kind: Run\nname: held\ncommand: mkdir -p /srv/out; echo r > /srv/out/r.txt\nartifacts: [/srv/out/*]\nhold: 10m\n")
        try await w.tick { try w.run("held").phase == .succeeded }
        try await w.tick { try w.wanted(w.run("held"))[0].logsCollected }
        let machine = try machineName(w, "held")
        try await w.sim(["stop", machine])
        let file = w.root.appendingPathComponent("state/artifacts/held/1/srv/out/r.txt")
        #expect((try? String(contentsOf: file, encoding: .utf8)) == "r\n")
        // The hold ends: the machine goes, and what was copied stays.
        try await w.sim(["admin", "clock", "advance", "11m"])
        await w.controller.tick(now: Date().addingTimeInterval(660))
        #expect((try? String(contentsOf: file, encoding: .utf8)) == "r\n")
    }

    /// Lists every running machine as stopped.
    final class StoppedInList: ForwardingProvider, @unchecked Sendable {
        override func list() async throws(ProviderError) -> [ObservedMachine] {
            try await base.list().map { machine in
                var m = machine
                if m.state == .running { m.state = .stopped }
                return m
            }
        }
    }

    /// A stale heartbeat alone never fails a run: when a Mac sleeps every clock jumps, but the
    /// wrapper is still there. The machine is asked whether its watch loop exists.
    @Test(.machineCommands) func aStaleHeartbeatWithTheWrapperAliveFailsNothing() async throws {
        let w = try World()
        try w.apply("kind: Run\nname: r\ncommand: sleep 600\n")
        try await w.tick { try w.wanted(w.run("r")).first?.phase == .running }
        let machine = try machineName(w, "r")
        try await Task.sleep(nanoseconds: 6_000_000_000)  // the run is older than the heartbeat timeout (5 s here)
        // The loop is frozen (as a sleeping Mac freezes it): its heartbeat goes stale, its process stays.
        try await w.sim(["run", "-m", machine, "-u", "root", "sh", "-c", "kill -STOP $(cat /var/lib/repl/switch.pid)"])
        try await Task.sleep(nanoseconds: 7_000_000_000)
        for _ in 0..<3 { _ = await w.controller.tick() }
        #expect(try w.wanted(w.run("r")).first?.phase == .running)
        #expect(try w.machines().map(\.name) == [machine])
        try await w.sim(["run", "-m", machine, "-u", "root", "sh", "-c", "kill -CONT $(cat /var/lib/repl/switch.pid)"])
    }

    /// The channel is a mirror anything on the Mac can write: an end it shows for a machine
    /// that runs is confirmed by the machine's own status first.
    @Test(.machineCommands) func aForgedChannelStatusDoesNotEndARunningCommand() async throws {
        let w = try World()
        try w.apply("kind: Run\nname: r\ncommand: sleep 600\n")
        try await w.tick { try w.wanted(w.run("r")).first?.phase == .running }
        let machine = try machineName(w, "r")
        try "exited 0\nlaunched=1\nended=2\n".write(
            to: w.root.appendingPathComponent("state/machines/\(machine)/status"), atomically: true, encoding: .utf8)
        for _ in 0..<3 { _ = await w.controller.tick() }
        #expect(try w.wanted(w.run("r")).first?.phase == .running)
        #expect(try w.machines().map(\.name) == [machine])
    }

    @Test(.machineCommands) func aMaxDurationShortenedDuringBootstrapReachesTheCommand() async throws {
        let w = try World()
        try w.apply("kind: Run\nname: r\nbootstrap: sleep 6\ncommand: echo started; sleep 600\nmaxDuration: 60s\n")
        try await w.tick { try w.wanted(w.run("r")).first?.phase ?? .pending >= .bootstrapping }
        try w.apply("kind: Run\nname: r\nbootstrap: sleep 6\ncommand: echo started; sleep 600\nmaxDuration: 2s\n")
        _ = await w.controller.tick()  // the new limits reach the channel while the bootstrap runs
        try await w.tick(until: { try w.run("r").phase.isTerminal && w.run("r").instances.allSatisfy(\.logsCollected) }, seconds: 60)
        let instance = try w.wanted(w.run("r"))[0]
        #expect(instance.phase == .timedOut)
        // The wrapper itself read the new limit after the bootstrap: the command never started.
        let log =
            (try? String(
                contentsOf: Controller.logFile(w.root.appendingPathComponent("state/logs"), run: "r", instance: instance.id), encoding: .utf8)) ?? ""
        #expect(!log.contains("started"), "\(log)")
    }

    @Test(.machineCommands) func aCommandThatEndsAfterItsDeadlineIsTimedOutHoweverLate() async throws {
        let w = try World()
        // It ends the wrapper's watch loop (root can), then outlives its deadline and exits 0.
        try w.apply("kind: Run\nname: r\ncommand: pkill -f switch.sh; sleep 4; exit 0\nmaxDuration: 2s\n")
        try await w.tick { try w.wanted(w.run("r")).first?.phase ?? .pending >= .bootstrapping }
        try await Task.sleep(nanoseconds: 7_000_000_000)
        try await w.tick(until: { try w.run("r").phase.isTerminal }, seconds: 30)
        #expect(try w.wanted(w.run("r"))[0].phase == .timedOut)
    }

    // MARK: Stopped machines, logs, calls

    @Test(.machineCommands) func aStoppedMachineThatExitedZeroIsSucceededAndItsLogsCollectedWithoutBooting() async throws {
        let w = try World()
        try w.apply("kind: Run\nname: s\ncommand: echo done-output\n")
        try await w.tick { try w.wanted(w.run("s")).first?.phase ?? .pending >= .bootstrapping }
        let machine = try machineName(w, "s")
        // The command ends; nothing reads it before the machine is powered off.
        let status = w.root.appendingPathComponent("state/machines/\(machine)/status")
        for _ in 0..<100 where !((try? String(contentsOf: status, encoding: .utf8))?.hasPrefix("exited 0") ?? false) {
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        try await w.sim(["stop", machine])
        try await w.sim(["admin", "calls", "--reset"])
        try await w.tick { try w.run("s").phase.isTerminal && w.machines().isEmpty }
        let instance = try w.wanted(w.run("s"))[0]
        #expect(instance.phase == .succeeded && instance.logsCollected)
        let log = try String(
            contentsOf: Controller.logFile(w.root.appendingPathComponent("state/logs"), run: "s", instance: instance.id), encoding: .utf8)
        #expect(log == "done-output\n")
        let verbs = try await calls(w)
        #expect(verbs["run"] == nil && verbs["start"] == nil, "\(verbs)")
    }

    /// The channel's directory removed on the host while the run bootstraps (a user cleaning
    /// `~/.repl`): the command still runs, and its status and output come from the machine.
    @Test(.machineCommands) func aChannelRemovedMidRunFallsBackToTheMachine() async throws {
        let w = try World()
        try w.apply("kind: Run\nname: lost\nbootstrap: sleep 2\ncommand: echo out\n")
        try await w.tick { try w.wanted(w.run("lost")).first?.phase ?? .pending >= .bootstrapping }
        try await removeWhileWritten(w.root.appendingPathComponent("state/machines"))
        try await w.tick(until: { try w.run("lost").phase.isTerminal && w.machines().isEmpty }, seconds: 30)
        let instance = try w.wanted(w.run("lost"))[0]
        #expect(instance.phase == .succeeded && instance.exitCode == 0)
        let log = try String(
            contentsOf: Controller.logFile(w.root.appendingPathComponent("state/logs"), run: "lost", instance: instance.id), encoding: .utf8)
        #expect(log == "out\n")
    }

    /// The channel's directory removed while the command writes (found by an attacker, #16: the
    /// command wrote into the host's file, so lines before and after the removal were all lost):
    /// the logs are written in the machine and only copied out, so every line arrives.
    @Test(.machineCommands, arguments: ["one", "all"]) func aChannelRemovedWhileTheCommandWritesLosesNoLine(_ what: String) async throws {
        let w = try World()
        try w.apply("kind: Run\nname: lines\nreplicas: 2\ncommand: for i in 1 2 3 4 5 6; do echo line$i; sleep 0.5; done\n")
        let machines = w.root.appendingPathComponent("state/machines")
        // Until the host has some of the output: it is removed with the directory.
        try await w.tick(until: {
            let name = try machineName(w, "lines")
            let log = (try? String(contentsOf: machines.appendingPathComponent("\(name)/run.log"), encoding: .utf8)) ?? ""
            return log.contains("line1")
        })
        try await removeWhileWritten(what == "all" ? machines : machines.appendingPathComponent(try machineName(w, "lines")))
        try await w.tick(until: { try w.run("lines").phase.isTerminal && w.machines().isEmpty }, seconds: 40)
        let expected = (1...6).map { "line\($0)\n" }.joined()
        for instance in try w.wanted(w.run("lines")) {
            #expect(instance.phase == .succeeded)
            let log = try String(
                contentsOf: Controller.logFile(w.root.appendingPathComponent("state/logs"), run: "lines", instance: instance.id), encoding: .utf8)
            #expect(log == expected, "instance \(instance.id): \(log)")
        }
    }

    /// Deleted behind repl's back after its command ended: judged by its status, its logs kept
    /// from the channel, and the channel's directory removed.
    @Test(.machineCommands) func aMachineDeletedBehindOurBackKeepsItsStatusAndLogs() async throws {
        let w = try World()
        try w.apply("kind: Run\nname: gone\ncommand: echo kept; exit 4\nhold: 1h\n")
        try await w.tick { try w.wanted(w.run("gone")).first?.phase ?? .pending >= .bootstrapping }
        let machine = try machineName(w, "gone")
        let status = w.root.appendingPathComponent("state/machines/\(machine)/status")
        for _ in 0..<100 where !((try? String(contentsOf: status, encoding: .utf8))?.hasPrefix("exited") ?? false) {
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        try await w.sim(["delete", "-f", machine])
        try await w.tick { try w.run("gone").instances.allSatisfy(\.logsCollected) }
        let instance = try w.wanted(w.run("gone"))[0]
        #expect(instance.phase == .failed && instance.exitCode == 4)
        let log = try String(
            contentsOf: Controller.logFile(w.root.appendingPathComponent("state/logs"), run: "gone", instance: instance.id), encoding: .utf8)
        #expect(log == "kept\n")
        #expect(!FileManager.default.fileExists(atPath: status.deletingLastPathComponent().path))
    }

    @Test(.machineCommands, arguments: [true, false])
    func aSeventyMebibyteLogArrivesWhole(_ channel: Bool) async throws {
        let w = try World(channel: channel)
        try w.apply("kind: Run\nname: big\ncommand: head -c 73400320 /dev/zero | tr '\\0' x; echo; echo end\n")
        try await w.tick(until: { try w.run("big").phase.isTerminal && w.machines().isEmpty }, seconds: 120)
        let instance = try w.wanted(w.run("big"))[0]
        #expect(instance.phase == .succeeded)
        let file = Controller.logFile(w.root.appendingPathComponent("state/logs"), run: "big", instance: instance.id)
        let size = (try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? NSNumber)?.intValue
        #expect(size == 73_400_320 + 5)
    }

    @Test(.machineCommands) func fiveRunningCommandsCostOneListPerTick() async throws {
        let w = try World()
        try w.apply("kind: Run\nname: five\ncommand: sleep 600\nreplicas: 5\n")
        try await w.tick { try w.wanted(w.run("five")).allSatisfy { $0.phase == .running } }
        try await w.sim(["admin", "calls", "--reset"])
        for _ in 0..<3 { _ = await w.controller.tick() }
        #expect(try await calls(w) == ["list": 3])
        // A sweep (another process) costs the same.
        try await w.sim(["admin", "calls", "--reset"])
        let sweep = try await w.repl(["orphans", "sweep"])
        #expect(sweep.status == 0, "\(sweep.stderrText)")
        let verbs = try await calls(w)
        #expect(verbs == ["list": 1], "\(verbs)")
    }
}
