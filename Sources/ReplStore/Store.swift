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
    /// A WAL database pool on the file; in memory, a queue (``init(inMemory:)``).
    let db: any DatabaseWriter
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
        // v5: a circuit breaker per capacity scope (OrbStack's address pool is "", an EC2
        // instance type in a zone another), the one breaker kept as scope "".
        m.registerMigration("v5") { db in
            try db.execute(
                sql: """
                    CREATE TABLE breakers (
                      scope TEXT PRIMARY KEY NOT NULL, open_until REAL, failures INTEGER NOT NULL, message TEXT, tripped_at REAL);
                    INSERT INTO breakers SELECT '', open_until, failures, message, tripped_at FROM breaker;
                    DROP TABLE breaker;
                    """)
        }
        return m
    }

    /// The schema version this build writes.
    public static let schemaVersion = "v5"

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

    /// A store in memory, for tests of the controller: the same schema, the same code and the
    /// same transactions as on a file (a hand-written twin of its tables could drift from them),
    /// without a file, so no other process can open it.
    public init(inMemory: Void) throws(StoreError) {
        var config = Configuration()
        config.foreignKeysEnabled = true
        do {
            let queue = try DatabaseQueue(configuration: config)
            try Store.migrator.migrate(queue)
            db = queue
        } catch {
            throw StoreError("cannot open a store in memory: \(Store.reason(error))")
        }
        path = ":memory:"
        readOnlyReason = nil
        scratch = nil
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
    static func checkSchema(_ db: any DatabaseReader, path: String) throws {
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
}
