import Foundation
import ReplCore
import ReplStore

/// Holds the controller lease for one acting process (like controller-runtime's leader
/// election): takes it, renews it in the background every third of its duration (so a tick
/// that outlasts the lease keeps it), and says the moment it is lost, after which the
/// controller starts no further action.
public final class LeaseKeeper: @unchecked Sendable {
    public let store: Store
    public let holder: String
    public let duration: TimeInterval
    private let lock = NSLock()
    private var held = false
    /// When this process last renewed the lease (internal: tests age it).
    var renewedAt: Date {
        get { lock.withLock { _renewedAt } }
        set { lock.withLock { _renewedAt = newValue } }
    }
    private var _renewedAt = Date.distantPast
    private var renewal: Renewal?

    public init(store: Store, holder: String, duration: TimeInterval = 300) {
        self.store = store
        self.holder = holder
        self.duration = duration
    }

    deinit { renewal?.stop() }

    /// Whether this process holds the lease now.
    public var isHeld: Bool { lock.withLock { held } }

    /// Takes (or renews) the lease: nil when this process holds it, else who does.
    @discardableResult
    public func acquire() throws(StoreError) -> LeaseHolder? {
        let other = try renew()
        if other == nil { startRenewing() }
        return other
    }

    /// Takes or renews the lease in the store and records the answer: nil when this process
    /// holds it, else who does.
    private func renew() throws(StoreError) -> LeaseHolder? {
        let other = try store.acquireLease(holder: holder, duration: duration)
        lock.withLock {
            held = other == nil
            if held { _renewedAt = Date() }
        }
        return other
    }

    /// Renews on a thread of its own, not as a task: a tick may fill Swift's cooperative pool
    /// with threads blocked in synchronous work, and a renewal waiting behind them lets the
    /// lease lapse under a live holder.
    private func startRenewing() {
        lock.lock()
        defer { lock.unlock() }
        guard renewal == nil else { return }
        let every = max(0.05, duration / 3)
        let signal = Renewal()
        renewal = signal
        let thread = Thread { [weak self] in
            while signal.wait(every) {
                guard let self else { return }
                // A busy store is retried at the next turn; the lease outlives two of them.
                let other: LeaseHolder?
                do { other = try self.renew() } catch { continue }
                if let other {
                    self.store.event("lease-lost", "\(other.holder) (pid \(other.pid)) took the controller lease; no further action is started")
                    return
                }
            }
        }
        thread.name = "repl lease renewal"
        thread.start()
    }

    /// Whether the lease is still this process's, checked against the store when the last
    /// renewal is older than a third of the lease (a process paused, SIGSTOP or a sleeping
    /// laptop, comes back to find it taken). Called before acting.
    public func confirm() -> Bool {
        let (isHeld, last) = lock.withLock { (held, _renewedAt) }
        guard isHeld else { return false }
        if Date().timeIntervalSince(last) < duration / 3 { return true }
        // (Not `try?`: it would flatten "renewed" (nil) and "the store failed" into one nil.)
        do { return try renew() == nil } catch { return false }
    }

    /// Stops renewing and lets the lease go.
    public func release() {
        let running: Renewal? = lock.withLock {
            defer { renewal = nil }
            return renewal
        }
        running?.stop()
        if isHeld { store.releaseLease() }
        lock.withLock { held = false }
    }
}

/// The renewal thread's clock and off switch.
private final class Renewal: @unchecked Sendable {
    private let condition = NSCondition()
    private var stopped = false

    /// Waits `seconds`; false once stopped (at once, not at the end of the wait).
    func wait(_ seconds: TimeInterval) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let until = Date().addingTimeInterval(seconds)
        while !stopped, condition.wait(until: until) {}
        return !stopped
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }
}
