import Foundation
import OrbStack
import ReplCore
import ReplPlatform
import ReplStore

/// Knobs of the controller loop.
public struct ControllerSettings: Sendable {
    /// Orbctl calls that boot or copy machines (create, clone, start, snapshot, files in and
    /// out) in flight at once.
    public var concurrency: Int = 4
    /// Calls that boot nothing in flight at once: `list`, `info`, `run` (a launch, a probe, a
    /// log read), `stop` and `delete` are RPCs to OrbStack's daemon (serialised per machine,
    /// concurrent across machines), so a launch or a sweep need not queue behind creates.
    public var rpcConcurrency: Int = 32
    /// Without the host channel: at most one status read (`orbctl run`) per instance per this
    /// interval, growing to a tenth of the command's age (at most a minute) for long commands.
    public var probeInterval: TimeInterval = 2
    public var orphanGrace: TimeSpan = .minutes(2)
    public var includeForeign = false
    /// Where collected run logs go (`$REPL_HOME/logs`).
    public var logsDirectory: URL
    /// The host status channel (`$REPL_HOME/machines`): one directory per machine, which the
    /// wrapper reaches through `/mnt/mac`. `nil` switches it off (every status is probed).
    public var channelDirectory: URL?
    /// A tick whose list is older than this when it comes to act acts on nothing.
    public var staleAfter: TimeInterval = 60
    /// A running machine whose wrapper's heartbeat is older than this has lost its run (it
    /// restarted).
    public var heartbeatTimeout: TimeInterval = 30
    /// Dead man's switch margins passed to the wrapper.
    public var deadlineMargin: TimeInterval = 15
    public var abandonedAfter: TimeInterval = 600
    /// Plan and report, but change nothing (`--dry-run`).
    public var dryRun = false
    /// How long a run must have had nothing left to do before ticks stop reading it.
    public var archiveAfter: TimeInterval = 3600

    public init(logsDirectory: URL) {
        self.logsDirectory = logsDirectory
    }

    public var channel: StatusChannel? { channelDirectory.map(StatusChannel.init) }
}

/// What one tick saw and did.
public struct TickReport: Sendable {
    /// Set when the list could not be trusted: the tick did nothing.
    public var observationError: String?
    /// The status channel could not be read this tick (EC2's, in S3): no status moved.
    public var channelError: String?
    public var plan: Plan?
    /// Actions carried out, with their error when they failed.
    public var outcomes: [(action: Action, error: ProviderError?)] = []
    /// Actions held back, with why (backoff, circuit breaker).
    public var deferred: [(action: Action, why: String)] = []
    public var breaker: Breaker?
    public var duration: TimeInterval = 0
    /// Provider calls this tick made (a list, probes, actions).
    public var calls = 0
    /// Runs archived by this tick.
    public var archived = 0

    public init() {}

    public var failed: Bool { observationError != nil || channelError != nil || outcomes.contains { $0.error != nil } }
    public var didSomething: Bool { !outcomes.isEmpty }
}

/// The controller: observe, probe, plan, act. Level-triggered and idempotent: every
/// tick re-reads all desired state and all machines.
public final class Controller: @unchecked Sendable {
    public let store: Store
    public let provider: any Provider
    public var settings: ControllerSettings
    /// Called with each action's outcome as it happens (for live views).
    public var onOutcome: (@Sendable (Action, ProviderError?) -> Void)?
    /// The lease this controller acts under: once it is lost, no further action starts.
    public var lease: LeaseKeeper?

    /// The limits every call of the provider runs under, applied at its seam (each orbctl process).
    let limits: CallLimits
    let gate: BreakerGate

    public init(store: Store, provider: any Provider, settings: ControllerSettings) {
        self.store = store
        let gate = BreakerGate()
        self.gate = gate
        limits = CallLimits(heavy: settings.concurrency, light: settings.rpcConcurrency, gate: gate)
        self.provider = provider.limited(by: limits)
        self.settings = settings
    }

    /// One full tick.
    public func tick(now: Date = Date()) async -> TickReport {
        let started = Date()
        let callsBefore = await limits.calls
        var report = await observePlanAct(now: now)
        report.duration = Date().timeIntervalSince(started)
        report.calls = await limits.calls - callsBefore
        return report
    }

    /// The tick itself: observe (one list), read statuses, plan, then act under the lease.
    func observePlanAct(now: Date) async -> TickReport {
        var report = TickReport()
        gate.beginTick()
        do {
            let cid = try store.controlID()
            // 1. Observe: exactly one list. A failed list is never read as "no machines".
            let machines: [ObservedMachine]
            var observedAt = Date()
            do {
                machines = try await provider.list()
                observedAt = Date()
            } catch {
                report.observationError = error.description
                if !settings.dryRun { store.event("observe-failed", error.description) }
                return report
            }
            // A running instance's machine missing from the list is asked for by name before
            // anything is judged: a list that left out a machine that exists is not trusted.
            let desired = try store.desiredState()
            if let why = await confirmMissing(desired: desired, machines: machines, cid: cid) {
                report.observationError = why
                if !settings.dryRun { store.event("observe-failed", why) }
                return report
            }
            // A machine of a live run that the run does not know: its instance row may name a run
            // that does not exist (damage). Planning on it would make the run a second machine
            // that runs the command again.
            if let damage = try strayInstance(desired: desired, machines: machines, cid: cid) {
                report.observationError = damage.description
                if !settings.dryRun { store.event("observe-failed", damage.description) }
                return report
            }
            // Open intents: a live process's are planning input (its machines are in flight);
            // a dead one's are resolved against the list (closed, when acting).
            let inFlight = try resolveIntents(observed: machines)
            // 2. Read statuses: from the host channel (no orbctl call), else by probing.
            let probes = try await readStatuses(desired: desired, machines: machines, cid: cid, now: now, channelError: &report.channelError)
            // 3. Plan: a pure function.
            let whitelist = Set(try store.whitelist(now: now).map(\.name))
            let planner = PlannerSettings(
                controlID: cid, orphanGrace: settings.orphanGrace,
                includeForeign: settings.includeForeign, whitelist: whitelist)
            let plan = Planner.plan(
                PlanInput(
                    desired: desired, machines: machines, probes: probes,
                    inFlight: inFlight, now: now, settings: planner))
            report.plan = plan
            if settings.dryRun { return report }
            // 4. Act, only under the lease, and only on a list fresh enough to act on (a process
            // paused between the two acts on nothing; its next tick observes again).
            if let lease, !lease.confirm() {
                report.observationError = "the controller lease is no longer this process's: another process acts now"
                return report
            }
            if Date().timeIntervalSince(observedAt) > settings.staleAfter {
                report.observationError =
                    "the machine list is \(Int(Date().timeIntervalSince(observedAt))) s old (was this process paused?); acting on nothing until the next tick"
                return report
            }
            // An orphan whose instance row exists but names no run is a damaged store, not an
            // orphan: nothing is deleted on it.
            for case .delete(let machine, .orphan) in plan.actions {
                if let damage = try store.strayInstance(machine.instanceID) {
                    report.observationError = "\(store.path): \(damage.description)"
                    return report
                }
            }
            syncLimits(desired: desired, cid: cid)
            try await act(plan.actions, desired: desired, machines: machines, report: &report, now: now)
            report.breaker = try store.breaker(now: now)
            // 5. History off the hot path: runs with nothing left to do are archived, judged on
            // this tick's observation and its plan as made before acting (a run acted on now
            // is judged again next tick).
            let settled = Planner.settledRuns(
                desired, machines: machines, plan: plan, controlID: cid, now: now,
                settleTime: settings.archiveAfter)
            report.archived = try store.archive(settled, controlID: cid)
        } catch {
            report.observationError = "\(error)"
        }
        return report
    }

    /// Closes intents left by a process that died mid-action. A create whose machine
    /// exists is adopted (the planner sees it as the instance's machine); one whose
    /// machine does not exist never happened and is planned again.
    /// Returns the machines of intents whose process is alive: another actor's actions in
    /// flight, never acted on or closed. A dry run writes nothing: it plans as if the dead
    /// ones were resolved.
    func resolveIntents(observed: [ObservedMachine]) throws(StoreError) -> Set<String> {
        let names = Set(observed.map(\.name))
        var inFlight: Set<String> = []
        for intent in try store.openIntents() {
            if intent.pid != getpid() && Store.isAlive(intent.pid) {
                inFlight.insert(intent.machine)
                continue
            }
            guard !settings.dryRun else { continue }
            let outcome = names.contains(intent.machine) ? "machine exists: adopted" : "machine absent: will be planned again"
            store.event("intent-resolved", machine: intent.machine, "\(intent.action) interrupted; \(outcome)")
            try store.closeIntent(intent.id)
        }
        return inFlight
    }

    /// Confirms, by name, the machines of started instances that the list left out or shows
    /// stopped while their command has not ended: a run is failed on what its machine says of
    /// itself, never on one list. Returns why the list cannot be trusted when one of them is
    /// not as listed (OrbStack restarting answers `[]` for a moment), or could not be asked;
    /// `nil` when every one is confirmed.
    func confirmMissing(desired: DesiredState, machines: [ObservedMachine], cid: ControlID) async -> String? {
        let listed = Dictionary(machines.map { ($0.name, $0.state) }, uniquingKeysWith: { first, _ in first })
        var doubted: [(name: MachineName, listed: MachineState?)] = []
        for run in desired.runs {
            for instance in run.instances where run.wants(instance) && (instance.phase == .bootstrapping || instance.phase == .running) {
                let name = MachineName(controlID: cid, manifestID: run.id, instanceID: instance.id)
                switch listed[name.description] {
                case nil: doubted.append((name, nil))
                case .stopped? where settings.channel?.status(name.description)?.isFinal != true: doubted.append((name, .stopped))
                default: break
                }
            }
        }
        guard !doubted.isEmpty else { return nil }
        let provider = self.provider
        // A batch at a time: the first batch of a lying list already finds a machine.
        var start = 0
        while start < doubted.count {
            let batch = Array(doubted[start..<min(doubted.count, start + max(1, settings.concurrency))])
            // (Answers as plain values: a tuple holding a `Result` with a typed error, returned
            // from a task group's child, crashed optimized builds in the task group's copy.)
            let answers = await Self.forEach(batch.map(\.name), concurrency: batch.count) { name -> StateAnswer in
                do {
                    return StateAnswer(name: name, state: try await provider.state(name: name), failure: nil)
                } catch {
                    return StateAnswer(name: name, state: nil, failure: "\(error)")
                }
            }
            for (answer, doubt) in zip(answers, batch) {
                let what = doubt.listed == nil ? "left out \(answer.name)" : "showed \(answer.name) stopped"
                if let failure = answer.failure {
                    return "orbctl list \(what), and asking for it failed (\(failure)): the list is not trusted this tick"
                }
                if answer.state != doubt.listed {
                    let missing = doubted.filter { $0.listed == nil }.count
                    let said = answer.state.map { "it is \($0)" } ?? "it does not exist"
                    return
                        "orbctl list \(what), but \(said)\(missing > 0 ? " (\(missing) running machine\(missing == 1 ? "" : "s") missing from the list)" : ""): the list is not trusted this tick"
                }
            }
            start += batch.count
        }
        return nil
    }

    /// The damage behind a listed machine of ours whose run is live but does not have its
    /// instance: an instance row that names another run (nil when every such row is whole,
    /// or the machine is an ordinary orphan of a retired instance).
    func strayInstance(desired: DesiredState, machines: [ObservedMachine], cid: ControlID) throws(StoreError) -> StoreError? {
        let runs = Dictionary(desired.runs.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        for machine in machines {
            guard let name = MachineName(parsing: machine.name), name.controlID == cid, let manifest = name.manifestID,
                let run = runs[RunID(manifest)], !run.instances.contains(where: { $0.id == name.instanceID })
            else { continue }
            if let damage = try store.strayInstance(name.instanceID) { return damage }
        }
        return nil
    }

    /// What `info` said of a machine the list left out or showed stopped.
    struct StateAnswer: Sendable {
        var name: MachineName
        var state: MachineState?
        var failure: String?
    }

    /// Each unfinished instance's status. The host channel is read for all (a local file);
    /// only a running machine without it is probed (`orbctl run`), at most once per interval,
    /// backed off for long commands, and always once its deadline has passed (so that a
    /// command that ended in time is never judged by the clock alone).
    func readStatuses(
        desired: DesiredState, machines: [ObservedMachine], cid: ControlID, now: Date, channelError: inout String?
    ) async throws(StoreError) -> [String: ProbeResult] {
        let running = Set(machines.filter { $0.state == .running }.map(\.name))
        let channel = settings.channel
        var probes: [String: ProbeResult] = [:]
        var last: [InstanceID: Date]?
        var targets: [(InstanceID, MachineName)] = []
        var maxDurations: [String: TimeInterval] = [:]
        let (mirrored, failure) = await mirrorChannel(desired: desired, machines: machines, cid: cid)
        channelError = failure
        for run in desired.runs {
            for instance in run.instances where run.wants(instance) && !instance.phase.isTerminal {
                let machine = MachineName(controlID: cid, manifestID: run.id, instanceID: instance.id)
                let name = machine.description
                maxDurations[name] = run.manifest.maxDuration?.seconds
                if let channel, var status = channel.status(name) {
                    // A running machine's own status file is the source of truth: an end the
                    // channel shows (which anything on the Mac could have written) is confirmed
                    // by reading the machine, once, before anything is judged by it.
                    if status.isFinal, running.contains(name), !settings.dryRun, !mirrored, instance.phase >= .bootstrapping {
                        targets.append((instance.id, machine))
                        continue
                    }
                    // The command still runs, says the status; its heartbeat says whether the
                    // wrapper does. A stale one is only a reason to look: the machine is asked
                    // whether the watch loop's process still exists (gone after a restart; alive
                    // after a Mac slept, when every clock jumps), at most once per interval.
                    if !status.isFinal, running.contains(name), !settings.dryRun, let started = instance.startedAt,
                        now.timeIntervalSince(started) > settings.heartbeatTimeout,
                        let beat = channel.heartbeat(name), now.timeIntervalSince(beat) > settings.heartbeatTimeout
                    {
                        if last == nil { last = try store.lastProbes() }
                        if let at = last?[instance.id], now.timeIntervalSince(at) < max(settings.probeInterval, settings.heartbeatTimeout / 3) {
                            probes[name] = status
                        } else {
                            targets.append((instance.id, machine))
                        }
                        continue
                    }
                    probes[name] = status
                    continue
                }
                // A dry run reads the channel only: probing is an orbctl call, and recording it a write.
                guard !settings.dryRun, instance.phase == .bootstrapping || (instance.phase == .running && run.manifest.command != nil),
                    let started = instance.startedAt
                else { continue }
                // Never probe a stopped machine: `orbctl run` would start it.
                guard running.contains(name) else { continue }
                let pastDeadline = run.manifest.maxDuration.map { now >= started.adding($0) } ?? false
                // The mirrored channel was just read whole: a machine without a status there has
                // none to give yet, but its end is asked for (its final status may be on the way).
                if mirrored && !pastDeadline { continue }
                if !pastDeadline {
                    if last == nil { last = try store.lastProbes() }
                    let interval = max(settings.probeInterval, min(60, now.timeIntervalSince(started) / 10))
                    if let at = last?[instance.id], now.timeIntervalSince(at) < interval { continue }
                }
                targets.append((instance.id, machine))
            }
        }
        let provider = self.provider
        let results = await Self.forEach(targets, concurrency: settings.concurrency) { target -> (InstanceID, MachineName, ProbeResult?) in
            (target.0, target.1, try? await provider.probe(name: target.1))
        }
        for (instance, name, result) in results {
            try store.recordProbe(instance: instance, at: now)
            if let result { probes[name.description] = result }
        }
        // A command that ended after its deadline (it outlived the wrapper's watch loop) did
        // not end in time, however late this tick reads it.
        if let channel {
            for (name, status) in probes {
                guard case .exited = status, let max = maxDurations[name] ?? nil else { continue }
                let times = channel.times(name)
                if let launched = times["launched"], let ended = times["ended"], ended - launched > max + 1 { probes[name] = .timedOut }
            }
        }
        return probes
    }

    /// For a provider whose machines write their channel elsewhere (EC2's, to S3), brings the
    /// host's copy up to date for every unfinished instance: one listing, and only what
    /// changed. A machine listed or not: one that ended itself (the dead man's switch
    /// terminates an instance) left its final status and whole output there (found by
    /// attacking). Whether the provider mirrors its channel (a failed read is an event, and the
    /// copy stays as it was).
    func mirrorChannel(desired: DesiredState, machines: [ObservedMachine], cid: ControlID) async -> (Bool, String?) {
        guard let channel = settings.channel, !settings.dryRun else { return (false, nil) }
        let listed = Set(machines.map(\.name))
        var marks: Set<MachineName> = []
        for run in desired.runs {
            // A status is awaited until the command ends (a machine without one has none to give).
            for instance in run.instances
            where run.wants(instance) && (instance.phase < .running || (instance.phase == .running && run.manifest.command != nil)) {
                let machine = MachineName(controlID: cid, manifestID: run.id, instanceID: instance.id)
                if listed.contains(machine.description) || instance.startedAt != nil { marks.insert(machine) }
            }
        }
        guard !marks.isEmpty else { return (false, nil) }
        do {
            guard let failed = try await channel.refresh(Array(marks), from: provider) else { return (false, nil) }
            for (machine, why) in failed { store.event("channel-failed", "\(machine): cannot write the host's copy of its channel: \(why)") }
            return (true, failed.isEmpty ? nil : "cannot write the host's copy of \(failed.count) channel(s)")
        } catch {
            store.event("channel-failed", error.description)
            return (true, "the status channel cannot be read: \(error.description)")
        }
    }

    /// Brings `maxDuration` and `hold` changed in place to the running wrappers, through the
    /// channel's `limits` file (a local write, only when it differs).
    func syncLimits(desired: DesiredState, cid: ControlID) {
        guard let channel = settings.channel else { return }
        for run in desired.runs {
            let limits = RunLimits.text(maxDuration: run.manifest.maxDuration?.seconds, hold: run.manifest.hold.seconds)
            for instance in run.instances where run.wants(instance) && instance.startedAt != nil && !instance.logsCollected {
                channel.syncLimits(MachineName(controlID: cid, manifestID: run.id, instanceID: instance.id).description, limits: limits)
            }
        }
    }

    /// Runs `body` over `items` with at most `concurrency` at once, keeping the order of results.
    static func forEach<T: Sendable, R: Sendable>(_ items: [T], concurrency: Int, _ body: @escaping @Sendable (T) async -> R) async -> [R] {
        guard !items.isEmpty else { return [] }
        return await withTaskGroup(of: (Int, R).self) { group in
            var results = [R?](repeating: nil, count: items.count)
            var next = 0
            for _ in 0..<min(max(1, concurrency), items.count) {
                let i = next
                group.addTask { (i, await body(items[i])) }
                next += 1
            }
            for await (i, r) in group {
                results[i] = r
                if next < items.count {
                    let j = next
                    group.addTask { (j, await body(items[j])) }
                    next += 1
                }
            }
            return results.map { $0! }
        }
    }
}
