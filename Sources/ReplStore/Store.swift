import Foundation
import GRDB
import ReplCore
import ReplPlatform

/// Why the store cannot be used, said so a person can act on it.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One recorded event: an action and its outcome, with time.
public struct StoreEvent: Sendable, Equatable {
    public var at: Date
    public var kind: String
    public var machine: String?
    public var runID: RunID?
    public var message: String
}

/// A run row as the CLI shows it.
public struct RunRecord: Sendable {
    public var run: DesiredRun
    public var deleted: Bool
    public var createdAt: Date
    /// The last error of an action on one of its machines, if the action still retries.
    public var lastError: String?
}

/// Who may act: one process at a time.
public struct LeaseHolder: Sendable, Equatable, CustomStringConvertible {
    public var holder: String
    public var pid: Int32
    public var expiresAt: Date
    public var description: String { "\(holder) (pid \(pid)), until \(expiresAt)" }
}

/// The state store: SQLite through GRDB at `$REPL_HOME/state.db`, in WAL mode,
/// with versioned migrations. A file from a newer schema or a corrupt one is
/// refused, never overwritten.
public final class Store: @unchecked Sendable {
    public let path: String
    let db: DatabasePool
    /// Why the store cannot be written (read-only, a full disk), when it cannot: reads work
    /// (from a private copy), writes fail saying this.
    public let readOnlyReason: String?
    public var isReadOnly: Bool { readOnlyReason != nil }
    /// The private copy a read-only store is read from, removed with the store.
    let scratch: URL?

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                    CREATE TABLE counters (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
                    CREATE TABLE runs (
                      id INTEGER PRIMARY KEY NOT NULL, name TEXT NOT NULL UNIQUE, manifest TEXT NOT NULL,
                      fingerprint TEXT NOT NULL, generation INTEGER NOT NULL, cancelled INTEGER NOT NULL DEFAULT 0,
                      deleted INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, updated_at REAL NOT NULL);
                    CREATE TABLE instances (
                      id INTEGER PRIMARY KEY NOT NULL, run_id INTEGER NOT NULL REFERENCES runs(id), generation INTEGER NOT NULL,
                      phase TEXT NOT NULL, retired INTEGER NOT NULL DEFAULT 0, created_at REAL, started_at REAL, finished_at REAL,
                      exit_code INTEGER, logs_collected INTEGER NOT NULL DEFAULT 0, reason TEXT, last_probe_at REAL);
                    CREATE INDEX instances_run ON instances(run_id);
                    CREATE TABLE snapshots (
                      id INTEGER PRIMARY KEY NOT NULL, name TEXT NOT NULL UNIQUE, from_run TEXT NOT NULL, instance_id INTEGER NOT NULL,
                      deleted INTEGER NOT NULL DEFAULT 0, created_at REAL, applied_at REAL NOT NULL);
                    CREATE TABLE intents (
                      id INTEGER PRIMARY KEY AUTOINCREMENT, machine TEXT NOT NULL, action TEXT NOT NULL, pid INTEGER NOT NULL, at REAL NOT NULL);
                    CREATE TABLE events (
                      id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL, machine TEXT, run_id INTEGER, message TEXT NOT NULL);
                    CREATE TABLE whitelist (name TEXT PRIMARY KEY NOT NULL, reason TEXT NOT NULL, expires_at REAL);
                    CREATE TABLE backoff (machine TEXT PRIMARY KEY NOT NULL, attempts INTEGER NOT NULL, next_at REAL NOT NULL, last_error TEXT NOT NULL);
                    CREATE TABLE breaker (id INTEGER PRIMARY KEY CHECK (id = 1), open_until REAL, failures INTEGER NOT NULL, message TEXT);
                    CREATE TABLE lease (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, pid INTEGER NOT NULL, expires_at REAL NOT NULL);
                    INSERT INTO counters VALUES ('manifest', 1), ('instance', 1);
                    """)
        }
        // v2: when the breaker last tripped, so that one episode counts once and only a success
        // that began after the trip closes it.
        m.registerMigration("v2") { db in
            try db.execute(sql: "ALTER TABLE breaker ADD COLUMN tripped_at REAL")
        }
        // v3: who holds the lease, beyond a pid: a random token per process, the host's boot,
        // the PID namespace and the process's start time.
        m.registerMigration("v3") { db in
            try db.execute(
                sql: """
                    ALTER TABLE lease ADD COLUMN token TEXT;
                    ALTER TABLE lease ADD COLUMN boot TEXT;
                    ALTER TABLE lease ADD COLUMN namespace TEXT;
                    ALTER TABLE lease ADD COLUMN started TEXT;
                    """)
        }
        // v4: history off the hot path. A run with nothing left to do is archived (ticks read
        // only live runs); every change to a run bumps its revision and brings it back.
        m.registerMigration("v4") { db in
            try db.execute(
                sql: """
                    ALTER TABLE runs ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE runs ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
                    CREATE INDEX runs_live ON runs(id) WHERE archived = 0;
                    """)
        }
        return m
    }

    /// The schema version this build writes.
    public static let schemaVersion = "v4"

    /// Opens (creating when absent) the store at `directory/state.db`.
    public init(directory: URL, busyTimeout: TimeInterval = 10) throws(StoreError) {
        let fm = FileManager.default
        do {
            try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw StoreError(
                "cannot create the state directory \(directory.path): \(Store.reason(error)); choose another with --state-dir or REPL_HOME")
        }
        path = directory.appendingPathComponent("state.db").path
        // A store that exists but cannot be written (a read-only mount, another user's, a full
        // disk) is still readable: read commands work, writes say why they fail.
        let exists = fm.fileExists(atPath: path)
        // SQLite reads an empty file as an empty database, and would make it a fresh store: a
        // state.db truncated to nothing is refused like any other truncated one.
        // (Another repl creating the store at this moment leaves it empty for a few
        // milliseconds: it is given a second to write its header.)
        let file = path
        func isEmpty() -> Bool {
            ((try? fm.attributesOfItem(atPath: file))?[.size] as? Int) == 0 && !fm.fileExists(atPath: file + "-wal")
        }
        var waited = 0
        while exists && isEmpty() && waited < 20 {
            usleep(50_000)
            waited += 1
        }
        if exists && isEmpty() {
            throw StoreError(
                "\(path) cannot be used: it is empty (0 bytes: truncated?). It was left untouched; move it away and run `repl recover` to rebuild the state from the machines"
            )
        }
        let writable = fm.isWritableFile(atPath: directory.path) && (!exists || fm.isWritableFile(atPath: path))
        guard writable || exists else {
            throw StoreError("the state directory \(directory.path) is not writable; choose another with --state-dir or REPL_HOME")
        }
        var config = Configuration()
        config.busyMode = .timeout(busyTimeout)
        config.foreignKeysEnabled = true
        // WAL with synchronous=NORMAL: a crash of repl loses nothing committed; only a power
        // cut may lose the last transactions, which the intents and the list then reconcile.
        config.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
        let path = self.path
        var busy = false
        do {
            if writable {
                do {
                    db = try Store.openInPlace(path, config)
                    scratch = nil
                    readOnlyReason = nil
                    return
                } catch let error as StoreError {
                    throw error
                } catch  where !exists || Store.isCorrupt(error) {
                    throw error
                } catch {
                    // Busy past the wait, a full disk, an I/O error: the file is as good as it
                    // was, so it is read from a copy, and writes say why they cannot be made.
                    readOnlyReason = Store.reason(error)
                    busy = Store.isBusy(error)
                }
            } else {
                readOnlyReason = "it is read-only (check its permissions and those of its directory)"
            }
            // SQLite cannot open a WAL database where it cannot write (it needs the WAL index
            // beside it), so such a store is read from a private copy of the file and its WAL.
            let copy = try Store.privateCopy(of: path)
            scratch = copy
            do {
                db = try DatabasePool(path: copy.appendingPathComponent("state.db").path, configuration: config)
                try Store.checkSchema(db, path: path)
                let migrator = Store.migrator
                if try !db.read({ try migrator.hasCompletedMigrations($0) }) {
                    throw StoreError(
                        "\(path) cannot be written (\(readOnlyReason ?? "?")) and was written by an older repl (schema \(try db.read { try migrator.appliedIdentifiers($0) }.sorted().last ?? "none")); open it once where it can be written so that it is upgraded"
                    )
                }
            } catch {
                try? fm.removeItem(at: copy)
                if let error = error as? StoreError { throw error }
                // A copy taken while another process was writing may be torn: then it is
                // never called corrupt.
                if busy || !Store.isCorrupt(error) {
                    throw StoreError("\(path) cannot be opened: \(readOnlyReason ?? Store.reason(error))")
                }
                throw error
            }
        } catch let error as StoreError {
            throw error
        } catch {
            // Only a corrupt file is worth rebuilding: a busy, read-only or full store is kept,
            // with its history, whitelist and snapshots, and the advice says what to do instead.
            if Store.isCorrupt(error) {
                throw StoreError(
                    "\(path) cannot be used: \(Store.reason(error)). It was left untouched; move it away and run `repl recover` to rebuild the state from the machines"
                )
            }
            throw StoreError("\(path) cannot be opened: \(Store.reason(error))")
        }
    }

    /// Opens the store where it is, migrated to this build's schema.
    static func openInPlace(_ path: String, _ config: Configuration) throws -> DatabasePool {
        // SQLite answers some busy states at once, without waiting in the busy handler (a
        // journal mode being set, a WAL being recovered, a read that cannot become a write):
        // four first commands at once on a fresh directory met one about once in 50 rounds.
        // Such an answer is tried again a few times before it counts.
        // One that waited out the busy handler (another repl holding the lock) counts at once.
        var attempt = 0
        while true {
            let started = Date()
            do {
                return try openInPlaceOnce(path, config)
            } catch  where isBusy(error) && attempt < 8 && Date().timeIntervalSince(started) < 1 {
                attempt += 1
                usleep(UInt32.random(in: 20_000...120_000))
            }
        }
    }

    static func openInPlaceOnce(_ path: String, _ config: Configuration) throws -> DatabasePool {
        let db = try DatabasePool(path: path, configuration: config)
        try checkSchema(db, path: path)
        // Only when there is something to migrate: migrating takes the write lock (and changes
        // the file), which a command that only reads must not wait for.
        let migrator = Store.migrator
        // Two first commands at once (an apply meeting a cron sweep) may both start migrating:
        // the one that loses finds the other's migration applied, and reads again.
        var attempt = 0
        while try !db.read({ try migrator.hasCompletedMigrations($0) }) {
            do {
                try migrator.migrate(db)
            } catch {
                attempt += 1
                if attempt >= 5 || isCorrupt(error) { throw error }
                usleep(UInt32.random(in: 20_000...100_000))
            }
        }
        return db
    }

    /// Refuses a store written by a newer repl.
    static func checkSchema(_ db: DatabasePool, path: String) throws {
        let migrator = Store.migrator
        if try db.read({ try migrator.hasBeenSuperseded($0) }) {
            throw StoreError(
                "\(path) was written by a newer version of repl (schema \(try db.read { try migrator.appliedIdentifiers($0) }.sorted().last ?? "?")); upgrade repl, or move the file away to start afresh"
            )
        }
    }

    /// Whether the file itself is bad (as opposed to busy, read-only, full or not permitted,
    /// which leave it as good as it was).
    static func isCorrupt(_ error: Error) -> Bool {
        guard let e = error as? DatabaseError else { return false }
        // Only what SQLite itself calls corrupt: an I/O error (a full or failing disk) or a
        // refusal leaves the file as good as it was.
        switch e.resultCode {
        case .SQLITE_CORRUPT, .SQLITE_NOTADB: return true
        default: return false
        }
    }

    static func isBusy(_ error: Error) -> Bool {
        guard let e = error as? DatabaseError else { return false }
        return e.resultCode == .SQLITE_BUSY || e.resultCode == .SQLITE_LOCKED
    }

    static let decoder = JSONDecoder()

    /// Manifests decoded once per process: a tick re-reads every live run, and its stored
    /// manifest changes only when the run is applied again. Keyed by run id; a row whose text
    /// differs from the one decoded is decoded afresh.
    let manifests = ManifestCache()

    /// A decoding error in a few words (Foundation's own text is long and nested).
    static func decodingReason(_ error: Error) -> String {
        switch error as? DecodingError {
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .keyNotFound(_, let c), .dataCorrupted(let c):
            let at = c.codingPath.map(\.stringValue).joined(separator: ".")
            return at.isEmpty ? c.debugDescription : "\(at): \(c.debugDescription)"
        default:
            return "\(error)"
        }
    }

    static func reason(_ error: Error) -> String {
        if let e = error as? DatabaseError {
            switch e.resultCode {
            case .SQLITE_NOTADB, .SQLITE_CORRUPT: return "it is not a valid repl database (corrupt or truncated)"
            case .SQLITE_BUSY, .SQLITE_LOCKED: return "another repl is writing to it (it stayed busy); try again in a moment"
            case .SQLITE_READONLY: return "it is read-only (check its permissions and those of its directory); commands that only read still work"
            case .SQLITE_FULL: return "the disk is full; free some space and try again"
            case .SQLITE_IOERR: return "a disk I/O error (is the disk full or failing?); free some space and try again"
            case .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_AUTH: return "it cannot be opened (check its permissions and those of its directory)"
            default: return e.message ?? "\(e.resultCode)"
            }
        }
        if let e = error as? CocoaError { return e.localizedDescription }
        return "\(error)"
    }

    deinit { scratch.map { try? FileManager.default.removeItem(at: $0) } }

    /// A private copy of a database file and its WAL, to read what cannot be opened in place.
    static func privateCopy(of path: String) throws -> URL {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("repl-readonly-\(UUID().uuidString)")
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        do {
            for suffix in ["", "-wal"] where suffix.isEmpty || fm.fileExists(atPath: path + suffix) {
                let copy = dir.appendingPathComponent("state.db" + suffix).path
                try fm.copyItem(atPath: path + suffix, toPath: copy)
                // The copy keeps the original's mode, which is what made it read-only.
                try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: copy)
            }
        } catch {
            try? fm.removeItem(at: dir)
            throw error
        }
        return dir
    }

    func write<T>(_ body: (Database) throws -> T) throws(StoreError) -> T {
        if let readOnlyReason {
            throw StoreError("\(path) cannot be written: \(readOnlyReason); commands that only read still work")
        }
        do { return try db.write(body) } catch let e as StoreError { throw e } catch {
            throw StoreError("state store write failed: \(Store.reason(error))")
        }
    }

    func read<T>(_ body: (Database) throws -> T) throws(StoreError) -> T {
        do { return try db.read(body) } catch let e as StoreError { throw e } catch {
            throw StoreError("state store read failed: \(Store.reason(error))")
        }
    }

    /// A throwaway copy of this store, for previews (`plan`, `apply --dry-run`).
    public func scratchCopy() throws(StoreError) -> Store {
        // The installation's control id is made here, not in the copy: a preview then shows the
        // machine names that applying will use.
        if !isReadOnly { _ = try controlID() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("repl-preview-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let copy = try DatabaseQueue(path: dir.appendingPathComponent("state.db").path)
            try db.backup(to: copy)
        } catch {
            throw StoreError("cannot copy the state for a preview: \(Store.reason(error))")
        }
        return try Store(directory: dir)
    }

    // MARK: - Control id

    /// The installation's control id, made on first use.
    /// The control id if one was made, without making one (read commands).
    public func existingControlID() throws(StoreError) -> ControlID? {
        try read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'control_id'") }.flatMap(ControlID.init)
    }

    public func controlID() throws(StoreError) -> ControlID {
        // Read first: a store that has one (always, once used) needs no write to say it.
        if let id = try read({ db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'control_id'") }).flatMap(ControlID.init) {
            return id
        }
        return try write { db in
            if let text = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'control_id'"), let id = ControlID(text) {
                return id
            }
            let id = ControlID.generate()
            try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('control_id', ?)", arguments: [id.rawValue])
            return id
        }
    }

    /// Adopts another control id (recovery).
    public func setControlID(_ id: ControlID) throws(StoreError) {
        try write { db in try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('control_id', ?)", arguments: [id.rawValue]) }
    }

    // MARK: - Manifests

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    /// What applying a set changed, per document.
    public enum ApplyChange: Sendable, Equatable, CustomStringConvertible {
        case created(String), replaced(String, generation: Int), updated(String), unchanged(String)

        /// What a user reads: `hello: created`.
        public var description: String {
            switch self {
            case .created(let n): return "\(n): created"
            case .replaced(let n, let g): return "\(n): changed, replacing its machines (generation \(g))"
            case .updated(let n): return "\(n): updated in place"
            case .unchanged(let n): return "\(n): unchanged"
            }
        }

        public var isChange: Bool { if case .unchanged = self { return false } else { return true } }

        /// For `--json`: `{"name": …, "change": "created|replaced|updated|unchanged"[, "generation": N]}`.
        public var json: [String: Any] {
            switch self {
            case .created(let n): return ["name": n, "change": "created"]
            case .replaced(let n, let g): return ["name": n, "change": "replaced", "generation": g]
            case .updated(let n): return ["name": n, "change": "updated"]
            case .unchanged(let n): return ["name": n, "change": "unchanged"]
            }
        }
    }

    /// Records a validated set of manifests atomically: new runs, new generations for
    /// changed ones, in-place updates of replicas/hold/maxDuration/labels, new snapshots.
    @discardableResult
    public func apply(_ set: ManifestSet, now: Date = Date()) throws(StoreError) -> [ApplyChange] {
        try write { db in
            var changes: [ApplyChange] = []
            for run in set.runs {
                let json = String(decoding: try Store.encoder.encode(run), as: UTF8.self)
                let fingerprint = run.generationFingerprint
                if let row = try Row.fetchOne(
                    db, sql: "SELECT id, manifest, fingerprint, generation, cancelled, deleted FROM runs WHERE name = ?", arguments: [run.name])
                {
                    let id: Int64 = row["id"]
                    let generation: Int = row["generation"]
                    let revived = (row["cancelled"] as Int) != 0 || (row["deleted"] as Int) != 0
                    if row["fingerprint"] as String != fingerprint || revived {
                        try db.execute(
                            sql:
                                "UPDATE runs SET manifest = ?, fingerprint = ?, generation = ?, cancelled = 0, deleted = 0, updated_at = ?, \(Store.touched) WHERE id = ?",
                            arguments: [json, fingerprint, generation + 1, now.timeIntervalSince1970, id])
                        changes.append(.replaced(run.name, generation: generation + 1))
                    } else if row["manifest"] as String != json {
                        try db.execute(
                            sql: "UPDATE runs SET manifest = ?, updated_at = ?, \(Store.touched) WHERE id = ?",
                            arguments: [json, now.timeIntervalSince1970, id])
                        changes.append(.updated(run.name))
                    } else {
                        changes.append(.unchanged(run.name))
                    }
                } else {
                    let id = try Store.next(db, "manifest")
                    try db.execute(
                        sql: "INSERT INTO runs (id, name, manifest, fingerprint, generation, created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?)",
                        arguments: [id, run.name, json, fingerprint, now.timeIntervalSince1970, now.timeIntervalSince1970])
                    changes.append(.created(run.name))
                }
            }
            for snap in set.snapshots {
                if let row = try Row.fetchOne(db, sql: "SELECT id, deleted FROM snapshots WHERE name = ?", arguments: [snap.name]) {
                    if (row["deleted"] as Int) == 0 { changes.append(.unchanged(snap.name)); continue }
                    try db.execute(sql: "DELETE FROM snapshots WHERE id = ?", arguments: [row["id"] as Int64])
                }
                let id = try Store.next(db, "manifest")
                let instance = try Store.next(db, "instance")
                try db.execute(
                    sql: "INSERT INTO snapshots (id, name, from_run, instance_id, applied_at) VALUES (?, ?, ?, ?, ?)",
                    arguments: [id, snap.name, snap.from, instance, now.timeIntervalSince1970])
                // Its source run is read by ticks again, so that the plan says what it waits for.
                try db.execute(sql: "UPDATE runs SET \(Store.touched) WHERE name = ? AND archived = 1", arguments: [snap.from])
                changes.append(.created(snap.name))
            }
            return changes
        }
    }

    static func next(_ db: Database, _ counter: String) throws -> Int64 {
        let value = try Int64.fetchOne(db, sql: "SELECT value FROM counters WHERE name = ?", arguments: [counter]) ?? 1
        try db.execute(sql: "UPDATE counters SET value = ? WHERE name = ?", arguments: [value + 1, counter])
        return value
    }

    /// Names of runs and snapshots that are not deleted, for validating references.
    public func knownNames() throws(StoreError) -> (runs: Set<String>, snapshots: Set<String>) {
        try read { db in
            (
                Set(try String.fetchAll(db, sql: "SELECT name FROM runs WHERE deleted = 0")),
                Set(try String.fetchAll(db, sql: "SELECT name FROM snapshots WHERE deleted = 0"))
            )
        }
    }

    // MARK: - Desired state

    static func date(_ row: Row, _ column: String) -> Date? {
        (row[column] as Double?).map { Date(timeIntervalSince1970: $0) }
    }

    static func instance(_ row: Row) throws(StoreError) -> InstanceState {
        let c = Cells(row: row, what: "instance \(Base36.encode(UInt64(bitPattern: Int64.fromDatabaseValue(row["id"] as DatabaseValue) ?? 0)))")
        let phaseText = try c.string("phase")
        guard let phase = InstancePhase(rawValue: phaseText) else { throw c.damaged("phase", "\"\(phaseText)\" is no phase") }
        let generation = try c.int("generation")
        guard generation >= 1 else { throw c.damaged("generation", "\(generation)") }
        return InstanceState(
            id: InstanceID(try c.int64("id")), generation: generation, phase: phase, retired: try c.int("retired") != 0,
            createdAt: try c.date("created_at"), startedAt: try c.date("started_at"), finishedAt: try c.date("finished_at"),
            exitCode: try c.optionalInt("exit_code"), logsCollected: try c.int("logs_collected") != 0,
            reason: try c.optionalString("reason"))
    }

    /// A row's cells read as the schema says they are, or an error naming the row and the
    /// column (a value of another type, written by hand or by a damaged file, is never read as
    /// something else, and never crashes: GRDB's own conversion stops the process).
    struct Cells {
        let row: Row
        let what: String

        func damaged(_ column: String, _ why: String) -> StoreError {
            StoreError(
                "the store's \(what) has a damaged \(column) (\(why)); nothing was changed. Move state.db aside and run repl recover to rebuild the store from the machines"
            )
        }

        func optional<T: DatabaseValueConvertible>(_ column: String, _ type: T.Type) throws(StoreError) -> T? {
            let value = row[column] as DatabaseValue
            if value.isNull { return nil }
            guard let converted = T.fromDatabaseValue(value), Cells.sameKind(value, as: T.self) else {
                throw damaged(column, "holds \(String(describing: value).prefix(40))")
            }
            return converted
        }

        func required<T: DatabaseValueConvertible>(_ column: String, _ type: T.Type) throws(StoreError) -> T {
            guard let value = try optional(column, type) else { throw damaged(column, "is empty") }
            return value
        }

        /// Text is not a number, a number is not text (SQLite would convert either way).
        static func sameKind<T>(_ value: DatabaseValue, as: T.Type) -> Bool {
            switch value.storage {
            case .string: return T.self == String.self
            case .blob: return T.self == String.self
            case .int64: return T.self != String.self
            case .double: return T.self == Double.self
            case .null: return true
            }
        }

        func int64(_ column: String) throws(StoreError) -> Int64 { try required(column, Int64.self) }
        func int(_ column: String) throws(StoreError) -> Int { try required(column, Int.self) }
        func optionalInt(_ column: String) throws(StoreError) -> Int? { try optional(column, Int.self) }
        func string(_ column: String) throws(StoreError) -> String { try required(column, String.self) }
        func optionalString(_ column: String) throws(StoreError) -> String? { try optional(column, String.self) }
        func date(_ column: String) throws(StoreError) -> Date? {
            let value = row[column] as DatabaseValue
            switch value.storage {
            case .null: return nil
            case .double(let d): return Date(timeIntervalSince1970: d)
            case .int64(let i): return Date(timeIntervalSince1970: Double(i))
            default: throw damaged(column, "holds \(String(describing: value).prefix(40))")
            }
        }
    }

    /// What an update of a run also does: it is read by ticks again, and its revision moves
    /// (so that an archive decided on an older read does not apply).
    static let touched = "archived = 0, revision = revision + 1"

    /// Every run (deleted ones included, with their history) and snapshot, read fresh.
    /// `liveOnly` leaves out archived runs: what a tick reads.
    /// `named` reads only the runs of that name (a command that shows one run reads one).
    public func runs(includeDeleted: Bool = true, liveOnly: Bool = false, named: String? = nil) throws(StoreError) -> [RunRecord] {
        try read { db in
            var instancesByRun: [Int64: [InstanceState]] = [:]
            let instances =
                named != nil
                ? "SELECT instances.* FROM runs JOIN instances ON instances.run_id = runs.id WHERE runs.name = ? ORDER BY instances.id"
                : liveOnly
                    ? "SELECT instances.* FROM runs JOIN instances ON instances.run_id = runs.id WHERE runs.archived = 0 ORDER BY instances.id"
                    : "SELECT * FROM instances ORDER BY id"
            let byName: StatementArguments = named.map { [$0] } ?? []
            for row in try Row.fetchAll(db, sql: instances, arguments: byName) {
                let instance = try Store.instance(row)
                let run = try Cells(row: row, what: "instance \(Base36.encode(instance.id))").int64("run_id")
                instancesByRun[run, default: []].append(instance)
            }
            var filters: [String] = []
            if !includeDeleted { filters.append("deleted = 0") }
            if liveOnly { filters.append("archived = 0") }
            if named != nil { filters.append("name = ?") }
            let filter = filters.isEmpty ? "" : "WHERE " + filters.joined(separator: " AND ")
            let errors = Dictionary(
                try Row.fetchAll(db, sql: "SELECT machine, last_error FROM backoff").map { ($0["machine"] as String, $0["last_error"] as String) },
                uniquingKeysWith: { a, _ in a })
            let cid = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'control_id'").flatMap(ControlID.init)
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM runs \(filter) ORDER BY id", arguments: byName)
            var texts: [(run: Int64, text: String)] = []
            texts.reserveCapacity(rows.count)
            for row in rows {
                let c = Cells(row: row, what: "run \(String.fromDatabaseValue(row["name"] as DatabaseValue) ?? "?")")
                texts.append((try c.int64("id"), try c.string("manifest")))
            }
            let decoded = manifests.manifests(of: texts)
            return try zip(rows, decoded).map { row, result in
                let name = String.fromDatabaseValue(row["name"] as DatabaseValue) ?? "?"
                let c = Cells(row: row, what: "run \(name)")
                let id = try c.int64("id")
                // A row that cannot be read is never left out: its machines would look like
                // orphans, deleted by the next sweep. Everything stops, naming it.
                let manifest: RunManifest
                switch result {
                case .success(let m): manifest = m
                case .failure(let error):
                    throw StoreError(
                        "\(self.path): the stored manifest of run \(name) (#\(Base36.encode(UInt64(id)))) cannot be read (\(Store.decodingReason(error))); nothing was changed. Apply its manifest again (repl apply -f FILE) to replace it"
                    )
                }
                // What a manifest's own checks would refuse, or a generation no apply makes, is
                // damage: acting on it would retire or delete the run's running machines.
                guard (0...ManifestParser.maxReplicas).contains(manifest.replicas) else {
                    throw c.damaged("manifest", "replicas \(manifest.replicas)")
                }
                let generation = try c.int("generation")
                guard generation >= 1 else { throw c.damaged("generation", "\(generation)") }
                let instances = instancesByRun[id] ?? []
                if let newer = instances.first(where: { $0.generation > generation }) {
                    throw c.damaged("generation", "\(generation), below its instance \(Base36.encode(newer.id))'s \(newer.generation)")
                }
                let deleted = try c.int("deleted") != 0
                let run = DesiredRun(
                    id: RunID(id), manifest: manifest, generation: generation,
                    cancelled: try c.int("cancelled") != 0 || deleted, instances: instances,
                    revision: try c.int("revision"))
                let lastError = cid.flatMap { cid in
                    run.instances.lazy.compactMap { errors[MachineName(controlID: cid, manifestID: run.id, instanceID: $0.id).description] }.first
                }
                return RunRecord(run: run, deleted: deleted, createdAt: try c.date("created_at") ?? Date(), lastError: lastError)
            }
        }
    }

    public func snapshots() throws(StoreError) -> [DesiredSnapshot] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM snapshots ORDER BY id").map { row in
                let c = Cells(row: row, what: "snapshot \(String.fromDatabaseValue(row["name"] as DatabaseValue) ?? "?")")
                return DesiredSnapshot(
                    id: RunID(try c.int64("id")), name: try c.string("name"), fromRun: try c.string("from_run"),
                    instanceID: InstanceID(try c.int64("instance_id")), deleted: try c.int("deleted") != 0,
                    createdAt: try c.date("created_at"))
            }
        }
    }

    /// Why the machine of instance `id` may not be taken for an orphan: its row exists but
    /// names a run that does not (a damaged store; nil when the store is whole there). Asked
    /// for each orphan about to be deleted, rather than scanning every instance each tick.
    public func strayInstance(_ id: InstanceID) throws(StoreError) -> StoreError? {
        try read { db -> StoreError? in
            guard let row = try Row.fetchOne(db, sql: "SELECT id, run_id FROM instances WHERE id = ?", arguments: [Int64(bitPattern: id)]) else {
                return nil
            }
            let run = row["run_id"] as DatabaseValue
            if let runID = Int64.fromDatabaseValue(run), try Bool.fetchOne(db, sql: "SELECT 1 FROM runs WHERE id = ?", arguments: [runID]) == true {
                return nil
            }
            return Cells(row: row, what: "instance \(Base36.encode(id))").damaged("run_id", "no run \(run.description)")
        }
    }

    /// Desired state for the planner: live runs only (archived ones have nothing left to do).
    public func desiredState() throws(StoreError) -> DesiredState {
        let runs = try runs(liveOnly: true).map(\.run)
        let snapshots = try snapshots()
        let next = try read { db in try Int64.fetchOne(db, sql: "SELECT value FROM counters WHERE name = 'instance'") ?? 1 }
        return DesiredState(runs: runs, snapshots: snapshots, nextInstanceID: InstanceID(next))
    }

    /// Archives runs that have nothing left to do (see `Planner.settledRuns`): ticks stop
    /// reading them, history commands still show them. A run changed since it was read (its
    /// revision moved) is left live. Their machines' backoff rows go with them. Returns how
    /// many were archived.
    @discardableResult
    public func archive(_ runs: [DesiredRun], controlID: ControlID) throws(StoreError) -> Int {
        guard !runs.isEmpty else { return 0 }
        return try write { db in
            var archived = 0
            for run in runs {
                try db.execute(
                    sql: "UPDATE runs SET archived = 1 WHERE id = ? AND revision = ? AND archived = 0",
                    arguments: [Int64(run.id), run.revision])
                guard db.changesCount > 0 else { continue }
                archived += 1
                for instance in run.instances {
                    try db.execute(
                        sql: "DELETE FROM backoff WHERE machine = ?",
                        arguments: [MachineName(controlID: controlID, manifestID: run.id, instanceID: instance.id).description])
                }
            }
            return archived
        }
    }

    /// Removes the history of deleted runs: those deleted (and settled, their machines gone)
    /// before `cutoff`, with their instances and events. Returns them, for their logs to go too.
    public func prune(deletedBefore cutoff: Date) throws(StoreError) -> [DesiredRun] {
        let gone = try runs().filter(\.deleted).map(\.run)
        return try write { db in
            var pruned: [DesiredRun] = []
            for run in gone {
                // Settled: archived by a controller, or every instance ended with its logs
                // collected (its machine was deleted right after) or never started.
                let settled = run.instances.allSatisfy { $0.phase.isTerminal && ($0.logsCollected || $0.startedAt == nil) }
                guard
                    try Int.fetchOne(
                        db, sql: "SELECT COUNT(*) FROM runs WHERE id = ? AND deleted = 1 AND (archived = 1 OR ?) AND updated_at < ?",
                        arguments: [Int64(run.id), settled, cutoff.timeIntervalSince1970]) == 1
                else { continue }
                try db.execute(sql: "DELETE FROM instances WHERE run_id = ?", arguments: [Int64(run.id)])
                try db.execute(sql: "DELETE FROM events WHERE run_id = ?", arguments: [Int64(run.id)])
                try db.execute(sql: "DELETE FROM runs WHERE id = ?", arguments: [Int64(run.id)])
                pruned.append(run)
            }
            return pruned
        }
    }

    /// How many runs are archived and how many live (for `doctor` and the benchmark).
    public func runCounts() throws(StoreError) -> (live: Int, archived: Int) {
        try read { db in
            (
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM runs WHERE archived = 0") ?? 0,
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM runs WHERE archived = 1") ?? 0
            )
        }
    }

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
            if let parsed = MachineName(parsing: machine) {
                try db.execute(sql: "DELETE FROM snapshots WHERE instance_id = ? AND deleted = 1", arguments: [Int64(parsed.instanceID)])
            }
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
            return (row["cancelled"] as Int) == 0 && (row["deleted"] as Int) == 0 && (row["retired"] as Int) == 0
                && (row["run_generation"] as Int) == (row["generation"] as Int)
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
            try db.execute(
                sql: "INSERT INTO events (at, kind, machine, run_id, message) VALUES (?, ?, ?, ?, ?)",
                arguments: [now.timeIntervalSince1970, kind, machine, action.instance.map { Int64($0.run) }, "\(action)"])
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
                out[InstanceID(row["id"] as Int64)] = Date(timeIntervalSince1970: row["last_probe_at"])
            }
            return out
        }
    }

    // MARK: - Intents

    /// Records an intent before the orbctl call; returns its id.
    public func openIntent(machine: String, action: String, pid: Int32 = getpid(), now: Date = Date()) throws(StoreError) -> Int64 {
        try write { db in
            try db.execute(
                sql: "INSERT INTO intents (machine, action, pid, at) VALUES (?, ?, ?, ?)",
                arguments: [machine, action, Int64(pid), now.timeIntervalSince1970])
            return db.lastInsertedRowID
        }
    }

    public func closeIntent(_ id: Int64) throws(StoreError) {
        try write { db in try db.execute(sql: "DELETE FROM intents WHERE id = ?", arguments: [id]) }
    }

    /// Intents left open (by a process that crashed or is still acting).
    public func openIntents() throws(StoreError) -> [(id: Int64, machine: String, action: String, pid: Int32)] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM intents ORDER BY id").map { ($0["id"], $0["machine"], $0["action"], Int32($0["pid"] as Int64)) }
        }
    }

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

    // MARK: - Recovery

    /// Whether the store holds no runs and no snapshots (a fresh or lost database).
    public func isEmpty() throws(StoreError) -> Bool {
        try read { db in
            try Int.fetchOne(db, sql: "SELECT (SELECT COUNT(*) FROM runs) + (SELECT COUNT(*) FROM snapshots)") == 0
        }
    }

    /// Records a run rebuilt from its machines: its manifest, id and generation, and an
    /// instance per machine. Counters move past every recovered id.
    public func insertRecovered(
        run: RunManifest, id: RunID, generation: Int,
        instances: [(id: InstanceID, phase: InstancePhase, createdAt: Date?, exitCode: Int?)], now: Date = Date()
    ) throws(StoreError) {
        try write { db in
            let json = String(decoding: try Store.encoder.encode(run), as: UTF8.self)
            try db.execute(
                sql: "INSERT OR REPLACE INTO runs (id, name, manifest, fingerprint, generation, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                arguments: [Int64(id), run.name, json, run.generationFingerprint, generation, now.timeIntervalSince1970, now.timeIntervalSince1970])
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
            if let row = try Row.fetchOne(db, sql: "SELECT * FROM lease WHERE id = 1"), let other = Store.otherHolder(row, now: now) {
                return other
            }
            let me = Store.identity
            try db.execute(
                sql: "INSERT OR REPLACE INTO lease (id, holder, pid, expires_at, token, boot, namespace, started) VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                arguments: [holder, Int64(getpid()), now.timeIntervalSince1970 + duration, Store.token, me?.boot, me?.namespace, me?.start])
            return nil
        }
    }

    /// The holder a lease row names, unless it is this process, has expired, or is proven dead.
    static func otherHolder(_ row: Row, now: Date) -> LeaseHolder? {
        let pid = Int32(row["pid"] as Int64)
        let expires = Date(timeIntervalSince1970: row["expires_at"])
        let holder = LeaseHolder(holder: row["holder"], pid: pid, expiresAt: expires)
        guard expires > now else { return nil }
        guard let token = row["token"] as String? else {
            // A lease written before holders had identities: judged by its pid alone.
            return pid != getpid() && isAlive(pid) ? holder : nil
        }
        if token == Store.token { return nil }
        guard let me = identity, row["boot"] as String? == me.boot, row["namespace"] as String? == me.namespace else { return holder }
        guard let theirs = Platform.identity(of: pid) else { return nil }  // no such process: dead
        return theirs.start == row["started"] as String? ? holder : nil  // another start: the pid was reused
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
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM lease WHERE id = 1") else { return nil }
            if row["token"] as String? == Store.token {
                let expires = Date(timeIntervalSince1970: row["expires_at"])
                return expires > now ? LeaseHolder(holder: row["holder"], pid: getpid(), expiresAt: expires) : nil
            }
            return Store.otherHolder(row, now: now)
        }
    }

    public static func isAlive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 || errno == EPERM }
}

/// Stored manifests as decoded, by run id, with the text they were decoded from.
final class ManifestCache: @unchecked Sendable {
    private let lock = NSLock()
    private var decoded: [Int64: (text: String, manifest: RunManifest)] = [:]

    func manifest(run: Int64, text: String) throws -> RunManifest {
        if let hit = lock.withLock({ decoded[run] }), hit.text == text { return hit.manifest }
        let manifest = try Store.decoder.decode(RunManifest.self, from: Data(text.utf8))
        lock.withLock { decoded[run] = (text, manifest) }
        return manifest
    }

    /// Many manifests at once, in order: decoded on every core when there are enough of them
    /// (decoding was a quarter of `run list` with 1,000 runs).
    func manifests(of rows: [(run: Int64, text: String)]) -> [Result<RunManifest, any Error>] {
        guard rows.count >= 64 else { return rows.map { row in Result { try manifest(run: row.run, text: row.text) } } }
        let results = Results(count: rows.count)
        let chunks = min(ProcessInfo.processInfo.activeProcessorCount * 2, rows.count / 32)
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            for i in stride(from: chunk, to: rows.count, by: chunks) {
                results.set(i, Result { try manifest(run: rows[i].run, text: rows[i].text) })
            }
        }
        return results.all
    }

    /// Results written by index from several threads.
    private final class Results: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [Result<RunManifest, any Error>?]
        init(count: Int) { values = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ value: Result<RunManifest, any Error>) { lock.withLock { values[i] = value } }
        var all: [Result<RunManifest, any Error>] { lock.withLock { values.map { $0! } } }
    }

    /// How many manifests were decoded (for tests).
    var count: Int { lock.withLock { decoded.count } }
}
