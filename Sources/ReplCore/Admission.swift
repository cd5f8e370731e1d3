import Foundation

/// The per-machine retry state of failed actions.
public struct Backoff: Sendable, Equatable {
    public var attempts: Int
    public var nextAttempt: Date
    public var lastError: String

    public init(attempts: Int, nextAttempt: Date, lastError: String) {
        self.attempts = attempts
        self.nextAttempt = nextAttempt
        self.lastError = lastError
    }
}

/// A circuit breaker on exhausted capacity: OrbStack's address pool, or EC2's capacity for one
/// instance type in one zone (``Action/capacityScope``).
public struct Breaker: Sendable, Equatable {
    public var openUntil: Date?
    public var failures: Int
    public var message: String?
    /// When it last tripped: an exhaustion of an action that began before this is the same episode.
    public var trippedAt: Date?

    public init(openUntil: Date?, failures: Int, message: String?, trippedAt: Date? = nil) {
        self.openUntil = openUntil
        self.failures = failures
        self.message = message
        self.trippedAt = trippedAt
    }

    public static let closed = Breaker(openUntil: nil, failures: 0, message: nil)

    public func isOpen(at now: Date) -> Bool { openUntil.map { now < $0 } ?? false }
    /// Its cool-down is over but it has not closed: one address-taking action at a time tests the pool.
    public func isHalfOpen(at now: Date) -> Bool { failures > 0 && !isOpen(at: now) }
}

/// Which machine actions may go now, and what a failure leads to: a per-machine backoff after
/// a failure that may pass, and the circuit breaker on address exhaustion (open: no action that
/// takes an address; half-open once its cool-down is over: one such action at a time). Pure:
/// the store persists what it decides, and the controller carries it out.
public struct Admission: Sendable, Equatable {
    public var backoffs: [String: Backoff]
    /// The breakers by scope (``Action/capacityScope``); a scope without one is closed.
    public var breakers: [String: Breaker]

    public init(backoffs: [String: Backoff], breakers: [String: Breaker]) {
        self.backoffs = backoffs
        self.breakers = breakers
    }

    /// OrbStack's one breaker (scope "").
    public init(backoffs: [String: Backoff], breaker: Breaker) {
        self.init(backoffs: backoffs, breakers: ["": breaker])
    }

    public enum Verdict: Equatable, Sendable {
        case run
        case `defer`(String)
    }

    /// The verdict on each group (one machine's actions, in order), in the order given: a
    /// machine backing off waits; while its scope's breaker is open nothing that takes capacity
    /// there goes, and while it is half-open only the first such group does.
    public func admit(_ groups: [[Action]], now: Date) -> [Verdict] {
        var tested: Set<String> = []
        return groups.map { group in
            if let machine = group.first?.machine, let b = backoffs[machine.description], b.nextAttempt > now {
                return .defer("retrying after \(Int(b.nextAttempt.timeIntervalSince(now)) + 1) s: \(b.lastError)")
            }
            guard let taking = group.first(where: Admission.needsAddress) else { return .run }
            let scope = taking.capacityScope
            let breaker = breakers[scope] ?? .closed
            if breaker.isOpen(at: now) { return .defer(Self.openReason(scope)) }
            if breaker.isHalfOpen(at: now) {
                if tested.contains(scope) { return .defer("\(Self.name(scope)) half-open: one create at a time") }
                tested.insert(scope)
            }
            return .run
        }
    }

    /// "circuit breaker", with its scope where it has one.
    public static func name(_ scope: String) -> String { scope.isEmpty ? "circuit breaker" : "circuit breaker (\(scope))" }

    /// Why an action taking capacity in `scope` waits: its breaker is open, and what to do.
    public static func openReason(_ scope: String) -> String { "\(name(scope)) open: \(advice(scope))" }

    /// What a person can do about an open breaker of `scope`.
    public static func advice(_ scope: String) -> String {
        scope.isEmpty
            ? ProviderError.resetAdvice : "EC2 has no capacity for it now; it is tried again by itself, or choose another instance type or zone"
    }

    /// What a failed action leads to.
    public enum Reaction: Equatable, Sendable {
        /// The machine's next attempt waits (a failure that may pass).
        case backOff(Backoff)
        /// The address pool is exhausted: the breaker's (once per episode), not the machine's.
        case exhaustion
        /// Nothing more this tick: orbctl is not usable, and trying again needs a person.
        case endTick(String)
        /// It was not attempted (held back): nothing to record.
        case none
    }

    /// `isRetryable` decides between a backoff and ending the tick; exhaustion is retried only
    /// through the breaker.
    public func reaction(to error: ProviderError, machine: String, now: Date) -> Reaction {
        switch error.kind {
        case .heldBack: return .none
        case .addressExhausted, .capacity: return .exhaustion
        case .invalid: return .none
        default:
            if let why = Admission.endsTheTick(error) { return .endTick(why) }
            return .backOff(Admission.backoff(after: backoffs[machine], error: error.description, now: now))
        }
    }

    /// Why a failed call ends the tick (it may not pass by itself: orbctl is not usable), or nil.
    /// The limiter asks this too, before the failed call's permit goes to the next call.
    public static func endsTheTick(_ error: ProviderError) -> String? {
        switch error.kind {
        case .heldBack, .addressExhausted, .capacity, .invalid: return nil
        default: return error.isRetryable ? nil : error.description
        }
    }

    /// The next backoff: 2, 4, 8 … seconds, at most 5 minutes.
    public static func backoff(after previous: Backoff?, error: String, now: Date) -> Backoff {
        let attempts = (previous?.attempts ?? 0) + 1
        return Backoff(attempts: attempts, nextAttempt: now.addingTimeInterval(min(300, pow(2.0, Double(attempts)))), lastError: error)
    }

    /// The breaker tripped by an exhaustion: no address-taking action for 30 s, doubling with
    /// each trip, at most 10 minutes.
    public static func trip(_ breaker: Breaker, message: String, now: Date) -> Breaker {
        let failures = min(max(breaker.failures, 0), 1_000_000) + 1
        return Breaker(
            openUntil: now.addingTimeInterval(min(600, 30 * pow(2.0, Double(failures - 1)))), failures: failures,
            message: message, trippedAt: now)
    }

    /// Whether an action needs a new address from the pool (held back while the breaker is open).
    public static func needsAddress(_ action: Action) -> Bool {
        switch action {
        case .create, .clone, .start: return true
        default: return false
        }
    }
}
