import Foundation

/// What kind of work one call to a provider's engine is (one orbctl process), for the limits
/// on how many run at once.
public enum CallLane: Sendable, Equatable {
    /// Boots nothing and copies nothing: `list`, `info`, `stop`, `delete`, a launch, a probe, a log read.
    case light
    /// Copies a machine or files (a snapshot's clone, files in and out).
    case heavy
    /// Boots a machine and takes an address from OrbStack's pool (create, clone, start):
    /// as heavy, and held back while the circuit breaker is open.
    case addressTaking
}

/// What the controller decides about calls as they get their turn: whether one may still go,
/// and what a failure means before its permit goes to the next call.
public protocol CallGate: Sendable {
    /// Why a call of `lane` must not go now (the tick has ended; for an address-taking call,
    /// the breaker of its capacity `scope` is open), or nil. Asked once the call holds its permit.
    func refusal(for lane: CallLane, scope: String, at now: Date) -> String?
    /// A call of `lane` failed; told before its permit goes to a call that waits for it.
    func failed(_ lane: CallLane, scope: String, _ error: ProviderError)
}

/// At most `permits` calls in flight at once.
public actor CallLimiter {
    private var available: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []
    /// Calls made so far (for the watch view's "orbctl calls per tick").
    public private(set) var calls = 0

    public init(permits: Int) { available = max(1, permits) }

    func acquire() async {
        calls += 1
        if available > 0 {
            available -= 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty { available += 1 } else { waiters.removeFirst().resume() }
    }
}

/// The limits a provider's calls run under: `--concurrency` heavy calls and a wider number of
/// light ones at once, each asked of the gate once it holds its permit. A provider applies
/// them where it meets its engine (OrbStack: around each orbctl process), so what is counted
/// and bounded is real calls, and waiting between calls (a delete's grace) holds no permit.
public struct CallLimits: Sendable {
    public let heavy: CallLimiter
    public let light: CallLimiter
    public let gate: (any CallGate)?

    public init(heavy: Int, light: Int, gate: (any CallGate)? = nil) {
        self.heavy = CallLimiter(permits: heavy)
        self.light = CallLimiter(permits: light)
        self.gate = gate
    }

    /// Calls made so far, in both lanes.
    public var calls: Int {
        get async { await heavy.calls + light.calls }
    }

    /// Runs one call of `lane` once it holds a permit and the gate lets it go (an address-taking
    /// one, by the breaker of its capacity `scope`). A failure is shown to the gate before the
    /// permit is released.
    public func run<T: Sendable>(
        _ lane: CallLane, scope: String = "", _ body: () async throws(ProviderError) -> T
    ) async throws(ProviderError) -> T {
        let limiter = lane == .light ? light : heavy
        await limiter.acquire()
        do throws(ProviderError) {
            if let why = gate?.refusal(for: lane, scope: scope, at: Date()) { throw ProviderError(.heldBack, why) }
            let value = try await body()
            await limiter.release()
            return value
        } catch {
            if error.kind != .heldBack { gate?.failed(lane, scope: scope, error) }
            await limiter.release()
            throw error
        }
    }
}
