import Foundation
import GRDB
import ReplCore
import ReplPlatform

/// Events, the admission policy's state (backoffs, the breaker) and the whitelist.
extension Store {
    // MARK: - Events, backoff, breaker, whitelist

    public func event(_ kind: String, machine: String? = nil, run: RunID? = nil, _ message: String, now: Date = Date()) {
        _ = try? write { db in
            try EventRecord(StoreEvent(at: now, kind: kind, machine: machine, runID: run, message: message)).insert(db)
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
            return try EventRecord.fetchAll(db, sql: "SELECT * FROM events \(filter) ORDER BY id DESC LIMIT ?", arguments: [limit]).reversed()
                .map(\.event)
        }
    }

    public func backoffs() throws(StoreError) -> [String: Backoff] {
        try read { db in
            var out: [String: Backoff] = [:]
            for record in try BackoffRecord.fetchAll(db) { out[record.machine] = record.backoff }
            return out
        }
    }

    /// Records a machine's backoff (``Admission`` decides it).
    public func saveBackoff(machine: String, _ backoff: Backoff) throws(StoreError) {
        try write { db in
            try BackoffRecord(machine: machine, backoff).insert(db, onConflict: .replace)
        }
    }

    public func clearFailure(machine: String) throws(StoreError) {
        try write { db in try db.execute(sql: "DELETE FROM backoff WHERE machine = ?", arguments: [machine]) }
    }

    /// The breaker of `scope` ("" is OrbStack's address pool); one open until more than an hour
    /// ahead (it opens for ten minutes at most: a damaged row, or the clock went back) is read as
    /// closed, keeping its failure count.
    public func breaker(scope: String = "", now: Date = Date()) throws(StoreError) -> Breaker {
        try breakers(now: now)[scope] ?? .closed
    }

    /// Every breaker that has tripped and not closed since, by scope (each as ``breaker(scope:now:)`` reads it).
    public func breakers(now: Date = Date()) throws(StoreError) -> [String: Breaker] {
        let rows = try read { db in try BreakerRecord.fetchAll(db, sql: "SELECT * FROM breakers ORDER BY scope") }
        var breakers: [String: Breaker] = [:]
        for row in rows {
            var breaker = row.breaker
            if let until = breaker.openUntil, until > now.addingTimeInterval(Store.farAhead) { breaker.openUntil = nil }
            breakers[row.scope] = breaker
        }
        return breakers
    }

    /// Records the breaker of `scope` (``Admission`` trips it).
    public func saveBreaker(_ breaker: Breaker, scope: String = "") throws(StoreError) {
        try write { db in
            try BreakerRecord(scope: scope, breaker).insert(db, onConflict: .replace)
        }
    }

    /// Closes the breaker of `scope`, or every breaker.
    public func resetBreaker(scope: String? = nil) throws(StoreError) {
        try write { db in
            if let scope {
                try db.execute(sql: "DELETE FROM breakers WHERE scope = ?", arguments: [scope])
            } else {
                try db.execute(sql: "DELETE FROM breakers")
            }
        }
    }

    public func whitelist(now: Date = Date()) throws(StoreError) -> [(name: String, reason: String, expires: Date?)] {
        try read { db in
            // Every row is read (a damaged one is named, not skipped): which are in force is decided here.
            try WhitelistRecord.fetchAll(db, sql: "SELECT * FROM whitelist ORDER BY name")
                .filter { $0.expires.map { $0 > now } ?? true }
                .map { ($0.name, $0.reason, $0.expires) }
        }
    }

    public func addToWhitelist(_ name: String, reason: String, expires: Date?) throws(StoreError) {
        try write { db in
            try WhitelistRecord(name: name, reason: reason, expires: expires).insert(db, onConflict: .replace)
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
