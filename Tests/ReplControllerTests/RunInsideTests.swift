import Foundation
import GRDB
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import OrbStack
@testable import ReplController

/// The run inside the machine: launched exactly once, clones start clean, deadlines mean
/// what users think, status and logs come through the host channel. Each test asserts the
/// world a user sees: machines, store rows, what the command did, and orbctl calls.
@Suite(.serialized) struct RunInsideTests {
    /// A command that leaves one line per execution in its machine, then waits.
    static let countingCommand = "echo ran >> /var/tmp/ran; sleep 600"

    func machineName(_ w: World, _ run: String, _ index: Int = 0) throws -> String {
        let r = try w.run(run)
        return MachineName(controlID: try w.store.controlID(), manifestID: r.id, instanceID: w.wanted(r)[index].id).description
    }

    /// How many times the counting command ran on `machine`.
    func executions(_ w: World, _ machine: String) async throws -> Int {
        let out = try await w.sim(["run", "-m", machine, "-u", "root", "sh", "-c", "cat /var/tmp/ran 2>/dev/null; true"])
        return out.stdoutText.split(separator: "\n").filter { $0 == "ran" }.count
    }

    /// Removes a directory the machines' wrappers are writing into (a file created during the
    /// walk makes one removal fail): again until it is gone.
    func removeWhileWritten(_ url: URL) async throws {
        for _ in 0..<50 where FileManager.default.fileExists(atPath: url.path) {
            try? FileManager.default.removeItem(at: url)
            if FileManager.default.fileExists(atPath: url.path) { try await Task.sleep(nanoseconds: 20_000_000) }
        }
        #expect(!FileManager.default.fileExists(atPath: url.path), "\(url.path) could not be removed")
    }

    func calls(_ w: World) async throws -> [String: Int] {
        let json = try await JSONSerialization.jsonObject(with: w.sim(["admin", "calls", "--json"]).stdout) as? [String: Any]
        return json?["verbs"] as? [String: Int] ?? [:]
    }

    // MARK: Exactly once

    /// With the host channel a lost launch is seen there; without it, only the marker in the
    /// machine stands between a second launch and a second run: both are walked.
    @Test(.machineCommands, arguments: ["after-intent:startRun", "after-call:startRun"], [true, false])
    func aLaunchInterruptedByACrashRunsTheCommandOnce(_ point: String, _ channel: Bool) async throws {
        let w = try World(channel: channel)
        let file = w.root.appendingPathComponent("r.yaml")
        try "kind: Run\nname: r\ncommand: \(Self.countingCommand)\nreplicas: 2\n".write(to: file, atomically: true, encoding: .utf8)
        let crashed = try await w.repl(["apply", "-f", file.path], crash: point)
        #expect(crashed.status == 137, "\(crashed.stderrText)")
        if !channel { try await removeWhileWritten(w.root.appendingPathComponent("state/machines")) }
        for _ in 0..<2 {
            let again = try await w.repl(["apply", "-f", file.path])
            #expect(again.status == 0, "\(again.stderrText)")
        }
        let run = try w.run("r")
        #expect(w.wanted(run).count == 2 && w.wanted(run).allSatisfy { $0.phase >= .bootstrapping })
        try await w.tick { try w.wanted(w.run("r")).allSatisfy { $0.phase == .running } }
        for i in 0..<2 { #expect(try await executions(w, machineName(w, "r", i)) == 1) }
        #expect(try w.machines().count == 2)
    }

    @Test(.machineCommands) func applyKilledAtRandomMomentsNeverRunsACommandTwice() async throws {
        let w = try World()
        let file = w.root.appendingPathComponent("r.yaml")
        try "kind: Run\nname: r\ncommand: \(Self.countingCommand)\nreplicas: 3\n".write(to: file, atomically: true, encoding: .utf8)
        var generator = SystemRandomNumberGenerator()
        for round in 0..<8 {
            let apply = try await BackgroundProcess.start(
                Paths.repl, ["--orbctl", w.orbctl, "apply", "-f", file.path],
                environment: w.environment, outputPath: w.root.appendingPathComponent("apply.log").path)
            let delay = UInt64(round) * 60_000_000 + UInt64.random(in: 0..<60_000_000, using: &generator)
            try await Task.sleep(nanoseconds: delay)
            apply.signal(SIGKILL)
            _ = try await apply.wait()
        }
        let last = try await w.repl(["apply", "-f", file.path])
        #expect(last.status == 0, "\(last.stderrText)")
        try await w.tick { try w.wanted(w.run("r")).allSatisfy { $0.phase == .running } }
        #expect(try w.machines().count == 3)
        for i in 0..<3 { #expect(try await executions(w, machineName(w, "r", i)) == 1) }
    }

    /// A provider that passes every call to another; the test providers below override only
    /// the calls they change.
    class ForwardingProvider: Provider, @unchecked Sendable {
        var base: any Provider
        init(_ base: any Provider) { self.base = base }
        var capabilities: ProviderCapabilities { base.capabilities }
        func list() async throws(ProviderError) -> [ObservedMachine] { try await base.list() }
        func state(name: MachineName) async throws(ProviderError) -> MachineState? { try await base.state(name: name) }
        func create(name: MachineName, spec: MachineSpec, options: MachineOptions) async throws(ProviderError) {
            try await base.create(name: name, spec: spec, options: options)
        }
        func clone(snapshot: MachineName, name: MachineName) async throws(ProviderError) { try await base.clone(snapshot: snapshot, name: name) }
        func start(name: MachineName) async throws(ProviderError) { try await base.start(name: name) }
        func delete(name: MachineName) async throws(ProviderError) { try await base.delete(name: name) }
        /// The provider beneath is limited; the calls this one changes stay its own.
        func limited(by limits: CallLimits) -> any Provider {
            base = base.limited(by: limits)
            return self
        }
        func snapshot(source: MachineName, name: MachineName) async throws(ProviderError) { try await base.snapshot(source: source, name: name) }
        func stop(name: MachineName) async throws(ProviderError) { try await base.stop(name: name) }
        func probe(name: MachineName) async throws(ProviderError) -> ProbeResult { try await base.probe(name: name) }
        func pushArchive(name: MachineName, archive: Data, to directory: String) async throws(ProviderError) {
            try await base.pushArchive(name: name, archive: archive, to: directory)
        }
        func pushFile(name: MachineName, data: Data, to path: String) async throws(ProviderError) {
            try await base.pushFile(name: name, data: data, to: path)
        }
        func pullArchive(name: MachineName, globs: [String]) async throws(ProviderError) -> (archive: Data, unmatched: [String]) {
            try await base.pullArchive(name: name, globs: globs)
        }
        func logs(name: MachineName, bootstrap: Bool, from offset: Int) async throws(ProviderError) -> Data {
            try await base.logs(name: name, bootstrap: bootstrap, from: offset)
        }
        func address(name: MachineName) async throws(ProviderError) -> String? { try await base.address(name: name) }
        func manifestCopy(name: MachineName) async throws(ProviderError) -> String? { try await base.manifestCopy(name: name) }
        func isolation(name: MachineName) async throws(ProviderError) -> Bool? { try await base.isolation(name: name) }
        func startRun(name: MachineName, payload: RunPayload) async throws(ProviderError) { try await base.startRun(name: name, payload: payload) }
    }

    /// A provider whose first launch happens but is reported as failed (a launch that timed
    /// out after the fact), or whose record is lost to a locked store.
    final class LostLaunch: ForwardingProvider, @unchecked Sendable {
        let storePath: String?
        let lock = NSLock()
        var launches = 0
        var holder: DatabaseQueue?
        init(_ base: any Provider, lockingStoreAt storePath: String? = nil) {
            self.storePath = storePath
            super.init(base)
        }
        override func startRun(name: MachineName, payload: RunPayload) async throws(ProviderError) {
            try await base.startRun(name: name, payload: payload)
            let first = lock.withLock {
                launches += 1; return launches == 1
            }
            guard first else { return }
            if let storePath {
                // Another writer takes the database right after the launch: recording it fails.
                do {
                    var config = Configuration()
                    config.allowsUnsafeTransactions = true
                    let queue = try DatabaseQueue(path: storePath, configuration: config)
                    try queue.inDatabase { try $0.execute(sql: "BEGIN EXCLUSIVE") }
                    lock.withLock { holder = queue }
                } catch { Issue.record("cannot lock the store: \(error)") }
                return
            }
            throw ProviderError(.timedOut, "orbctl run timed out (the launch happened anyway)")
        }
        func release() {
            lock.withLock {
                try? holder?.inDatabase { try $0.execute(sql: "ROLLBACK") }
                holder = nil
            }
        }
    }

    func controller(_ w: World, provider: any Provider, store: Store) -> Controller {
        var settings = w.controller.settings
        settings.concurrency = 4
        return Controller(store: store, provider: provider, settings: settings)
    }

    /// A provider that lets another process cancel the run while its machine is being made.
    final class CancelDuringCreate: ForwardingProvider, @unchecked Sendable {
        let cancel: @Sendable () throws -> Void
        let lock = NSLock()
        var launches = 0
        init(_ base: any Provider, cancel: @escaping @Sendable () throws -> Void) {
            self.cancel = cancel
            super.init(base)
        }
        override func create(name: MachineName, spec: MachineSpec, options: MachineOptions) async throws(ProviderError) {
            try await base.create(name: name, spec: spec, options: options)
            do { try cancel() } catch { Issue.record("cannot cancel: \(error)") }
        }
        override func startRun(name: MachineName, payload: RunPayload) async throws(ProviderError) {
            lock.withLock { launches += 1 }
            try await base.startRun(name: name, payload: payload)
        }
    }

    /// `run cancel` (or `delete run`) while the acting process is making the run's machines:
    /// once the cancel is recorded, no command of the run starts (found by an attacker, #16:
    /// three commands started 4 s after the cancel said it was done).
    @Test(.machineCommands) func aRunCancelledWhileItsMachinesAreMadeNeverStarts() async throws {
        let w = try World()
        try w.apply("kind: Run\nname: r\ncommand: \(Self.countingCommand)\nreplicas: 3\n")
        let store = w.store
        let provider = CancelDuringCreate(w.controller.provider) {
            let run = try #require(try store.runs().first { $0.run.manifest.name == "r" })
            try store.cancel(run: run.run.id)
        }
        let controller = controller(w, provider: provider, store: w.store)
        _ = await controller.tick()
        #expect(provider.launches == 0)
        try await w.tick(until: { try w.machines().isEmpty && w.run("r").phase == .cancelled })
        #expect(provider.launches == 0)
    }

    @Test(.machineCommands, arguments: [true, false]) func aLaunchThatTimedOutButHappenedIsNotRepeated(_ channel: Bool) async throws {
        let w = try World(channel: channel)
        let lost = LostLaunch(w.controller.provider)
        let controller = controller(w, provider: lost, store: w.store)
        try w.apply("kind: Run\nname: r\ncommand: \(Self.countingCommand)\n")
        let first = await controller.tick()
        #expect(first.outcomes.contains { if case .startRun = $0.action { return $0.error?.kind == .timedOut } else { return false } })
        for _ in 0..<40 where try w.wanted(w.run("r")).first?.phase != .running {
            _ = await controller.tick()
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        #expect(try w.wanted(w.run("r")).first?.phase == .running)
        #expect(try await executions(w, machineName(w, "r")) == 1)
    }

    @Test(.machineCommands, arguments: [true, false]) func aLaunchRacingALockedStoreRunsOnce(_ channel: Bool) async throws {
        let w = try World(channel: channel)
        let store = try Store(directory: w.root.appendingPathComponent("state"), busyTimeout: 0.3)
        let lost = LostLaunch(w.controller.provider, lockingStoreAt: store.path)
        let controller = controller(w, provider: lost, store: store)
        try w.apply("kind: Run\nname: r\ncommand: \(Self.countingCommand)\n")
        let first = await controller.tick()
        #expect(first.failed)
        #expect(try store.instance(w.wanted(w.run("r"))[0].id)?.startedAt == nil)  // the record was lost
        // Reported as what it is: done in OrbStack, not recorded; no failure counted against it.
        #expect(
            first.outcomes.contains { $0.error?.description.contains("done, but recording it failed") == true },
            "\(first.outcomes.map { "\($0.action): \($0.error?.description ?? "ok")" })")
        lost.release()
        for _ in 0..<40 where try w.wanted(w.run("r")).first?.phase != .running {
            _ = await controller.tick()
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        #expect(try w.wanted(w.run("r")).first?.phase == .running)
        #expect(try await executions(w, machineName(w, "r")) == 1)
    }

    // MARK: Clones start clean

    @Test(.machineCommands) func aCloneShowsOnlyItsOwnOutputLogsAndManifest() async throws {
        let w = try World()
        try w.apply(
            """
            kind: Run
            name: base
            bootstrap: echo base-bootstrap
            command: echo base-output; sleep 600
            ---
            kind: Snapshot
            name: snap
            from: base
            ---
            kind: Run
            name: fast
            from: snap
            command: echo own-output
            hold: 1h
            """)
        try await w.tick(until: { try w.wanted(w.run("fast")).first?.phase.isTerminal == true }, seconds: 60)
        let fast = try w.wanted(w.run("fast"))[0]
        #expect(fast.phase == .succeeded)
        let machine = try machineName(w, "fast")
        let manifest = try await w.sim(["run", "-m", machine, "-u", "root", "cat", "/etc/repl/manifest.yaml"]).stdoutText
        #expect(manifest.contains("\"fast\"") && !manifest.contains("\"base\""))
        // Cancel to collect the logs now.
        try w.store.cancel(run: try w.run("fast").id)
        try await w.tick { try w.run("fast").instances.allSatisfy(\.logsCollected) }
        let logs = w.root.appendingPathComponent("state/logs")
        let output = try String(contentsOf: Controller.logFile(logs, run: "fast", instance: fast.id), encoding: .utf8)
        #expect(output == "own-output\n")
        let boot = (try? String(contentsOf: Controller.logFile(logs, run: "fast", instance: fast.id, bootstrap: true), encoding: .utf8)) ?? ""
        #expect(!boot.contains("base-bootstrap"))
    }
}
