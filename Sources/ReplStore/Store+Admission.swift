import Foundation
import GRDB
import ReplCore
import ReplPlatform

/// Events, the admission policy's state (backoffs, the breaker) and the whitelist.
extension Store {
    // MARK: - Events, backoff, breaker, whitelist

    public func event(_ kind: String, machine: String? = nil, run: RunID? = nil, _ message: String, now: Date = Date()) {
        _ = try? write { db in
            try db.execute(
                sql: "INSERT INTO events (at, kind, machine, run_id, message) VALUES (?, ?, ?, ?, ?)",
                arguments: [now.timeIntervalSince1970, kind, machine, run.map { Int64($0) }, message])
            try Store.pruneEvents(db, now: now)
        }
    }

    /// The event log is bounded: the newest `maxEvents`, none older than `eventsMaxAge`.
    public static let maxEvents: Int64 = 10_000
    public static let eventsMaxAge: TimeInterval = 30 * 86_400

    static func pruneEvents(_ db: Database, now: Date) throws {
        try db.execute(
            sql: "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ? OR at < ?",
            arguments: [maxEvents, now.timeIntervalSince1970 - eventsMaxAge])
    }

    public func events(limit: Int = 50, run: RunID? = nil) throws(StoreError) -> [StoreEvent] {
        try read { db in
            let filter = run.map { "WHERE run_id = \(Int64($0))" } ?? ""
            return try Row.fetchAll(db, sql: "SELECT * FROM events \(filter) ORDER BY id DESC LIMIT ?", arguments: [limit]).reversed().map {
                StoreEvent(
                    at: Date(timeIntervalSince1970: $0["at"]), kind: $0["kind"], machine: $0["machine"],
                    runID: ($0["run_id"] as Int64?).map { RunID($0) }, message: $0["message"])
            }
        }
    }

    public func backoffs() throws(StoreError) -> [String: Backoff] {
        try read { db in
            var out: [String: Backoff] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT * FROM backoff") {
                out[row["machine"]] = Backoff(
                    attempts: row["attempts"], nextAttempt: Date(timeIntervalSince1970: row["next_at"]), lastError: row["last_error"])
            }
            return out
        }
    }

    /// Records a machine's backoff (``Admission`` decides it).
    public func saveBackoff(machine: String, _ backoff: Backoff) throws(StoreError) {
        try write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO backoff (machine, attempts, next_at, last_error) VALUES (?, ?, ?, ?)",
                arguments: [machine, backoff.attempts, backoff.nextAttempt.timeIntervalSince1970, backoff.lastError])
        }
    }

    public func clearFailure(machine: String) throws(StoreError) {
        try write { db in try db.execute(sql: "DELETE FROM backoff WHERE machine = ?", arguments: [machine]) }
    }

    public func breaker() throws(StoreError) -> Breaker {
        try read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM breaker WHERE id = 1") else { return .closed }
            return Breaker(
                openUntil: Store.date(row, "open_until"), failures: row["failures"], message: row["message"],
                trippedAt: Store.date(row, "tripped_at"))
        }
    }

    /// Records the breaker (``Admission`` trips it).
    public func saveBreaker(_ breaker: Breaker) throws(StoreError) {
        try write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO breaker (id, open_until, failures, message, tripped_at) VALUES (1, ?, ?, ?, ?)",
                arguments: [
                    breaker.openUntil?.timeIntervalSince1970, breaker.failures, breaker.message,
                    breaker.trippedAt?.timeIntervalSince1970,
                ])
        }
    }

    public func resetBreaker() throws(StoreError) {
        try write { db in try db.execute(sql: "DELETE FROM breaker") }
    }

    public func whitelist(now: Date = Date()) throws(StoreError) -> [(name: String, reason: String, expires: Date?)] {
        try read { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM whitelist WHERE expires_at IS NULL OR expires_at > ? ORDER BY name", arguments: [now.timeIntervalSince1970]
            )
            .map { ($0["name"], $0["reason"], Store.date($0, "expires_at")) }
        }
    }

    public func addToWhitelist(_ name: String, reason: String, expires: Date?) throws(StoreError) {
        try write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO whitelist (name, reason, expires_at) VALUES (?, ?, ?)",
                arguments: [name, reason, expires?.timeIntervalSince1970])
        }
    }

    @discardableResult
    public func removeFromWhitelist(_ name: String) throws(StoreError) -> Bool {
        try write { db in
            try db.execute(sql: "DELETE FROM whitelist WHERE name = ?", arguments: [name])
            return db.changesCount > 0
        }
    }
}
