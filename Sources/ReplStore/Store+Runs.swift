import Foundation
import GRDB
import ReplCore
import ReplPlatform

/// The installation's id, the manifests applied, and the desired state read from them.
extension Store {
    // MARK: - Control id

    /// The installation's control id, made on first use.
    /// The control id if one was made, without making one (read commands).
    public func existingControlID() throws(StoreError) -> ControlID? {
        try read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'control_id'") }.flatMap(ControlID.init)
    }

    public func controlID() throws(StoreError) -> ControlID {
        // Read first: a store that has one (always, once used) needs no write to say it.
        if let text = try read({ db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'control_id'") }) {
            return try Self.controlID(text)
        }
        return try write { db in
            if let text = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'control_id'") { return try Self.controlID(text) }
            // Only a store that never held a run is given one: in a used store the id names
            // its machines, and a new one would abandon them as foreign.
            if try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM runs) OR EXISTS (SELECT 1 FROM snapshots)") == true {
                throw StoreError(
                    "the store's meta has no control_id, yet it holds runs (their machines carry the id); nothing was changed. Move state.db aside and run repl recover to rebuild the store from the machines"
                )
            }
            let id = ControlID.generate()
            try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('control_id', ?)", arguments: [id.rawValue])
            return id
        }
    }

    static func controlID(_ text: String) throws(StoreError) -> ControlID {
        guard let id = ControlID(text) else {
            throw StoreError(
                "the store's meta has a damaged control_id (\(String(text.prefix(40)).debugDescription) is not six letters and digits); nothing was changed. Move state.db aside and run repl recover to rebuild the store from the machines"
            )
        }
        return id
    }

    /// Adopts another control id (recovery).
    public func setControlID(_ id: ControlID) throws(StoreError) {
        try write { db in try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('control_id', ?)", arguments: [id.rawValue]) }
    }

    // MARK: - Provider

    /// The provider this store's runs are on, and its settings (for aws, `region` and
    /// `endpoint`): OrbStack until a run of another provider is applied to an empty store.
    public func provider() throws(StoreError) -> (name: String, settings: [String: String]) {
        try read { db in
            var settings: [String: String] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT key, value FROM meta WHERE key LIKE 'provider%'") {
                let key: String = row["key"], value: String = row["value"]
                if key.hasPrefix("provider.") { settings[String(key.dropFirst("provider.".count))] = value }
            }
            let name = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'provider'") ?? "orbstack"
            return (name, settings)
        }
    }

    /// The AWS account this state directory's instances are in, as recorded at its first use
    /// with aws (nil before).
    public func awsAccount() throws(StoreError) -> String? {
        try read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'aws.account'") }
    }

    public func recordAWSAccount(_ account: String) throws(StoreError) {
        try write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('aws.account', ?)", arguments: [account])
        }
    }

    /// Puts the store on `provider` with `settings`: one provider per store, so that one
    /// provider's list never makes another's machines look gone. A store that has runs or
    /// snapshots left (not archived) of another provider, or of other settings, keeps its own;
    /// the error says which. With `checkOnly` nothing is written.
    public func bind(provider: String, settings: [String: String] = [:], checkOnly: Bool = false) throws(StoreError) {
        try write { db in
            let current = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'provider'") ?? "orbstack"
            var currentSettings: [String: String] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT key, value FROM meta WHERE key LIKE 'provider.%'") {
                let key: String = row["key"], value: String = row["value"]
                currentSettings[String(key.dropFirst("provider.".count))] = value
            }
            if current == provider && currentSettings == settings { return }
            let inUse =
                try Bool.fetchOne(
                    db, sql: "SELECT EXISTS (SELECT 1 FROM runs WHERE archived = 0) OR EXISTS (SELECT 1 FROM snapshots WHERE deleted = 0)")
                == true
            if inUse {
                let what = { (name: String, settings: [String: String]) in
                    ([name] + settings.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }).joined(separator: ", ")
                }
                throw StoreError(
                    "this state directory's runs are on \(what(current, currentSettings)), not \(what(provider, settings)): one provider (and region) per state directory, so that one's list never makes the other's machines look gone. Give the other its own: REPL_HOME=~/.repl-\(provider) or --state-dir"
                )
            }
            if checkOnly { return }
            try db.execute(sql: "DELETE FROM meta WHERE key LIKE 'provider%'")
            if provider != "orbstack" || !settings.isEmpty {
                try db.execute(sql: "INSERT INTO meta (key, value) VALUES ('provider', ?)", arguments: [provider])
                for (key, value) in settings {
                    try db.execute(sql: "INSERT INTO meta (key, value) VALUES (?, ?)", arguments: ["provider.\(key)", value])
                }
            }
        }
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
        // The installation's control id exists before its first run does (a used store without
        // one is damage, which controlID names).
        _ = try controlID()
        return try write { db in
            var changes: [ApplyChange] = []
            for run in set.runs {
                let json = String(decoding: try Store.encoder.encode(run), as: UTF8.self)
                let fingerprint = run.generationFingerprint
                if let row = try Row.fetchOne(
                    db, sql: "SELECT id, manifest, fingerprint, generation, cancelled, deleted FROM runs WHERE name = ?", arguments: [run.name])
                {
                    let c = Cells(row: row, what: "run \(run.name)")
                    let id = try c.int64("id")
                    let generation = try c.int("generation")
                    let revived = try c.int("cancelled") != 0 || c.int("deleted") != 0
                    if try c.string("fingerprint") != fingerprint || revived {
                        try db.execute(
                            sql:
                                "UPDATE runs SET manifest = ?, fingerprint = ?, generation = ?, cancelled = 0, deleted = 0, updated_at = ?, \(Store.touched) WHERE id = ?",
                            arguments: [json, fingerprint, generation + 1, now.timeIntervalSince1970, id])
                        changes.append(.replaced(run.name, generation: generation + 1))
                    } else if try c.string("manifest") != json {
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
                    let c = Cells(row: row, what: "snapshot \(snap.name)")
                    if try c.int("deleted") == 0 { changes.append(.unchanged(snap.name)); continue }
                    try db.execute(sql: "DELETE FROM snapshots WHERE id = ?", arguments: [try c.int64("id")])
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
        func optionalInt64(_ column: String) throws(StoreError) -> Int64? { try optional(column, Int64.self) }
        func int32(_ column: String) throws(StoreError) -> Int32 { try required(column, Int32.self) }
        func int(_ column: String) throws(StoreError) -> Int { try required(column, Int.self) }
        func optionalInt(_ column: String) throws(StoreError) -> Int? { try optional(column, Int.self) }
        func string(_ column: String) throws(StoreError) -> String { try required(column, String.self) }
        func optionalString(_ column: String) throws(StoreError) -> String? { try optional(column, String.self) }
        /// Seconds since 1970 that a clock could have given: from 1970 to the year 3000 (a time
        /// outside overflowed the arithmetic of ages and deadlines).
        func plausible(_ column: String, _ seconds: Double) throws(StoreError) -> Date {
            guard seconds.isFinite, seconds >= 0, seconds <= 32_503_680_000 else { throw damaged(column, "\(seconds) is no time") }
            return Date(timeIntervalSince1970: seconds)
        }
        func requiredDate(_ column: String) throws(StoreError) -> Date {
            guard let date = try date(column) else { throw damaged(column, "is empty") }
            return date
        }
        func date(_ column: String) throws(StoreError) -> Date? {
            let value = row[column] as DatabaseValue
            switch value.storage {
            case .null: return nil
            case .double(let d): return try plausible(column, d)
            case .int64(let i): return try plausible(column, Double(i))
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
                try BackoffRecord.fetchAll(db).map { ($0.machine, $0.backoff.lastError) },
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
                    id: SnapshotID(try c.int64("id")), name: try c.string("name"), fromRun: try c.string("from_run"),
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
            guard let row = try Row.fetchOne(db, sql: "SELECT id, run_id FROM instances WHERE id = ?", arguments: [Int64(id)]) else {
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
}
