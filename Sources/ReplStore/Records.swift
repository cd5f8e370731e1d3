import Foundation
import GRDB
import ReplCore
import ReplPlatform

// The small tables as GRDB record types. Each reads its row cell by cell as the schema says
// (``Store/Cells``): a value of another type, written by hand or by a damaged file, is an error
// that names the table and the column, never a crash (GRDB's subscript stops the process).

/// A machine's backoff after a failed action.
struct BackoffRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "backoff"
    var machine: String
    var backoff: Backoff

    init(machine: String, _ backoff: Backoff) {
        self.machine = machine
        self.backoff = backoff
    }

    init(row: Row) throws {
        let c = Store.Cells(row: row, what: "backoff row \(String.fromDatabaseValue(row["machine"] as DatabaseValue) ?? "?")")
        machine = try c.string("machine")
        backoff = Backoff(attempts: try c.int("attempts"), nextAttempt: try c.requiredDate("next_at"), lastError: try c.string("last_error"))
    }

    func encode(to container: inout PersistenceContainer) {
        container["machine"] = machine
        container["attempts"] = backoff.attempts
        container["next_at"] = backoff.nextAttempt.timeIntervalSince1970
        container["last_error"] = backoff.lastError
    }
}

/// A circuit breaker of one capacity scope: a row while it is tripped, none when it is closed.
struct BreakerRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "breakers"
    var scope: String
    var breaker: Breaker

    init(scope: String, _ breaker: Breaker) {
        self.scope = scope
        self.breaker = breaker
    }

    init(row: Row) throws {
        let c = Store.Cells(row: row, what: "breaker")
        scope = try c.string("scope")
        // A count no run of trips reaches (each trip waits 30 s or more): damage, which would
        // overflow the next trip's count (found by attacking: a crash at the next exhaustion).
        let failures = try c.int("failures")
        guard (0...1_000_000).contains(failures) else { throw c.damaged("failures", "\(failures) is no count of trips") }
        breaker = Breaker(
            openUntil: try c.date("open_until"), failures: failures, message: try c.optionalString("message"),
            trippedAt: try c.date("tripped_at"))
    }

    func encode(to container: inout PersistenceContainer) {
        container["scope"] = scope
        container["open_until"] = breaker.openUntil?.timeIntervalSince1970
        container["failures"] = breaker.failures
        container["message"] = breaker.message
        container["tripped_at"] = breaker.trippedAt?.timeIntervalSince1970
    }
}

/// A machine kept from every delete, with why and until when.
struct WhitelistRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "whitelist"
    var name: String
    var reason: String
    var expires: Date?

    init(name: String, reason: String, expires: Date?) {
        self.name = name
        self.reason = reason
        self.expires = expires
    }

    init(row: Row) throws {
        let c = Store.Cells(row: row, what: "whitelist row \(String.fromDatabaseValue(row["name"] as DatabaseValue) ?? "?")")
        name = try c.string("name")
        reason = try c.string("reason")
        expires = try c.date("expires_at")
    }

    func encode(to container: inout PersistenceContainer) {
        container["name"] = name
        container["reason"] = reason
        container["expires_at"] = expires?.timeIntervalSince1970
    }
}

/// One line of the event log.
struct EventRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "events"
    var event: StoreEvent

    init(_ event: StoreEvent) { self.event = event }

    init(row: Row) throws {
        let c = Store.Cells(row: row, what: "event \(Int64.fromDatabaseValue(row["id"] as DatabaseValue).map(String.init) ?? "?")")
        event = StoreEvent(
            at: try c.requiredDate("at"), kind: try c.string("kind"), machine: try c.optionalString("machine"),
            runID: try c.optionalInt64("run_id").map { RunID($0) }, message: try c.string("message"))
    }

    func encode(to container: inout PersistenceContainer) {
        container["at"] = event.at.timeIntervalSince1970
        container["kind"] = event.kind
        container["machine"] = event.machine
        container["run_id"] = event.runID.map { Int64($0) }
        container["message"] = event.message
    }
}

/// An orbctl call about to be made, recorded before it (closed once its outcome is recorded).
public struct Intent: Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "intents"
    /// Its row's id (0 until it is inserted).
    public var id: Int64 = 0
    public var machine: String
    public var action: String
    public var pid: Int32
    public var at: Date

    init(machine: String, action: String, pid: Int32, at: Date) {
        self.machine = machine
        self.action = action
        self.pid = pid
        self.at = at
    }

    public init(row: Row) throws {
        let c = Store.Cells(row: row, what: "intent \(Int64.fromDatabaseValue(row["id"] as DatabaseValue).map(String.init) ?? "?")")
        id = try c.int64("id")
        machine = try c.string("machine")
        action = try c.string("action")
        pid = try c.int32("pid")
        at = try c.requiredDate("at")
    }

    public func encode(to container: inout PersistenceContainer) {
        container["id"] = id == 0 ? nil : id
        container["machine"] = machine
        container["action"] = action
        container["pid"] = Int64(pid)
        container["at"] = at.timeIntervalSince1970
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// The controller lease: who acts now, and who that is beyond a pid.
struct LeaseRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "lease"
    var holder: String
    var pid: Int32
    var expiresAt: Date
    /// A random token per process; nil in a lease written before holders had identities.
    var token: String?
    var boot: String?
    var namespace: String?
    var started: String?

    init(holder: String, pid: Int32, expiresAt: Date, token: String?, identity: Platform.ProcessIdentity?) {
        self.holder = holder
        self.pid = pid
        self.expiresAt = expiresAt
        self.token = token
        boot = identity?.boot
        namespace = identity?.namespace
        started = identity?.start
    }

    init(row: Row) throws {
        let c = Store.Cells(row: row, what: "lease")
        holder = try c.string("holder")
        pid = try c.int32("pid")
        expiresAt = try c.requiredDate("expires_at")
        token = try c.optionalString("token")
        boot = try c.optionalString("boot")
        namespace = try c.optionalString("namespace")
        started = try c.optionalString("started")
    }

    func encode(to container: inout PersistenceContainer) {
        container["id"] = 1
        container["holder"] = holder
        container["pid"] = Int64(pid)
        container["expires_at"] = expiresAt.timeIntervalSince1970
        container["token"] = token
        container["boot"] = boot
        container["namespace"] = namespace
        container["started"] = started
    }

    var holding: LeaseHolder { LeaseHolder(holder: holder, pid: pid, expiresAt: expiresAt) }
}
