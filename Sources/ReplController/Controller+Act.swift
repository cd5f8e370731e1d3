import Foundation
import OrbStack
import ReplCore
import ReplPlatform
import ReplStore

/// Acting on a plan: admission, then each machine's actions in order, each behind an intent.
extension Controller {
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
        var groups: [MachineName: [Action]] = [:]
        var order: [MachineName] = []
        for action in actions {
            guard let machine = action.machine else { continue }
            if groups[machine] == nil { order.append(machine) }
            groups[machine, default: []].append(action)
        }
        let admission = Admission(backoffs: try store.backoffs(), breakers: try store.breakers(now: now))
        gate.load(admission.breakers)
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
        let scope = action.capacityScope
        if let error, error.isExhaustion {
            if let breaker = try gate.exhausted(scope: scope, began: began, message: error.message, store: store) {
                let what = error.kind == .addressExhausted ? "address pool exhausted" : "no capacity: \(error.message)"
                let advice = error.kind == .addressExhausted ? ProviderError.resetAdvice : "the breaker retries by itself"
                store.event(
                    "breaker-open", machine: action.machine?.description,
                    "\(what); no creates\(scope.isEmpty ? "" : " of \(scope)") until \(breaker.openUntil!); \(advice)")
            }
        } else if error == nil, Admission.needsAddress(action), try gate.succeeded(scope: scope, began: began, store: store) {
            store.event("breaker-closed", machine: action.machine?.description, "a create succeeded; \(Admission.name(scope)) closed")
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
            let name = machine.description  // as the store and the channel keep it
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
                    store.event("skipped", machine: name, run: run, "\(action) not done: the run was cancelled or changed after this tick read it")
                    break
                }
                let intent = try store.openIntent(machine: name, action: "\(action)")
                Self.crashPoint("after-intent", action)
                let began = Date()
                do {
                    try await execute(action, runs: runs, states: states)
                    Self.crashPoint("after-call", action)
                    do {
                        try store.complete(action, intent: intent, machine: name, event: Self.kind(action))
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
                    if case .delete = action { settings.channel?.remove(name) }
                    if case .collectLogs = action, states[name] == nil { settings.channel?.remove(name) }
                    outcomes.append((action, nil))
                    onOutcome?(action, nil)
                } catch {
                    let error = (error as? ProviderError) ?? ProviderError(.failed, "\(error)")
                    try store.closeIntent(intent)
                    if error.kind == .heldBack {
                        outcomes.append((action, error))
                        break
                    }
                    try recordFailure(action, machine: name, began: began, error: error)
                    // A machine that cannot be made as asked (an image that does not exist): the
                    // instance fails with the engine's message instead of retrying for ever.
                    if error.kind == .invalid, case let .create(run, instance, _, _) = action {
                        try store.record(.markPhase(run: run, instance: instance, phase: .failed, exitCode: nil, reason: error.message))
                    }
                    store.event("error", machine: name, run: action.instance?.run, "\(action) failed: \(error.description)")
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
            try await provider.create(name: machine, spec: spec, options: options)
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
                payload.channel = try? settings.channel?.prepare(
                    machine.description, limits: RunLimits.text(maxDuration: payload.remaining, hold: payload.hold))
            }
            // Files first: the bootstrap builds on them.
            try await copyFiles(run.manifest.files, into: machine)
            try await provider.startRun(name: machine, payload: payload)
        case let .collectLogs(run, instance, machine):
            guard let run = runs[run] else { return }
            try await collectLogs(run: run.manifest.name, instance: instance, machine: machine, state: states[machine.description])
            if !run.manifest.artifacts.isEmpty {
                await collectArtifacts(run: run, instance: instance, machine: machine, state: states[machine.description])
            }
        case let .delete(machine, _):
            try await provider.delete(name: machine)
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
}

/// The circuit breakers as the actions of one tick see them (one per capacity scope), shared
/// by them as they run, and the gate each call to the engine passes once it holds its permit.
final class BreakerGate: CallGate, @unchecked Sendable {
    private let lock = NSLock()
    private var breakers: [String: Breaker] = [:]
    /// Scopes where an exhaustion was seen and is not yet recorded: shut at once.
    private var shut: Set<String> = []
    /// Why no further action starts this tick (the engine is not usable), once one found it.
    private var ended: String?

    func load(_ breakers: [String: Breaker]) {
        lock.withLock {
            self.breakers = breakers; shut = []
        }
    }
    /// A new tick: whatever ended the last one is asked again.
    func beginTick() { lock.withLock { ended = nil } }

    func endTick(_ why: String) { lock.withLock { ended = ended ?? why } }
    var endedTick: String? { lock.withLock { ended } }

    /// Why a call taking capacity in `scope` must not go now, or nil.
    func refusal(scope: String, at now: Date) -> String? {
        lock.withLock {
            (breakers[scope] ?? .closed).isOpen(at: now) || shut.contains(scope) ? Admission.openReason(scope) : nil
        }
    }

    /// A call of an ended tick is not made; an address-taking one waits out an open breaker.
    func refusal(for lane: CallLane, scope: String, at now: Date) -> String? {
        if let why = endedTick { return "not attempted this tick: \(why)" }
        return lane == .addressTaking ? refusal(scope: scope, at: now) : nil
    }

    /// An unusable engine ends the tick, an exhaustion shuts its scope, before the failed
    /// call's permit goes to a call that waits for it.
    func failed(_ lane: CallLane, scope: String, _ error: ProviderError) {
        if let why = Admission.endsTheTick(error) { endTick(why) }
        if error.isExhaustion { lock.withLock { _ = shut.insert(scope) } }
    }

    /// Trips the breaker of `scope`, unless this failure belongs to the episode that tripped it
    /// (the call began before the trip, or while it was open). Returns the breaker when it tripped.
    func exhausted(scope: String, began: Date, message: String, store: Store) throws(StoreError) -> Breaker? {
        lock.lock()
        defer { lock.unlock() }
        let breaker = breakers[scope] ?? .closed
        if let tripped = breaker.trippedAt, began < tripped { return nil }
        if breaker.isOpen(at: began) { return nil }
        let next = Admission.trip(breaker, message: message, now: Date())
        try store.saveBreaker(next, scope: scope)
        breakers[scope] = next
        return next
    }

    /// Closes the breaker of `scope` after a success that began after its trip. Returns whether it closed.
    func succeeded(scope: String, began: Date, store: Store) throws(StoreError) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard let breaker = breakers[scope], breaker.failures > 0 else { return false }
        if let tripped = breaker.trippedAt, began <= tripped { return false }
        try store.resetBreaker(scope: scope)
        breakers[scope] = nil
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
