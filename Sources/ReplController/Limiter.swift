import Foundation
import ReplCore

/// At most `permits` provider calls in flight at once (`--concurrency`).
public actor CallLimiter {
    private var available: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []
    /// Provider calls made so far (for the watch view's "orbctl calls per tick").
    public private(set) var calls = 0

    public init(permits: Int) { available = max(1, permits) }

    func acquire() async {
        if available > 0 {
            available -= 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty { available += 1 } else { waiters.removeFirst().resume() }
    }

    func run<T: Sendable>(_ body: @Sendable () async throws(ProviderError) -> T) async throws(ProviderError) -> T {
        calls += 1
        await acquire()
        do {
            let value = try await body()
            release()
            return value
        } catch {
            release()
            throw error
        }
    }
}

/// A provider whose every call goes through a ``CallLimiter``. Multi-step operations
/// (a delete's stop, grace and delete) are limited step by step by the provider
/// beneath only where it calls back here, so here each operation holds one permit
/// only while it talks to OrbStack.
struct LimitedProvider: Provider {
    let base: any Provider
    let limiter: CallLimiter
    /// Calls that boot or copy nothing (list, info, run, stop, delete) go through their own,
    /// wider limiter.
    var rpc: CallLimiter
    /// Asked once a call that takes an address (create, clone, start) holds its permit, just
    /// before it goes to OrbStack: why it must not go now, or nil.
    var gate: BreakerGate?

    /// Runs a call under `limiter`: once it holds a permit, a call of a tick that has ended
    /// (orbctl found unusable meanwhile) is not made.
    func limited<T: Sendable>(_ limiter: CallLimiter, _ body: @Sendable () async throws(ProviderError) -> T) async throws(ProviderError) -> T {
        try await limiter.run { () async throws(ProviderError) -> T in
            if let why = gate?.endedTick { throw ProviderError(.heldBack, "not attempted this tick: \(why)") }
            do throws(ProviderError) {
                return try await body()
            } catch {
                // Ended before the permit goes to a call that waits for it.
                if let why = Admission.endsTheTick(error) { gate?.endTick(why) }
                throw error
            }
        }
    }

    /// Throws `heldBack` when the gate says no: the breaker opened while the call waited.
    func admit() throws(ProviderError) {
        if let why = gate?.refusal(at: Date()) { throw ProviderError(.heldBack, why) }
    }

    /// Runs an address-taking call: admitted first, and an exhaustion shuts the gate before
    /// the permit goes to the next call.
    func takingAddress(_ body: () async throws(ProviderError) -> Void) async throws(ProviderError) {
        try admit()
        do {
            try await body()
        } catch {
            if error.kind == .addressExhausted { gate?.sawExhaustion() }
            throw error
        }
    }

    var capabilities: ProviderCapabilities { base.capabilities }
    func list() async throws(ProviderError) -> [ObservedMachine] {
        try await limited(rpc) { () async throws(ProviderError) in try await base.list() }
    }
    func create(name: String, spec: Spec, options: MachineOptions) async throws(ProviderError) {
        try await limited(limiter) { () async throws(ProviderError) in
            try await takingAddress { () async throws(ProviderError) in try await base.create(name: name, spec: spec, options: options) }
        }
    }
    func clone(snapshot: String, name: String) async throws(ProviderError) {
        try await limited(limiter) { () async throws(ProviderError) in
            try await takingAddress { () async throws(ProviderError) in try await base.clone(snapshot: snapshot, name: name) }
        }
    }
    func start(name: String) async throws(ProviderError) {
        try await limited(limiter) { () async throws(ProviderError) in
            try await takingAddress { () async throws(ProviderError) in try await base.start(name: name) }
        }
    }
    func stop(name: String) async throws(ProviderError) {
        try await limited(rpc) { () async throws(ProviderError) in try await base.stop(name: name) }
    }
    func snapshot(source: String, name: String) async throws(ProviderError) {
        try await limited(limiter) { () async throws(ProviderError) in try await base.snapshot(source: source, name: name) }
    }
    func startRun(name: String, payload: RunPayload) async throws(ProviderError) {
        try await limited(rpc) { () async throws(ProviderError) in try await base.startRun(name: name, payload: payload) }
    }
    func exists(name: String) async throws(ProviderError) -> Bool {
        try await limited(rpc) { () async throws(ProviderError) in try await base.exists(name: name) }
    }
    func probe(name: String) async throws(ProviderError) -> ProbeResult {
        try await limited(rpc) { () async throws(ProviderError) in try await base.probe(name: name) }
    }
    func logs(name: String, bootstrap: Bool, from offset: Int) async throws(ProviderError) -> Data {
        try await limited(rpc) { () async throws(ProviderError) in try await base.logs(name: name, bootstrap: bootstrap, from: offset) }
    }
    func pushArchive(name: String, archive: Data, to directory: String) async throws(ProviderError) {
        try await limited(limiter) { () async throws(ProviderError) in try await base.pushArchive(name: name, archive: archive, to: directory) }
    }
    func pushFile(name: String, data: Data, to path: String) async throws(ProviderError) {
        try await limited(limiter) { () async throws(ProviderError) in try await base.pushFile(name: name, data: data, to: path) }
    }
    func pullArchive(name: String, globs: [String]) async throws(ProviderError) -> (archive: Data, unmatched: [String]) {
        try await limited(limiter) { () async throws(ProviderError) in try await base.pullArchive(name: name, globs: globs) }
    }
    func isolation(name: String) async throws(ProviderError) -> Bool? {
        try await limited(rpc) { () async throws(ProviderError) in try await base.isolation(name: name) }
    }
    func manifestCopy(name: String) async throws(ProviderError) -> String? {
        try await limited(rpc) { () async throws(ProviderError) in try await base.manifestCopy(name: name) }
    }
    func address(name: String) async throws(ProviderError) -> String? {
        try await limited(rpc) { () async throws(ProviderError) in try await base.address(name: name) }
    }

    /// A delete is stop, grace, delete: the grace is spent without a permit.
    func delete(name: String) async throws(ProviderError) {
        try await limited(rpc) { () async throws(ProviderError) in try await base.stopBeforeDelete(name: name) }
        if base.deleteGrace > 0 { try? await Task.sleep(nanoseconds: UInt64(base.deleteGrace * 1e9)) }
        try await limited(rpc) { () async throws(ProviderError) in try await base.deleteStopped(name: name) }
    }
    var deleteGrace: TimeInterval { base.deleteGrace }
    func stopBeforeDelete(name: String) async throws(ProviderError) {
        try await limited(rpc) { () async throws(ProviderError) in try await base.stopBeforeDelete(name: name) }
    }
    func deleteStopped(name: String) async throws(ProviderError) {
        try await limited(rpc) { () async throws(ProviderError) in try await base.deleteStopped(name: name) }
    }
}
