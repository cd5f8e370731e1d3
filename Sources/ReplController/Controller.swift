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

    public var failed: Bool { observationError != nil || outcomes.contains { $0.error != nil } }
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

    let limiter: CallLimiter
    let rpcLimiter: CallLimiter
    let gate = BreakerGate()

    public init(store: Store, provider: any Provider, settings: ControllerSettings) {
        self.store = store
        limiter = CallLimiter(permits: settings.concurrency)
        rpcLimiter = CallLimiter(permits: settings.rpcConcurrency)
        self.provider = LimitedProvider(base: provider, limiter: limiter, rpc: rpcLimiter, gate: gate)
        self.settings = settings
    }

    /// One full tick.
    public func tick(now: Date = Date()) async -> TickReport {
        let started = Date()
        let callsBefore = await limiter.calls + rpcLimiter.calls
        var report = await tickBody(now: now)
        report.duration = Date().timeIntervalSince(started)
        report.calls = await limiter.calls + rpcLimiter.calls - callsBefore
        return report
    }

    func tickBody(now: Date) async -> TickReport {
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
            // Open intents: a live process's are planning input (its machines are in flight);
            // a dead one's are resolved against the list (closed, when acting).
            let inFlight = try resolveIntents(observed: machines)
            // 2. Read statuses: from the host channel (no orbctl call), else by probing.
            let probes = try await readStatuses(desired: desired, machines: machines, cid: cid, now: now)
            // 3. Plan: a pure function.
            let whitelist = Set(try store.whitelist(now: now).map(\.name))
            let planner = PlannerSettings(
                controlID: cid, orphanGrace: settings.orphanGrace,
                includeForeign: settings.includeForeign, whitelist: whitelist)
            let plan = Planner.plan(
                PlanInput(
                    desired: desired, observation: .machines(machines), probes: probes,
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
                if let name = MachineName(parsing: machine), let damage = try store.strayInstance(name.instanceID) {
                    report.observationError = "\(store.path): \(damage.description)"
                    return report
                }
            }
            syncLimits(desired: desired, cid: cid)
            try await act(plan.actions, desired: desired, machines: machines, report: &report, now: now)
            report.breaker = try store.breaker()
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

    /// Confirms, by name, the machines of started instances that the list left out. Returns why
    /// the list cannot be trusted when one of them exists after all (OrbStack restarting answers
    /// `[]` for a moment), or could not be asked; `nil` when every one is confirmed gone.
    func confirmMissing(desired: DesiredState, machines: [ObservedMachine], cid: ControlID) async -> String? {
        let listed = Set(machines.map(\.name))
        var missing: [String] = []
        for run in desired.runs {
            for instance in run.instances where run.wants(instance) && (instance.phase == .bootstrapping || instance.phase == .running) {
                let name = MachineName(controlID: cid, manifestID: run.id, instanceID: instance.id).description
                if !listed.contains(name) { missing.append(name) }
            }
        }
        guard !missing.isEmpty else { return nil }
        let provider = self.provider
        // A batch at a time: the first batch of a lying list already finds a machine.
        var start = 0
        while start < missing.count {
            let batch = Array(missing[start..<min(missing.count, start + max(1, settings.concurrency))])
            // (Answers as plain values: a tuple holding a `Result` with a typed error, returned
            // from a task group's child, crashed optimized builds in the task group's copy.)
            let answers = await Self.forEach(batch, concurrency: batch.count) { name -> ExistsAnswer in
                do {
                    return ExistsAnswer(name: name, exists: try await provider.exists(name: name), failure: nil)
                } catch {
                    return ExistsAnswer(name: name, exists: false, failure: "\(error)")
                }
            }
            for answer in answers {
                if let failure = answer.failure {
                    return "orbctl list left out \(answer.name), and asking for it failed (\(failure)): the list is not trusted this tick"
                }
                if answer.exists {
                    return
                        "orbctl list left out \(answer.name), which exists (\(missing.count) running machine\(missing.count == 1 ? "" : "s") missing from it): the list is not trusted this tick"
                }
            }
            start += batch.count
        }
        return nil
    }

    /// What `info` said of a machine the list left out.
    struct ExistsAnswer: Sendable {
        var name: String
        var exists: Bool
        var failure: String?
    }

    /// Each unfinished instance's status. The host channel is read for all (a local file);
    /// only a running machine without it is probed (`orbctl run`), at most once per interval,
    /// backed off for long commands, and always once its deadline has passed (so that a
    /// command that ended in time is never judged by the clock alone).
    func readStatuses(desired: DesiredState, machines: [ObservedMachine], cid: ControlID, now: Date) async throws(StoreError) -> [String: ProbeResult]
    {
        let running = Set(machines.filter { $0.state == .running }.map(\.name))
        let channel = settings.channel
        var probes: [String: ProbeResult] = [:]
        var last: [InstanceID: Date]?
        var targets: [(InstanceID, String)] = []
        var maxDurations: [String: TimeInterval] = [:]
        for run in desired.runs {
            for instance in run.instances where run.wants(instance) && !instance.phase.isTerminal {
                let name = MachineName(controlID: cid, manifestID: run.id, instanceID: instance.id).description
                maxDurations[name] = run.manifest.maxDuration?.seconds
                if let channel, var status = channel.status(name) {
                    // A running machine's own status file is the source of truth: an end the
                    // channel shows (which anything on the Mac could have written) is confirmed
                    // by reading the machine, once, before anything is judged by it.
                    if status.isFinal, running.contains(name), !settings.dryRun, instance.phase >= .bootstrapping {
                        targets.append((instance.id, name))
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
                            targets.append((instance.id, name))
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
                if !pastDeadline {
                    if last == nil { last = try store.lastProbes() }
                    let interval = max(settings.probeInterval, min(60, now.timeIntervalSince(started) / 10))
                    if let at = last?[instance.id], now.timeIntervalSince(at) < interval { continue }
                }
                targets.append((instance.id, name))
            }
        }
        let provider = self.provider
        let results = await Self.forEach(targets, concurrency: settings.concurrency) { target -> (InstanceID, String, ProbeResult?) in
            (target.0, target.1, try? await provider.probe(name: target.1))
        }
        for (instance, name, result) in results {
            try store.recordProbe(instance: instance, at: now)
            if let result { probes[name] = result }
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

    func act(_ actions: [Action], desired: DesiredState, machines: [ObservedMachine], report: inout TickReport, now: Date) async throws(StoreError) {
        // Store-only actions first, in order: they are the bookkeeping the machine actions rely on.
        for action in actions where action.machine == nil {
            try store.record(action, now: now)
            if case let .markPhase(run, instance, phase, code, reason) = action {
                store.event(
                    "phase", run: run,
                    "instance \(Base36.encode(instance)) is \(phase.rawValue)\(code.map { " (exit \($0))" } ?? "")\(reason.map { ": \($0)" } ?? "")")
            }
        }
        // Machine actions grouped per machine, in order; groups run concurrently.
        var groups: [String: [Action]] = [:]
        var order: [String] = []
        for action in actions {
            guard let machine = action.machine else { continue }
            if groups[machine] == nil { order.append(machine) }
            groups[machine, default: []].append(action)
        }
        let admission = Admission(backoffs: try store.backoffs(), breaker: try store.breaker())
        gate.load(admission.breaker)
        let groupsInOrder = order.map { groups[$0]! }
        var runnable: [[Action]] = []
        for (group, verdict) in zip(groupsInOrder, admission.admit(groupsInOrder, now: now)) {
            switch verdict {
            case .run: runnable.append(group)
            case .defer(let why): for a in group { report.deferred.append((a, why)) }
            }
        }
        let runsByID = Dictionary(uniqueKeysWithValues: desired.runs.map { ($0.id, $0) })
        let states = Dictionary(machines.map { ($0.name, $0.state) }, uniquingKeysWith: { a, _ in a })
        // Every group runs at once; what is bounded is orbctl calls in flight (the limiter), so a
        // delete's grace between stop and delete does not hold a slot.
        let results = await Self.forEach(runnable, concurrency: max(1, runnable.count)) { group in
            await self.perform(group, runs: runsByID, states: states)
        }
        for outcomes in results {
            for (action, error) in outcomes {
                // Held back (the breaker opened while it waited for its turn): not attempted.
                if let error, error.kind == .heldBack {
                    report.deferred.append((action, error.message))
                } else {
                    report.outcomes.append((action, error))
                }
            }
        }
    }

    /// The breaker's part of an action's outcome, as it happens (so the rest of the tick sees
    /// it): an exhaustion trips it once per episode; a success closes it only if it began after
    /// the trip.
    func recordForBreaker(_ action: Action, began: Date, error: ProviderError?) throws(StoreError) {
        if let error, error.kind == .addressExhausted {
            if let breaker = try gate.exhausted(began: began, message: error.message, store: store) {
                store.event(
                    "breaker-open", machine: action.machine,
                    "address pool exhausted; no creates until \(breaker.openUntil!); \(ProviderError.resetAdvice)")
            }
        } else if error == nil, Admission.needsAddress(action), try gate.succeeded(began: began, store: store) {
            store.event("breaker-closed", machine: action.machine, "a create succeeded; circuit breaker closed")
        }
    }

    /// A failed action's consequence, as ``Admission`` decides it: the machine backs off, the
    /// breaker trips, or the tick ends (no further action of it starts).
    func recordFailure(_ action: Action, machine: String, began: Date, error: ProviderError) throws(StoreError) {
        switch Admission(backoffs: try store.backoffs(), breaker: .closed).reaction(to: error, machine: machine, now: Date()) {
        case .backOff(let backoff): try store.saveBackoff(machine: machine, backoff)
        case .exhaustion: try recordForBreaker(action, began: began, error: error)
        case .endTick(let why): gate.endTick(why)
        case .none: break
        }
    }

    /// Carries out one machine's actions in order, stopping at the first failure.
    func perform(_ group: [Action], runs: [RunID: DesiredRun], states: [String: MachineState] = [:]) async -> [(Action, ProviderError?)] {
        var outcomes: [(Action, ProviderError?)] = []
        for action in group {
            let machine = action.machine!
            if let lease, !lease.isHeld {
                outcomes.append((action, ProviderError(.heldBack, "the controller lease was lost: another process acts now")))
                break
            }
            if let why = gate.endedTick {
                outcomes.append((action, ProviderError(.heldBack, "not attempted this tick: \(why)")))
                break
            }
            do {
                // The plan is as old as the tick: a run cancelled, deleted or replaced since (by
                // `run cancel`, `delete`, `apply` in another process) gets no new machine and no
                // command. The next tick removes what it has.
                if action.startsSomething, let (run, instance) = action.instance, try !store.isWanted(run: run, instance: instance) {
                    store.event("skipped", machine: machine, run: run, "\(action) not done: the run was cancelled or changed after this tick read it")
                    break
                }
                let intent = try store.openIntent(machine: machine, action: "\(action)")
                Self.crashPoint("after-intent", action)
                let began = Date()
                do {
                    try await execute(action, runs: runs, states: states)
                    Self.crashPoint("after-call", action)
                    do {
                        try store.complete(action, intent: intent, machine: machine, event: Self.kind(action))
                    } catch {
                        // Done in OrbStack, not recorded (a full disk, a store held too long): not a
                        // failure of the action. Its intent stays open, and the next tick resolves
                        // it from what the list shows.
                        let why = ProviderError(
                            .failed, "done, but recording it failed (\(error.description)); the next tick reads it from the machines")
                        outcomes.append((action, why))
                        onOutcome?(action, why)
                        break
                    }
                    try recordForBreaker(action, began: began, error: nil)
                    // The channel's directory goes with its machine (its logs were moved first).
                    if case .delete = action { settings.channel?.remove(machine) }
                    if case .collectLogs = action, states[machine] == nil { settings.channel?.remove(machine) }
                    outcomes.append((action, nil))
                    onOutcome?(action, nil)
                } catch {
                    let error = (error as? ProviderError) ?? ProviderError(.failed, "\(error)")
                    try store.closeIntent(intent)
                    if error.kind == .heldBack {
                        outcomes.append((action, error))
                        break
                    }
                    try recordFailure(action, machine: machine, began: began, error: error)
                    store.event("error", machine: machine, run: action.instance?.run, "\(action) failed: \(error.description)")
                    outcomes.append((action, error))
                    onOutcome?(action, error)
                    break
                }
            } catch {
                outcomes.append((action, ProviderError(.failed, "\(error)")))
                break
            }
        }
        return outcomes
    }

    /// Crash tests only: `REPL_TEST_CRASH=after-intent:create` (or `after-call:delete`, …)
    /// kills this process with SIGKILL at that point, as a power cut would.
    static func crashPoint(_ point: String, _ action: Action) {
        // REPL_TEST_CRASH_AFTER=N: killed after the Nth completed orbctl action of this process.
        if point == "after-call", let n = ProcessInfo.processInfo.environment["REPL_TEST_CRASH_AFTER"].flatMap(Int.init) {
            if crashCounter.increment() >= n { kill(getpid(), SIGKILL) }
        }
        guard let spec = ProcessInfo.processInfo.environment["REPL_TEST_CRASH"] else { return }
        let verb: String
        switch action {
        case .create: verb = "create"
        case .clone: verb = "clone"
        case .delete: verb = "delete"
        case .startRun: verb = "startRun"
        default: verb = "other"
        }
        if spec == "\(point):\(verb)" { kill(getpid(), SIGKILL) }
    }

    static func kind(_ action: Action) -> String {
        switch action {
        case .create: return "created"
        case .clone: return "cloned"
        case .start: return "started"
        case .stop: return "stopped"
        case .startRun: return "run-started"
        case .collectLogs: return "logs-collected"
        case .delete(_, .orphan): return "deleted-orphan"
        case .delete(_, .foreign): return "deleted-foreign"
        case .delete: return "deleted"
        case .takeSnapshot: return "snapshot"
        default: return "recorded"
        }
    }

    func execute(_ action: Action, runs: [RunID: DesiredRun], states: [String: MachineState] = [:]) async throws {
        switch action {
        case let .create(run, instance, machine, spec):
            try store.markRequested(instance: instance, at: Date())
            // Never without its options (an isolated machine made shared would be a surprise).
            guard let options = runs[run]?.manifest.options else {
                throw ProviderError(.failed, "run \(Base36.encode(run)) of \(machine) is not in the store")
            }
            try await provider.spawn(name: machine, spec: spec, options: options)
        case let .clone(_, instance, machine, snapshot):
            try store.markRequested(instance: instance, at: Date())
            try await provider.clone(snapshot: snapshot, name: machine)
        case let .start(machine):
            try await provider.start(name: machine)
        case let .stop(machine):
            try await provider.stop(name: machine)
        case let .startRun(run, instance, machine):
            // Read the instance fresh: it may have been added and created in this very tick.
            guard let run = runs[run], let state = try store.instance(instance) else {
                throw ProviderError(.failed, "instance \(Base36.encode(instance)) of run \(Base36.encode(run)) is not in the store")
            }
            var payload = payload(run, state)
            // The channel's directory exists before the launch; without it the run is probed. An
            // isolated machine cannot reach the Mac's files: it has none.
            if !run.manifest.options.isolated {
                payload.channel = try? settings.channel?.prepare(machine, limits: RunLimits.text(maxDuration: payload.remaining, hold: payload.hold))
            }
            // Files first: the bootstrap builds on them.
            try await copyFiles(run.manifest.files, into: machine)
            try await provider.startRun(name: machine, payload: payload)
        case let .collectLogs(run, instance, machine):
            guard let run = runs[run] else { return }
            try await collectLogs(run: run.manifest.name, instance: instance, machine: machine, state: states[machine])
            if !run.manifest.artifacts.isEmpty {
                await collectArtifacts(run: run, instance: instance, machine: machine, state: states[machine])
            }
        case let .delete(machine, _):
            try await provider.terminate(name: machine)
        case let .takeSnapshot(_, source, machine):
            try await provider.snapshot(source: source, name: machine)
        case .addInstance, .retireInstance, .markPhase:
            break
        }
    }

    func payload(_ run: DesiredRun, _ instance: InstanceState) -> RunPayload {
        let m = run.manifest
        // maxDuration counts from this launch, in the running machine (never from the create).
        var payload = RunPayload(
            command: m.command, bootstrap: m.bootstrap, env: m.env, remaining: m.maxDuration?.seconds, hold: m.hold.seconds,
            manifestYAML: ManifestCopy.text(run: run, instance: instance),
            deadlineMargin: settings.deadlineMargin, abandonedAfter: settings.abandonedAfter)
        payload.waitForCloudInit = m.options.userData != nil
        return payload
    }

    /// `files:` into the machine: a directory's contents through one tar archive (without what
    /// `exclude` names), a file as it is. A copy that fails fails the launch, which says why on
    /// the run (its last error) and is tried again.
    func copyFiles(_ files: [FileCopy], into machine: String) async throws {
        for (index, copy) in files.enumerated() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: copy.from, isDirectory: &isDirectory) else {
                throw ProviderError(.failed, "files[\(index)]: \(copy.from) does not exist (any more)")
            }
            if isDirectory.boolValue {
                let archive = try await Self.tar(directory: copy.from, exclude: copy.exclude)
                try await provider.pushArchive(name: machine, archive: archive, to: copy.to)
            } else {
                guard let data = FileManager.default.contents(atPath: copy.from) else {
                    throw ProviderError(.failed, "files[\(index)]: cannot read \(copy.from)")
                }
                try await provider.pushFile(name: machine, data: data, to: copy.to)
            }
        }
    }

    /// The host's tar (GNU on Linux, bsdtar on macOS: both read `-C`, `--exclude` and `-f -`).
    static var hostTar: String { ["/usr/bin/tar", "/bin/tar"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "tar" }

    /// A tar archive of a directory's contents. `COPYFILE_DISABLE`: no `._` AppleDouble files
    /// for macOS's extended attributes.
    /// Its entries, not `.`: an archive's `.` would give the target directory in the machine the
    /// source's mode and owner (found by attacking: `/tmp` lost its sticky bit). Empty when the
    /// directory is (the target is only made).
    static func tar(directory: String, exclude: [String]) async throws -> Data {
        var env = ProcessInfo.processInfo.environment
        env["COPYFILE_DISABLE"] = "1"
        let entries = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted().map { "./" + $0 }
        guard !entries.isEmpty else { return Data() }
        let arguments = ["-c", "-f", "-", "-C", directory] + exclude.map { "--exclude=\($0)" } + entries
        let result = try await SystemProcessRunner.run(hostTar, arguments, input: nil, timeout: 600, environment: env, limit: maxFilesArchive)
        if result.truncated {
            throw ProviderError(
                .failed,
                "cannot copy \(directory): it is more than \(maxFilesArchive >> 30) GiB; copy data that large another way (a shared path, or download it in the bootstrap)"
            )
        }
        guard result.status == 0 else { throw ProviderError(.failed, "cannot pack \(directory): \(OrbctlClient.oneLine(result.stderrText))") }
        return result.stdout
    }

    /// The largest `files` directory, as an archive held in memory on its way in.
    static let maxFilesArchive = 1 << 30

    /// `artifacts:` out of a finished instance's machine, before it goes, into
    /// `$REPL_HOME/artifacts/RUN/N/` (paths kept under it). A glob that matches nothing is a
    /// note on the run, as is a machine that cannot be read; neither fails the run.
    func collectArtifacts(run: DesiredRun, instance: InstanceID, machine: String, state: MachineState?) async {
        let number = run.number(of: instance) ?? 0
        let directory = settings.logsDirectory.deletingLastPathComponent().appendingPathComponent("artifacts")
            .appendingPathComponent(run.manifest.name).appendingPathComponent(String(number))
        // What an earlier run of this name, or an earlier generation, left here goes first.
        try? FileManager.default.removeItem(at: directory)
        guard state == .running else {
            store.event(
                "artifacts-left", machine: machine, run: run.id,
                "\(run.label(instance)): its machine \(state.map { "is \($0)" } ?? "is gone"), so its artifacts were not copied")
            return
        }
        do {
            let (archive, unmatched) = try await provider.pullArchive(name: machine, globs: run.manifest.artifacts)
            for glob in unmatched {
                store.event("artifacts-unmatched", machine: machine, run: run.id, "\(run.label(instance)): artifacts: \(glob) matched nothing")
            }
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try Data("run \(Base36.encode(run.id)) generation \(run.generation) instance \(Base36.encode(instance))\n".utf8)
                .write(to: directory.appendingPathComponent(Self.artifactsOrigin))
            guard !archive.isEmpty else { return }
            let file = directory.appendingPathComponent(".incoming.tar")
            try archive.write(to: file)
            defer { try? FileManager.default.removeItem(at: file) }
            // Files and directories only: a link a machine sent could point the next member out
            // of the directory.
            let listing = try await SystemProcessRunner.run(
                Self.hostTar, ["-t", "-v", "-f", file.path], input: nil, timeout: 600,
                environment: ProcessInfo.processInfo.environment, limit: 1 << 26)
            if listing.status != 0
                || listing.stdoutText.split(separator: "\n").contains(where: { !["-", "d"].contains($0.first.map(String.init) ?? "") })
            {
                store.event(
                    "artifacts-failed", machine: machine, run: run.id,
                    "\(run.label(instance)): its artifacts hold links or special files; none were kept")
                return
            }
            // Never outside the directory: tar drops absolute paths and `..` of what a machine sent.
            let result = try await SystemProcessRunner.run(
                Self.hostTar, ["-x", "-f", file.path, "-C", directory.path], input: nil, timeout: 600,
                environment: ProcessInfo.processInfo.environment, limit: 1 << 20)
            if result.status != 0 {
                store.event(
                    "artifacts-failed", machine: machine, run: run.id,
                    "\(run.label(instance)): cannot unpack its artifacts: \(OrbctlClient.oneLine(result.stderrText))")
            }
        } catch {
            store.event(
                "artifacts-failed", machine: machine, run: run.id,
                "\(run.label(instance)): cannot copy its artifacts: \(OrbctlClient.oneLine("\(error)"))")
        }
    }

    /// The file in each instance's artifacts directory that says which run filled it.
    public static let artifactsOrigin = ".origin"

    /// `logs/RUN-INSTANCE.log` (and `.bootstrap.log`) under the state directory.
    public static func logFile(_ directory: URL, run: String, instance: InstanceID, bootstrap: Bool = false) -> URL {
        directory.appendingPathComponent("\(run)-\(Base36.encode(instance))\(bootstrap ? ".bootstrap" : "").log")
    }

    /// Copies a finished instance's logs to `$REPL_HOME/logs` before its machine goes: moved
    /// from the host channel (no orbctl call, however large), else read from the running
    /// machine a piece at a time. A stopped machine without the channel is never started
    /// again to read it: its logs stay in it, and an event says so.
    func collectLogs(run: String, instance: InstanceID, machine: String, state: MachineState?) async throws {
        let fm = FileManager.default
        try fm.createDirectory(at: settings.logsDirectory, withIntermediateDirectories: true)
        let output = Self.logFile(settings.logsDirectory, run: run, instance: instance)
        let boot = Self.logFile(settings.logsDirectory, run: run, instance: instance, bootstrap: true)
        // The channel's copy is whole once its status there is final (the watch loop writes it
        // after the last bytes); otherwise (the channel removed meanwhile, or the loop gone) a
        // running machine is read, and what the channel has is kept only as a last resort.
        if let channel = settings.channel, channel.isInUse(machine),
            channel.status(machine)?.isFinal == true || state != .running
        {
            if channel.status(machine)?.isFinal != true {
                store.event(
                    "logs-partial", machine: machine,
                    "\(machine) \(state.map { "is \($0)" } ?? "is gone"): its logs are the host channel's copy, which may lack the last lines")
            }
            for (from, to) in [(channel.logFile(machine, bootstrap: false), output), (channel.logFile(machine, bootstrap: true), boot)] {
                try? fm.removeItem(at: to)
                // Only a regular file: never a symlink a machine planted to a file of the host.
                if StatusChannel.isRegularFile(from) {
                    do { try fm.moveItem(at: from, to: to) } catch { try fm.copyItem(at: from, to: to) }
                }
            }
            return
        }
        guard state == .running else {
            let why = state.map { "is \($0)" } ?? "is gone"
            store.event(
                "logs-left", machine: machine,
                "\(machine) \(why) and has no host channel: its logs were not read\(state == nil ? "" : ", so as not to start it again")")
            return
        }
        let data = try await provider.logs(name: machine, bootstrap: false, from: 0)
        let bootData = (try? await provider.logs(name: machine, bootstrap: true, from: 0)) ?? Data()
        try data.write(to: output)
        try bootData.write(to: boot)
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

/// The circuit breaker as the actions of one tick see it, shared by them as they run.
final class BreakerGate: @unchecked Sendable {
    private let lock = NSLock()
    private var breaker = Breaker.closed
    /// An exhaustion was seen and is not yet recorded: shut at once.
    private var shut = false
    /// Why no further action starts this tick (orbctl is not usable), once one found it.
    private var ended: String?

    func load(_ breaker: Breaker) {
        lock.withLock {
            self.breaker = breaker; shut = false
        }
    }
    /// A new tick: whatever ended the last one is asked again.
    func beginTick() { lock.withLock { ended = nil } }

    func endTick(_ why: String) { lock.withLock { ended = ended ?? why } }
    var endedTick: String? { lock.withLock { ended } }

    /// Why an address-taking call must not go now, or nil.
    func refusal(at now: Date) -> String? {
        lock.withLock { breaker.isOpen(at: now) || shut ? "circuit breaker open: \(ProviderError.resetAdvice)" : nil }
    }

    /// Shuts the gate the moment a call meets an exhausted pool (the trip is recorded after).
    func sawExhaustion() { lock.withLock { shut = true } }

    /// Trips the breaker, unless this failure belongs to the episode that tripped it (the call
    /// began before the trip, or while it was open). Returns the breaker when it tripped.
    func exhausted(began: Date, message: String, store: Store) throws(StoreError) -> Breaker? {
        lock.lock()
        defer { lock.unlock() }
        if let tripped = breaker.trippedAt, began < tripped { return nil }
        if breaker.isOpen(at: began) { return nil }
        breaker = Admission.trip(breaker, message: message, now: Date())
        try store.saveBreaker(breaker)
        return breaker
    }

    /// Closes the breaker after a success that began after its trip. Returns whether it closed.
    func succeeded(began: Date, store: Store) throws(StoreError) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard breaker.failures > 0 else { return false }
        if let tripped = breaker.trippedAt, began <= tripped { return false }
        try store.resetBreaker()
        breaker = .closed
        return true
    }
}

/// Counts completed actions for the crash hook.
final class CrashCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() -> Int { lock.lock(); defer { lock.unlock() }; count += 1; return count }
}
let crashCounter = CrashCounter()
