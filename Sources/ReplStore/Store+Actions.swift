import Foundation
import GRDB
import ReplCore
import ReplPlatform

/// What the controller did: actions recorded, and intents opened before each orbctl call.
extension Store {
    // MARK: - Recording actions

    /// Applies a store-only action (or the store part of an action that succeeded).
    public func record(_ action: Action, now: Date = Date()) throws(StoreError) {
        try write { db in try Store.record(action, in: db, at: now) }
    }

    /// Applies several store-only actions in one transaction.
    public func record(_ actions: [Action], now: Date = Date()) throws(StoreError) {
        try write { db in for action in actions { try Store.record(action, in: db, at: now) } }
    }

    static func record(_ action: Action, in db: Database, at now: Date) throws {
        let t = now.timeIntervalSince1970
        switch action {
        case let .addInstance(run, instance, generation):
            try db.execute(
                sql: "INSERT OR IGNORE INTO instances (id, run_id, generation, phase) VALUES (?, ?, ?, 'Pending')",
                arguments: [Int64(instance), Int64(run), generation])
            try db.execute(sql: "UPDATE counters SET value = MAX(value, ?) WHERE name = 'instance'", arguments: [Int64(instance) + 1])
        case let .retireInstance(_, instance, _):
            try db.execute(sql: "UPDATE instances SET retired = 1 WHERE id = ?", arguments: [Int64(instance)])
        case let .markPhase(_, instance, phase, code, reason):
            // Bootstrapping or Running found by reading the machine (a launch whose record was
            // lost) starts the deadline's clock, as a recorded launch does.
            try db.execute(
                sql:
                    "UPDATE instances SET phase = ?, exit_code = COALESCE(?, exit_code), reason = ?, finished_at = CASE WHEN ? THEN COALESCE(finished_at, ?) ELSE finished_at END, started_at = CASE WHEN ? THEN COALESCE(started_at, ?) ELSE started_at END WHERE id = ?",
                arguments: [phase.rawValue, code, reason, phase.isTerminal, t, phase == .bootstrapping || phase == .running, t, Int64(instance)])
        case let .create(_, instance, _, _), let .clone(_, instance, _, _):
            try db.execute(
                sql:
                    "UPDATE instances SET phase = CASE WHEN phase = 'Pending' THEN 'Provisioning' ELSE phase END, created_at = COALESCE(created_at, ?) WHERE id = ?",
                arguments: [t, Int64(instance)])
        case let .startRun(_, instance, _):
            try db.execute(
                sql: "UPDATE instances SET phase = 'Bootstrapping', started_at = ? WHERE id = ? AND phase IN ('Pending', 'Provisioning')",
                arguments: [t, Int64(instance)])
        case let .collectLogs(_, instance, _):
            try db.execute(sql: "UPDATE instances SET logs_collected = 1 WHERE id = ?", arguments: [Int64(instance)])
        case let .takeSnapshot(name, _, _):
            try db.execute(sql: "UPDATE snapshots SET created_at = COALESCE(created_at, ?) WHERE name = ?", arguments: [t, name])
        case .delete(let machine, .snapshotDeleted):
            try db.execute(sql: "DELETE FROM snapshots WHERE instance_id = ? AND deleted = 1", arguments: [Int64(machine.instanceID)])
        case .start, .stop, .delete:
            break
        }
    }

    /// Whether an instance is still wanted as stored now: its run neither cancelled nor deleted,
    /// the instance neither retired nor of an older generation.
    public func isWanted(run: RunID, instance: InstanceID) throws(StoreError) -> Bool {
        try read { db in
            let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT runs.cancelled, runs.deleted, runs.generation AS run_generation, instances.generation, instances.retired
                    FROM runs JOIN instances ON instances.run_id = runs.id WHERE runs.id = ? AND instances.id = ?
                    """, arguments: [Int64(run), Int64(instance)])
            guard let row else { return false }
            let c = Cells(row: row, what: "instance \(Base36.encode(instance))")
            return try c.int("cancelled") == 0 && c.int("deleted") == 0 && c.int("retired") == 0
                && c.int("run_generation") == c.int("generation")
        }
    }

    /// One instance as stored now.
    public func instance(_ id: InstanceID) throws(StoreError) -> InstanceState? {
        try read { db in try Row.fetchOne(db, sql: "SELECT * FROM instances WHERE id = ?", arguments: [Int64(id)]).map(Store.instance) }
    }

    /// After a successful orbctl action: its bookkeeping, the intent closed, its backoff
    /// cleared and an event, in one transaction.
    public func complete(_ action: Action, intent: Int64, machine: String, event kind: String, now: Date = Date()) throws(StoreError) {
        try write { db in
            try Store.record(action, in: db, at: now)
            try db.execute(sql: "DELETE FROM intents WHERE id = ?", arguments: [intent])
            try db.execute(sql: "DELETE FROM backoff WHERE machine = ?", arguments: [machine])
            try EventRecord(StoreEvent(at: now, kind: kind, machine: machine, runID: action.instance?.run, message: "\(action)")).insert(db)
        }
    }

    /// Marks when an instance's machine was first requested (before the orbctl call).
    public func markRequested(instance: InstanceID, at now: Date) throws(StoreError) {
        try write { db in
            try db.execute(
                sql: "UPDATE instances SET created_at = COALESCE(created_at, ?) WHERE id = ?",
                arguments: [now.timeIntervalSince1970, Int64(instance)])
        }
    }

    public func recordProbe(instance: InstanceID, at now: Date) throws(StoreError) {
        try write { db in
            try db.execute(sql: "UPDATE instances SET last_probe_at = ? WHERE id = ?", arguments: [now.timeIntervalSince1970, Int64(instance)])
        }
    }

    public func lastProbes() throws(StoreError) -> [InstanceID: Date] {
        try read { db in
            var out: [InstanceID: Date] = [:]
            let sql = """
                SELECT instances.id, instances.last_probe_at FROM runs JOIN instances ON instances.run_id = runs.id
                WHERE runs.archived = 0 AND instances.last_probe_at IS NOT NULL
                """
            for row in try Row.fetchAll(db, sql: sql) {
                let c = Cells(
                    row: row,
                    what: "instance \(Int64.fromDatabaseValue(row["id"] as DatabaseValue).map { Base36.encode(UInt64(bitPattern: $0)) } ?? "?")")
                out[InstanceID(try c.int64("id"))] = try c.requiredDate("last_probe_at")
            }
            return out
        }
    }

    // MARK: - Intents

    /// Records an intent before the orbctl call; returns its id.
    public func openIntent(machine: String, action: String, pid: Int32 = getpid(), now: Date = Date()) throws(StoreError) -> Int64 {
        try write { db in
            try Intent(machine: machine, action: action, pid: pid, at: now).inserted(db).id
        }
    }

    public func closeIntent(_ id: Int64) throws(StoreError) {
        try write { db in try db.execute(sql: "DELETE FROM intents WHERE id = ?", arguments: [id]) }
    }

    /// Intents left open (by a process that crashed or is still acting).
    public func openIntents() throws(StoreError) -> [Intent] {
        try read { db in try Intent.fetchAll(db, sql: "SELECT * FROM intents ORDER BY id") }
    }
}
