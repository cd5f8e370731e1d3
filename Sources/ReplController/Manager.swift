import Foundation
import ReplCore
import ReplStore

/// Owns acting for one process, like controller-runtime's Manager: it holds the controller
/// lease (renewed in the background, so a tick that outlasts it keeps it, and the controller
/// starts no action once it is lost), ticks the controller only under it, paces the ticks by
/// what the plan says falls due next, and stops when asked (a signal at the root command).
/// Commands parse their flags, drive a manager and render what it reports.
public final class Manager: @unchecked Sendable {
    public let controller: Controller
    public let lease: LeaseKeeper
    private let lock = NSLock()
    private var stopping = false

    /// What one turn did: ticked under the lease, or left the acting to the process that
    /// holds it.
    public enum Turn {
        case ticked(TickReport)
        case heldBy(LeaseHolder)

        public var report: TickReport? {
            if case .ticked(let report) = self { return report }
            return nil
        }
    }

    public init(controller: Controller, holder: String, leaseDuration: TimeInterval = 300) {
        self.controller = controller
        lease = LeaseKeeper(store: controller.store, holder: holder, duration: leaseDuration)
        controller.lease = lease
    }

    /// Asks the loop to end after the turn in progress (from a signal handler: any thread).
    public func stop() { lock.withLock { stopping = true } }
    public var isStopping: Bool { lock.withLock { stopping } }

    /// One turn: takes (or keeps) the lease and ticks; when another process holds it, says who
    /// and acts on nothing.
    public func turn(now: Date = Date()) async throws(StoreError) -> Turn {
        if let holder = try lease.acquire() { return .heldBy(holder) }
        return .ticked(await controller.tick(now: now))
    }

    /// One turn, then the lease goes (a command that records a change and ticks once, leaving
    /// the rest to the next sweep when another process acts).
    public func once() async throws(StoreError) -> Turn {
        defer { release() }
        return try await turn()
    }

    /// How long to wait before the next turn: a moment after acting (the world changed),
    /// `idle` otherwise, and never past what the plan says falls due next (a deadline, the end
    /// of a hold or of an orphan's grace). While another process holds the lease, `idle`.
    public static func pause(after turn: Turn, idle: TimeInterval, now: Date = Date()) -> TimeInterval {
        guard let report = turn.report else { return idle }
        if report.didSomething { return min(idle, 0.1) }
        guard let due = report.plan?.nextCheck else { return idle }
        return min(idle, max(0.05, due.timeIntervalSince(now)))
    }

    /// Sleeps `seconds`, waking early when the manager is stopped or `wake` says so (checked
    /// every 50 ms).
    public func sleep(_ seconds: TimeInterval, wake: () -> Bool = { false }) async {
        let until = Date().addingTimeInterval(seconds)
        while Date() < until && !isStopping && !wake() {
            try? await Task.sleep(nanoseconds: UInt64(min(0.05, max(0, until.timeIntervalSinceNow)) * 1e9))
        }
    }

    /// Turns until `body` says stop (returns false) or the manager is stopped, pausing between
    /// turns as `pause` says.
    public func run(idle: TimeInterval, _ body: (Turn) async throws -> Bool) async throws {
        while !isStopping {
            let turn = try await turn()
            guard try await body(turn), !isStopping else { return }
            await sleep(Self.pause(after: turn, idle: idle))
        }
    }

    /// Stops renewing and lets the lease go.
    public func release() { lease.release() }
}
