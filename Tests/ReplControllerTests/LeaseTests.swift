import Foundation
import GRDB
import ReplPlatform
import ReplTestSupport
import Testing

@testable import ReplController
@testable import ReplCore
@testable import ReplStore

/// One actor at a time (#16): a lease is never stolen from a holder repl cannot prove dead,
/// is taken at once from one it can, and is renewed in the background through a long tick.
@Suite(.serialized) struct LeaseTests {
    func directory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("repl-lease-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Writes a lease row as another process would have.
    func plant(_ store: Store, pid: Int32, boot: String?, namespace: String?, started: String?, expires: Date) throws {
        // Waits for the store as repl does: a lease keeper may be renewing in the background.
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        let queue = try DatabaseQueue(path: store.path, configuration: configuration)
        try queue.write { db in
            try db.execute(
                sql:
                    "INSERT OR REPLACE INTO lease (id, holder, pid, expires_at, token, boot, namespace, started) VALUES (1, 'watch', ?, ?, 'their-token', ?, ?, ?)",
                arguments: [Int64(pid), expires.timeIntervalSince1970, boot, namespace, started])
        }
        try queue.close()
    }

    @Test func aHolderInAnotherPIDNamespaceIsNotRobbedOfAnUnexpiredLease() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(directory: dir)
        let me = try #require(Platform.identity(of: getpid()))
        // Its pid means nothing here (no such process in this namespace), but it is not ours to judge.
        try plant(store, pid: 999_999, boot: me.boot, namespace: "pid:[4026530000]", started: "1", expires: Date().addingTimeInterval(300))
        #expect(try store.acquireLease(holder: "sweep")?.holder == "watch")
        // Nor on another boot of the host (a container sharing the state directory).
        try plant(store, pid: 999_999, boot: "another-boot", namespace: me.namespace, started: "1", expires: Date().addingTimeInterval(300))
        #expect(try store.acquireLease(holder: "sweep")?.holder == "watch")
        // Once it has expired, it is taken.
        try plant(store, pid: 999_999, boot: "another-boot", namespace: "elsewhere", started: "1", expires: Date().addingTimeInterval(-1))
        #expect(try store.acquireLease(holder: "sweep") == nil)
    }

    @Test func aReusedPIDIsNotTakenForTheHolder() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(directory: dir)
        let me = try #require(Platform.identity(of: getpid()))
        // The recorded pid is alive (it is this very test process), but started at another time:
        // the holder died and its pid was reused. Proven dead: taken at once.
        try plant(store, pid: getpid(), boot: me.boot, namespace: me.namespace, started: me.start + "0", expires: Date().addingTimeInterval(300))
        #expect(try store.acquireLease(holder: "sweep") == nil)
    }

    /// A holder killed but not yet reaped by its parent (a zombie: `timeout -s KILL` reaping
    /// late, a parent that never waits) is dead: its lease is taken at once (found by an
    /// attacker: the next `apply --wait` followed the zombie and left its machines behind).
    @Test func aKilledHolderNotYetReapedIsDead() async throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(directory: dir)
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sh"), strdup("-c"), strdup("sleep 0.3"), nil]
        defer { for a in argv { free(a) } }
        try #require(posix_spawn(&pid, "/bin/sh", nil, nil, argv, environ) == 0)
        defer { _ = waitpid(pid, nil, 0) }
        let alive = try #require(Platform.identity(of: pid))
        for _ in 0..<100 where !Platform.isZombie(pid) { try await Task.sleep(nanoseconds: 20_000_000) }
        try #require(Platform.isZombie(pid))
        try plant(store, pid: pid, boot: alive.boot, namespace: alive.namespace, started: alive.start, expires: Date().addingTimeInterval(300))
        #expect(try store.leaseHolder() == nil)
        #expect(try store.acquireLease(holder: "apply") == nil)
    }

    @Test(.machineCommands) func aSIGKILLedHoldersLeaseIsTakenAtOnce() async throws {
        let w = try World()
        let log = w.root.appendingPathComponent("watch.log").path
        let watch = try await BackgroundProcess.start(
            Paths.repl, ["--orbctl", w.orbctl, "watch", "--interval", "300ms"],
            environment: w.environment, outputPath: log)
        for _ in 0..<100 where try w.store.leaseHolder() == nil { try await Task.sleep(nanoseconds: 50_000_000) }
        #expect(try w.store.leaseHolder()?.pid == watch.pid)
        #expect(try w.store.acquireLease(holder: "sweep")?.pid == watch.pid)  // alive: not taken
        watch.signal(SIGKILL)
        _ = try await watch.wait()
        #expect(try w.store.acquireLease(holder: "sweep") == nil)  // dead: taken at once, not after 300 s
    }

    /// Found by attacking: a controller paused past its lease (SIGSTOP) came back and acted on
    /// its old list, failing and deleting machines another process had made. It now confirms
    /// the lease before acting, and acts on nothing once it is another's.
    @Test(.machineCommands) func aControllerThatLostItsLeaseActsOnNothing() async throws {
        let w = try World()
        try w.apply("kind: Run\nname: r\ncommand: sleep 600\n")
        let keeper = LeaseKeeper(store: w.store, holder: "apply", duration: 0.6)
        #expect(try keeper.acquire() == nil)
        w.controller.lease = keeper
        defer { keeper.release() }
        let other = try await BackgroundProcess.start("/bin/sleep", ["60"], environment: [:], outputPath: "/dev/null")
        defer { other.signal(SIGKILL) }
        let them = try #require(Platform.identity(of: other.pid))
        // Another process took the lease meanwhile (as after this one's lease expired while it was paused).
        try plant(w.store, pid: other.pid, boot: them.boot, namespace: them.namespace, started: them.start, expires: Date().addingTimeInterval(300))
        try await Task.sleep(nanoseconds: 300_000_000)  // past a third of the lease: the next look asks the store
        let report = await w.controller.tick()
        #expect(report.outcomes.isEmpty && report.observationError?.contains("lease") == true, "\(report.outcomes)")
        #expect(try w.machines().isEmpty)
        #expect(try w.run("r").instances.isEmpty)  // not even the store was written
    }

    /// Found reading the change: `confirm()` read a successful renewal (nil: "no other holder")
    /// through `try?`, which flattens it into the same nil as a failure, so a holder whose last
    /// renewal was a little old acted on nothing that tick.
    @Test func aHolderWhoseLastRenewalIsOldStillConfirmsItsLease() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(directory: dir)
        let keeper = LeaseKeeper(store: store, holder: "apply", duration: 300)
        #expect(try keeper.acquire() == nil)
        defer { keeper.release() }
        keeper.renewedAt = .distantPast  // e.g. the process was paused, but nobody took the lease
        #expect(keeper.confirm())
        #expect(keeper.isHeld)
    }

    @Test func theLeaseIsRenewedInTheBackgroundThroughALongTick() async throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(directory: dir)
        let keeper = LeaseKeeper(store: store, holder: "apply", duration: 3)
        #expect(try keeper.acquire() == nil)
        defer { keeper.release() }
        // A tick that lasts 2 lease durations: the lease never lapses.
        for _ in 0..<60 {
            try await Task.sleep(nanoseconds: 100_000_000)
            let holder = try #require(try store.leaseHolder())
            #expect(holder.expiresAt > Date())
        }
        #expect(keeper.isHeld)
    }

    /// Found by CI: the renewal ran as a task on Swift's cooperative pool, which a busy tick
    /// (or a busy test run) can fill with threads blocked in synchronous work; the lease then
    /// lapsed under a live holder. Renewal has its own thread now.
    @Test func theLeaseIsRenewedWhileEveryCooperativeThreadIsBlocked() async throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(directory: dir)
        let keeper = LeaseKeeper(store: store, holder: "apply", duration: 0.9)
        #expect(try keeper.acquire() == nil)
        defer { keeper.release() }
        // Block more cooperative threads than there are, for 2.2 lease durations (briefly: other suites share the pool).
        let width = ProcessInfo.processInfo.activeProcessorCount + 2
        let blocked = (0..<width).map { _ in Task.detached { usleep(2_000_000) } }
        // Look from a thread of our own (the pool is full), past the point the lease would lapse.
        let lapsed = await withCheckedContinuation { (done: CheckedContinuation<Bool, Never>) in
            Thread.detachNewThread {
                var lapsed = false
                for _ in 0..<19 {
                    usleep(100_000)
                    if (try? store.leaseHolder()) == nil { lapsed = true }
                }
                done.resume(returning: lapsed)
            }
        }
        for task in blocked { await task.value }
        #expect(!lapsed)
        #expect(keeper.isHeld)
    }
}

/// The manager paces ticks by the plan: soon after acting, never past what falls due next.
struct ManagerPacingTests {
    func turn(didSomething: Bool, nextCheck: Date?) -> Manager.Turn {
        var report = TickReport()
        if didSomething { report.outcomes = [(.start(machine: MachineName(parsing: "repl-ab12cd-1-1")!), nil)] }
        report.plan = Plan(actions: [], machines: [], nextCheck: nextCheck, waiting: [:])
        return .ticked(report)
    }

    @Test func pausesFollowThePlan() {
        let now = Date()
        #expect(Manager.pause(after: turn(didSomething: true, nextCheck: nil), idle: 5, now: now) == 0.1)
        #expect(Manager.pause(after: turn(didSomething: false, nextCheck: nil), idle: 5, now: now) == 5)
        #expect(Manager.pause(after: turn(didSomething: false, nextCheck: now.addingTimeInterval(2)), idle: 5, now: now) == 2)
        #expect(Manager.pause(after: turn(didSomething: false, nextCheck: now.addingTimeInterval(-9)), idle: 5, now: now) == 0.05)
        #expect(Manager.pause(after: .heldBy(LeaseHolder(holder: "watch", pid: 1, expiresAt: now)), idle: 5, now: now) == 5)
    }
}
