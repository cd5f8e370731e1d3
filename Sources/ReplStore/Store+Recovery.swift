import Foundation
import GRDB
import ReplCore
import ReplPlatform

/// Recovery, changes the CLI makes to the desired state, and the lease.
extension Store {
    // MARK: - Recovery

    /// Whether the store holds no runs and no snapshots (a fresh or lost database).
    public func isEmpty() throws(StoreError) -> Bool {
        try read { db in
            try Int.fetchOne(db, sql: "SELECT (SELECT COUNT(*) FROM runs) + (SELECT COUNT(*) FROM snapshots)") == 0
        }
    }

    /// Records a run rebuilt from its machines: its manifest, id and generation, and an
    /// instance per machine. Counters move past every recovered id.
    public typealias RecoveredInstance = (id: InstanceID, phase: InstancePhase, createdAt: Date?, exitCode: Int?)

    /// Records what `repl recover` rebuilt, in one transaction: the runs, and the machines kept
    /// aside (whitelisted, with why). Nothing is written when any of it fails.
    public func insertRecovered(
        _ runs: [(run: RunManifest, id: RunID, generation: Int, instances: [RecoveredInstance])],
        kept: [(name: String, reason: String)], now: Date = Date()
    ) throws(StoreError) {
        try write { db in
            for (run, id, generation, instances) in runs {
                let json = String(decoding: try Store.encoder.encode(run), as: UTF8.self)
                try db.execute(
                    sql:
                        "INSERT OR REPLACE INTO runs (id, name, manifest, fingerprint, generation, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    arguments: [
                        Int64(id), run.name, json, run.generationFingerprint, generation, now.timeIntervalSince1970, now.timeIntervalSince1970,
                    ])
                for i in instances {
                    try db.execute(
                        sql:
                            "INSERT OR REPLACE INTO instances (id, run_id, generation, phase, created_at, started_at, exit_code, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        arguments: [
                            Int64(i.id), Int64(id), generation, i.phase.rawValue, i.createdAt?.timeIntervalSince1970,
                            i.phase >= .bootstrapping ? (i.createdAt ?? now).timeIntervalSince1970 : nil, i.exitCode,
                            i.phase.isTerminal ? now.timeIntervalSince1970 : nil,
                        ])
                    try db.execute(sql: "UPDATE counters SET value = MAX(value, ?) WHERE name = 'instance'", arguments: [Int64(i.id) + 1])
                }
                try db.execute(sql: "UPDATE counters SET value = MAX(value, ?) WHERE name = 'manifest'", arguments: [Int64(id) + 1])
            }
            for k in kept {
                try db.execute(
                    sql: "INSERT OR REPLACE INTO whitelist (name, reason, expires_at) VALUES (?, ?, NULL)", arguments: [k.name, k.reason])
            }
        }
    }

    /// Moves the id counters past ids seen on machines (so new names never collide).
    public func reserveIDs(manifest: UInt64, instance: UInt64) throws(StoreError) {
        try write { db in
            try db.execute(sql: "UPDATE counters SET value = MAX(value, ?) WHERE name = 'manifest'", arguments: [Int64(manifest) + 1])
            try db.execute(sql: "UPDATE counters SET value = MAX(value, ?) WHERE name = 'instance'", arguments: [Int64(instance) + 1])
        }
    }

    // MARK: - Desired-state changes from the CLI

    /// Cancels a run (its machines are deleted by the controller); with `delete`, it is also hidden.
    public func cancel(run: RunID, delete: Bool = false, now: Date = Date()) throws(StoreError) {
        try write { db in
            try db.execute(
                sql: "UPDATE runs SET cancelled = 1, deleted = CASE WHEN ? THEN 1 ELSE deleted END, updated_at = ?, \(Store.touched) WHERE id = ?",
                arguments: [delete, now.timeIntervalSince1970, Int64(run)])
        }
    }

    /// Marks a snapshot for deletion; the controller deletes its machine.
    @discardableResult
    public func deleteSnapshot(named name: String) throws(StoreError) -> Bool {
        try write { db in
            try db.execute(sql: "UPDATE snapshots SET deleted = 1 WHERE name = ?", arguments: [name])
            return db.changesCount > 0
        }
    }

    // MARK: - Lease

    /// This process, as the lease records its holder: a random token, and who it is beyond its pid.
    static let token = UUID().uuidString
    static let identity = Platform.identity(of: getpid())

    /// Takes or renews the lease; returns the other holder when it cannot. The lease is taken
    /// from another holder only once it has expired (`duration` after its last renewal) or
    /// when its holder is proven dead: on this boot and in this PID namespace, with no process
    /// of its pid, or one that started at another time (the pid was reused). A holder repl
    /// cannot judge (another container, another PID namespace) keeps it until it expires.
    public func acquireLease(holder: String, duration: TimeInterval = 300, now: Date = Date()) throws(StoreError) -> LeaseHolder? {
        try write { db in
            if let lease = try LeaseRecord.fetchOne(db, sql: "SELECT * FROM lease WHERE id = 1"), let other = Store.otherHolder(lease, now: now) {
                return other
            }
            try LeaseRecord(holder: holder, pid: getpid(), expiresAt: now.addingTimeInterval(duration), token: Store.token, identity: Store.identity)
                .insert(db, onConflict: .replace)
            return nil
        }
    }

    /// The holder a lease row names, unless it is this process, has expired, or is proven dead.
    static func otherHolder(_ lease: LeaseRecord, now: Date) -> LeaseHolder? {
        let pid = lease.pid
        let holder = lease.holding
        // A lease lasts minutes: one that ends more than an hour ahead was never written by a
        // holder (a damaged row, or the clock went back) and is not honoured; a live holder's
        // next renewal finds it taken and stops acting.
        guard Store.inForce(lease, now: now) else { return nil }
        guard let token = lease.token else {
            // A lease written before holders had identities: judged by its pid alone.
            return pid != getpid() && isAlive(pid) ? holder : nil
        }
        if token == Store.token { return nil }
        guard let me = identity, lease.boot == me.boot, lease.namespace == me.namespace else { return holder }
        guard let theirs = Platform.identity(of: pid) else { return nil }  // no such process: dead
        return theirs.start == lease.started ? holder : nil  // another start: the pid was reused
    }

    public func releaseLease() {
        _ = try? write { db in
            try db.execute(
                sql: "DELETE FROM lease WHERE id = 1 AND (token = ? OR (token IS NULL AND pid = ?))", arguments: [Store.token, Int64(getpid())])
        }
    }

    /// Who holds the lease now (this process included), if anyone does.
    public func leaseHolder(now: Date = Date()) throws(StoreError) -> LeaseHolder? {
        try read { db in
            guard let lease = try LeaseRecord.fetchOne(db, sql: "SELECT * FROM lease WHERE id = 1") else { return nil }
            if lease.token == Store.token {
                return Store.inForce(lease, now: now) ? LeaseHolder(holder: lease.holder, pid: getpid(), expiresAt: lease.expiresAt) : nil
            }
            return Store.otherHolder(lease, now: now)
        }
    }

    /// Further ahead than any lease (5 minutes) or breaker (10 minutes) is set.
    static let farAhead: TimeInterval = 3600

    /// Not expired, and not ending further ahead than any holder sets it.
    static func inForce(_ lease: LeaseRecord, now: Date) -> Bool {
        lease.expiresAt > now && lease.expiresAt <= now.addingTimeInterval(farAhead)
    }

    public static func isAlive(_ pid: Int32) -> Bool { (kill(pid, 0) == 0 || errno == EPERM) && !Platform.isZombie(pid) }
}
