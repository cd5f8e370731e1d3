import Foundation
import GRDB
import ReplCore
import ReplPlatform
import ReplTestSupport
import Testing

@testable import ReplStore

/// The store refuses what it cannot trust and never overwrites it.
struct StoreTests {
    func directory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("repl-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Manifests are decoded once per process (#20), and a run applied again is read as
    /// applied, by this store and by another process's.
    @Test func manifestsAreDecodedOnceAndAReapplyIsSeen() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(directory: dir)
        try store.apply(try ManifestParser().parse("kind: Run\nname: a\ncommand: echo one\n---\nkind: Run\nname: b\n", file: "m.yaml"))
        for _ in 0..<3 { #expect(try store.runs().map(\.run.manifest.command) == ["echo one", nil]) }
        #expect(store.manifests.count == 2)
        // Applied again, elsewhere: the text changed under the same run id.
        let other = try Store(directory: dir)
        try other.apply(try ManifestParser(knownRuns: ["a", "b"]).parse("kind: Run\nname: a\ncommand: echo two\n", file: "m.yaml"))
        #expect(try store.runs().first?.run.manifest.command == "echo two")
    }

    /// A command that shows one run reads that run's rows only (#20): exactly its name, never
    /// a prefix or a look-alike.
    @Test func aRunIsReadByItsNameAlone() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(directory: dir)
        try store.apply(try ManifestParser().parse("kind: Run\nname: web\nreplicas: 2\n---\nkind: Run\nname: web-2\n", file: "m.yaml"))
        let runs = try store.runs()
        let web = try #require(runs.first { $0.run.manifest.name == "web" })
        try store.record(
            [.addInstance(run: web.run.id, instance: 7, generation: 1), .addInstance(run: web.run.id, instance: 8, generation: 1)], now: Date())
        let read = try store.runs(named: "web")
        #expect(read.map(\.run.manifest.name) == ["web"])
        #expect(read.first?.run.instances.map(\.id) == [7, 8])
        #expect(try store.runs(named: "we").isEmpty)
        #expect(try store.runs(named: "web-2").first?.run.instances.isEmpty == true)
    }

    @Test func aStoreFromANewerSchemaIsRefusedAndLeftAlone() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cid = try Store(directory: dir).controlID()
        let path = dir.appendingPathComponent("state.db").path
        let queue = try DatabaseQueue(path: path)
        try queue.write { try $0.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99')") }
        try queue.close()
        do {
            _ = try Store(directory: dir)
            Issue.record("a newer store was opened")
        } catch {
            #expect(error.description.contains("written by a newer version of repl"))
        }
        // Nothing was migrated or reset: the newer schema and the data are still there.
        let check = try DatabaseQueue(path: path)
        #expect(
            try check.read { try String.fetchAll($0, sql: "SELECT identifier FROM grdb_migrations ORDER BY identifier") } == [
                "v1", "v2", "v3", "v4", "v5", "v99",
            ])
        #expect(try check.read { try String.fetchOne($0, sql: "SELECT value FROM meta WHERE key = 'control_id'") } == cid.rawValue)
    }

    /// A store of the one breaker (v4) keeps it, tripped as it was, as OrbStack's address
    /// pool's breaker among the per-scope ones (v5).
    @Test func theOneBreakerOfAnOlderStoreIsKept() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let queue = try DatabaseQueue(path: dir.appendingPathComponent("state.db").path)
        try Store.migrator.migrate(queue, upTo: "v4")
        let until = Date().addingTimeInterval(300).timeIntervalSince1970.rounded()
        try queue.write {
            try $0.execute(
                sql: "INSERT INTO breaker (id, open_until, failures, message, tripped_at) VALUES (1, ?, 2, 'pool empty', ?)",
                arguments: [until, until - 60])
        }
        try queue.close()
        let store = try Store(directory: dir)
        let breaker = try store.breaker()
        #expect(breaker.failures == 2 && breaker.message == "pool empty" && breaker.openUntil?.timeIntervalSince1970 == until)
        #expect(try store.breakers().keys.sorted() == [""])
        try store.saveBreaker(Admission.trip(.closed, message: "no m5.large", now: Date()), scope: "m5.large in any zone")
        #expect(try store.breakers().keys.sorted() == ["", "m5.large in any zone"])
        try store.resetBreaker(scope: "")
        #expect(try store.breakers().keys.sorted() == ["m5.large in any zone"])
    }

    @Test(arguments: ["truncated", "garbage", "empty"])
    func aCorruptStoreIsRefusedAndNeverOverwritten(_ kind: String) throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(directory: dir)
        _ = try store.controlID()
        let path = dir.appendingPathComponent("state.db").path
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        data = kind == "truncated" ? data.prefix(100) : kind == "empty" ? Data() : Data(repeating: 0x42, count: 8192)
        try data.write(to: URL(fileURLWithPath: path))
        do {
            _ = try Store(directory: dir).controlID()
            Issue.record("a corrupt store was used")
        } catch {
            #expect(error.description.contains("cannot be used") || error.description.contains("not a valid repl database"), "\(error.description)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == data)
    }

    @Test func applyIsAtomicAndGenerationsFollowTheFingerprint() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(directory: dir)
        let parser = ManifestParser()
        #expect(try store.apply(parser.parse("kind: Run\nname: a\ncommand: x\n", file: "a")) == [.created("a")])
        #expect(try store.apply(parser.parse("kind: Run\nname: a\ncommand: x\n", file: "a")) == [.unchanged("a")])
        #expect(try store.apply(parser.parse("kind: Run\nname: a\ncommand: x\nreplicas: 3\n", file: "a")) == [.updated("a")])
        #expect(try store.apply(parser.parse("kind: Run\nname: a\ncommand: y\nreplicas: 3\n", file: "a")) == [.replaced("a", generation: 2)])
        let run = try #require(try store.runs().first?.run)
        #expect(run.generation == 2 && run.manifest.replicas == 3)
    }

    /// The store keeps what admission decides, as it was decided.
    @Test func backoffsAndTheBreakerAreKeptAsDecided() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(directory: dir)
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let backoff = Admission.backoff(after: Admission.backoff(after: nil, error: "boom", now: now), error: "boom", now: now)
        try store.saveBackoff(machine: "m", backoff)
        #expect(try store.backoffs() == ["m": backoff])
        #expect(try store.breaker() == .closed)
        let tripped = Admission.trip(.closed, message: "missing IP address", now: now)
        try store.saveBreaker(tripped)
        #expect(try store.breaker(now: now) == tripped)
        try store.resetBreaker()
        #expect(try store.breaker() == .closed)
    }

    /// Store errors by kind (#16): a busy store says another repl is writing, and never points
    /// at `repl recover` (which would discard history, whitelist and snapshots).
    @Test func aBusyStoreSaysSoAndNeverAdvisesRecover() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(directory: dir, busyTimeout: 0.2)
        _ = try store.controlID()
        var config = Configuration()
        config.allowsUnsafeTransactions = true
        let other = try DatabaseQueue(path: store.path, configuration: config)
        try other.inDatabase { try $0.execute(sql: "BEGIN EXCLUSIVE") }
        defer { try? other.inDatabase { try $0.execute(sql: "ROLLBACK") } }
        do {
            _ = try store.openIntent(machine: "m", action: "x")
            Issue.record("a write to a locked store succeeded")
        } catch {
            #expect(error.description.contains("another repl is writing"), "\(error.description)")
            #expect(!error.description.contains("recover"))
        }
    }

    /// History off the hot path, in part (#16): the event log is pruned by count and age.
    @Test func theEventLogIsBounded() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(directory: dir)
        store.event("old", "from two months ago", now: Date().addingTimeInterval(-60 * 86_400))
        for i in 0..<(Int(Store.maxEvents) + 50) { store.event("tick", "event \(i)") }
        let events = try store.events(limit: 100_000)
        #expect(events.count == Int(Store.maxEvents))
        #expect(!events.contains { $0.kind == "old" })
        #expect(events.contains { $0.message == "event \(Int(Store.maxEvents) + 49)" })
    }
}

/// A run whose stored manifest cannot be read is never dropped: dropping it made its machine
/// an orphan, deleted by the next sweep (found by an attacker, #16).
@Suite(.serialized) struct UnreadableRowTests {
    @Test(.machineCommands, arguments: ["{\"command\":garbage", "{\"name\":\"precious\",\"replicas\":\"1\"}"])
    func aRunWhoseManifestCannotBeReadStopsTheTickAndIsNamed(_ damage: String) async throws {
        let w = try World()
        try w.apply("kind: Run\nname: keep\n---\nkind: Run\nname: precious\n")
        try await w.tick(until: { try w.machines().filter { $0.state == .running }.count == 2 })
        let queue = try DatabaseQueue(path: w.store.path)
        try await queue.write { try $0.execute(sql: "UPDATE runs SET manifest = ? WHERE name = 'precious'", arguments: [damage]) }
        try queue.close()
        // Long after any orphan grace, the machine of the unreadable run stays, and the tick
        // says which run cannot be read.
        let report = await w.controller.tick(now: Date().addingTimeInterval(3600))
        #expect(report.outcomes.isEmpty)
        #expect(report.observationError?.contains("precious") == true, "\(report.observationError ?? "nil")")
        #expect(try w.machines().count == 2)
        do {
            _ = try w.store.runs()
            Issue.record("an unreadable run was read")
        } catch {
            #expect(error.description.contains("precious") && error.description.contains("apply"), "\(error.description)")
        }
    }
}

/// Rows that are damaged without being unreadable JSON (found by the attack on #20): a value
/// of another type crashed every command (GRDB's conversion stops the process), and values
/// no apply writes made the sweep delete running machines and start their commands again.
@Suite(.serialized) struct DamagedRowTests {
    @Test(
        .machineCommands,
        arguments: [
            ("UPDATE instances SET exit_code = 'x' WHERE run_id = (SELECT id FROM runs WHERE name = 'precious')", "exit_code"),
            ("UPDATE runs SET generation = 'abc' WHERE name = 'precious'", "generation"),
            ("UPDATE runs SET created_at = 'yesterday' WHERE name = 'precious'", "created_at"),
            ("UPDATE instances SET run_id = 99 WHERE run_id = (SELECT id FROM runs WHERE name = 'precious')", "run_id"),
            ("UPDATE runs SET generation = 0 WHERE name = 'precious'", "generation"),
            ("UPDATE instances SET phase = 'Exploded' WHERE run_id = (SELECT id FROM runs WHERE name = 'precious')", "phase"),
            ("UPDATE runs SET manifest = replace(manifest, '\"replicas\":1', '\"replicas\":-1') WHERE name = 'precious'", "replicas"),
        ])
    func aDamagedRowStopsTheTickAndTouchesNoMachine(_ damage: String, _ named: String) async throws {
        let w = try World()
        try w.apply("kind: Run\nname: keep\n---\nkind: Run\nname: precious\ncommand: sleep 600\n")
        try await w.tick(until: { try w.machines().filter { $0.state == .running }.count == 2 })
        // As a hand-made change would be (sqlite3 and Python's module leave foreign keys off).
        var configuration = Configuration()
        configuration.foreignKeysEnabled = false
        let queue = try DatabaseQueue(path: w.store.path, configuration: configuration)
        try await queue.write { try $0.execute(sql: damage) }
        try queue.close()
        let before = try w.machines().map(\.name).sorted()
        let report = await w.controller.tick(now: Date().addingTimeInterval(3600))
        #expect(report.outcomes.isEmpty, "acted on a damaged store: \(report.outcomes)")
        #expect(report.observationError?.contains(named) == true, "\(report.observationError ?? "nil")")
        #expect(try w.machines().map(\.name).sorted() == before)
    }
}

/// Two first commands at once on a fresh state directory (an apply meeting a cron sweep) both
/// migrate: neither fails, and neither calls the store corrupt (found by an attacker, #16).
struct FirstOpenRaceTests {
    @Test func manyProcessesOpeningAFreshStoreAtOnceAllSucceed() async throws {
        for round in 0..<12 {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("repl-race-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: dir) }
            var environment = ProcessInfo.processInfo.environment
            environment["REPL_HOME"] = dir.path
            let env = environment
            let results = try await withThrowingTaskGroup(of: ProcessResult.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        try await SystemProcessRunner.run(
                            Paths.repl, ["orphans", "whitelist", "repl-abcdef-1-\(round)", "--reason", "race"],
                            input: nil, timeout: 60, environment: env, limit: 1 << 16)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            for r in results { #expect(r.status == 0, "round \(round): \(r.stderrText)") }
        }
    }
}

/// The small tables are read through record types that check each cell (#21): a damaged
/// backoff, breaker, whitelist, event, intent or lease row is an error that names it, in every
/// command that reads it, never a crash (GRDB's subscript stops the process on a bad value).
@Suite(.serialized, .machineCommands) struct DamagedSmallTableTests {
    static let damages: [(sql: String, table: String)] = [
        ("INSERT INTO backoff (machine, attempts, next_at, last_error) VALUES ('repl-abcdef-1-1', 'many', 0, 'x')", "backoff"),
        ("INSERT INTO breakers (scope, open_until, failures, message) VALUES ('', 'later', 1, 'x')", "breaker"),
        ("INSERT INTO whitelist (name, reason, expires_at) VALUES ('repl-abcdef-1-1', 'x', 'soon')", "whitelist"),
        ("INSERT INTO events (at, kind, machine, run_id, message) VALUES ('noon', 'phase', NULL, NULL, 'x')", "event"),
        ("INSERT INTO intents (machine, action, pid, at) VALUES ('repl-abcdef-1-1', 'create', 'me', 0)", "intent"),
        ("INSERT OR REPLACE INTO lease (id, holder, pid, expires_at) VALUES (1, 'x', 'me', 'never')", "lease"),
        // Times no clock gives (found by an attacker: a crash in `run list`, a lease or breaker
        // that blocked every command for ever).
        ("UPDATE runs SET created_at = -1e19", "run"),
        ("UPDATE runs SET created_at = 1e308", "run"),
        ("INSERT OR REPLACE INTO lease (id, holder, pid, expires_at, token) VALUES (1, 'watch', 99999, 1e308, 'T')", "lease"),
        ("INSERT OR REPLACE INTO breakers (scope, open_until, failures, message) VALUES ('', 1e308, 1, 'x')", "breaker"),
        // A count that overflowed the next trip (found by attacking: a crash at the next exhaustion).
        ("INSERT OR REPLACE INTO breakers (scope, open_until, failures, message) VALUES ('', 1, 9223372036854775807, 'x')", "breaker"),
    ]

    @Test(arguments: 0..<damages.count)
    func aDamagedRowIsNamedNeverACrash(_ index: Int) async throws {
        let (sql, table) = Self.damages[index]
        let w = try World()
        try w.apply("kind: Run\nname: a\ncommand: 'true'\n")
        var configuration = Configuration()
        configuration.foreignKeysEnabled = false
        let queue = try DatabaseQueue(path: w.store.path, configuration: configuration)
        try await queue.write { try $0.execute(sql: sql) }
        try queue.close()
        for args in [
            ["status"], ["orphans", "list"], ["doctor"], ["apply", "-f", "/dev/null"], ["orphans", "sweep"], ["run", "events"], ["run", "list"],
        ] {
            let r = try await SystemProcessRunner.run(
                Paths.repl, ["--orbctl", w.orbctl] + args, input: nil, timeout: 60, environment: w.environment, limit: 1 << 20)
            #expect(r.status < 128 && !r.stderrText.contains("Fatal error"), "repl \(args.joined(separator: " ")) crashed: \(r.stderrText)")
            // doctor reads every table it shows: the damage is named, never shown as a free
            // lease or a closed breaker (the event log it does not read).
            if args == ["doctor"] && table != "event" { #expect(r.status != 0, "doctor said all well: \(r.stdoutText)") }
            if args == ["doctor"] && table == "lease" { #expect(!r.stdoutText.contains("lease:         free"), "\(r.stdoutText)") }
            if r.status != 0 && r.status != 2 {
                #expect(
                    (r.stderrText + r.stdoutText).contains(table),
                    "repl \(args.joined(separator: " ")) (exit \(r.status)): \(r.stderrText) \(r.stdoutText)")
            }
        }
    }
}

/// A lease or breaker that ends further ahead than any is ever set (a lease lasts 5 minutes, the
/// breaker opens for 10 at most) blocks nothing: found by an attacker, such a row made `watch`
/// wait and the sweep do nothing for ever. Not honoured, and taken by the next command.
@Suite(.serialized, .machineCommands) struct FarAheadTests {
    @Test(arguments: [
        "INSERT OR REPLACE INTO lease (id, holder, pid, expires_at, token, boot, namespace, started) VALUES (1, 'watch', 99999, strftime('%s','now') + 86400, 'T', 'other-boot', 'pid:[1]', '1')",
        "INSERT OR REPLACE INTO breakers (scope, open_until, failures, message) VALUES ('', strftime('%s','now') + 86400, 1, 'x')",
    ])
    func aTimeADayAheadBlocksNothing(_ sql: String) async throws {
        let w = try World()
        try w.apply("kind: Run\nname: a\ncommand: 'true'\n")
        let queue = try DatabaseQueue(path: w.store.path)
        try await queue.write { try $0.execute(sql: sql) }
        try queue.close()
        let sweep = try await w.repl(["orphans", "sweep"])
        #expect(sweep.status == 0 && !sweep.stdoutText.contains("holds the controller lease"), "\(sweep.stdoutText) \(sweep.stderrText)")
        #expect(try w.machines().count == 1, "the sweep created nothing")
        let doctor = try await w.repl(["doctor"])
        #expect(!doctor.stdoutText.contains("OPEN") && !doctor.stdoutText.contains("held by watch"), "\(doctor.stdoutText)")
    }
}

/// The control id names every machine of the store: one lost or damaged in a store that holds
/// runs is named, never replaced (found by an attacker: a new id was made up, the live fleet
/// became "foreign", its instances were failed as disappeared, and their commands ran on).
@Suite(.serialized) struct LostControlIDTests {
    @Test(.machineCommands, arguments: ["DELETE FROM meta WHERE key = 'control_id'", "UPDATE meta SET value = '' WHERE key = 'control_id'"])
    func aLostControlIDIsNamedAndNothingChanges(_ sql: String) async throws {
        let w = try World()
        try w.apply("kind: Run\nname: box\nreplicas: 2\n")
        try await w.tick { try w.wanted(w.run("box")).allSatisfy { $0.phase == .running } }
        let before = try w.machines().map(\.name).sorted()
        let queue = try DatabaseQueue(path: w.store.path)
        try await queue.write { try $0.execute(sql: sql) }
        let manifest = FileManager.default.temporaryDirectory.appendingPathComponent("box-\(UUID().uuidString).yaml")
        try "kind: Run\nname: box\nreplicas: 2\n".write(to: manifest, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: manifest) }
        for args in [["orphans", "sweep"], ["apply", "-f", manifest.path], ["doctor"]] {
            let r = try await w.repl(args)
            #expect(r.status != 0 && (r.stderrText + r.stdoutText).contains("control_id"), "\(args): \(r.status) \(r.stdoutText) \(r.stderrText)")
        }
        #expect(try w.machines().map(\.name).sorted() == before)
        #expect(try w.machines().allSatisfy { $0.state == .running })
        let meta = try await queue.read { try String.fetchOne($0, sql: "SELECT value FROM meta WHERE key = 'control_id'") }
        #expect(meta == nil || meta == "", "a new control id was saved: \(meta ?? "")")
        try queue.close()
    }
}

/// An instance row moved to a run that does not exist (a damaged store) hides a live machine
/// from its run: the first tick named it only when the machine came up as an orphan to delete,
/// after making a second machine that ran the command again (found by an attacker). Named at
/// once; nothing is created, started or deleted.
@Suite(.serialized) struct StrayInstanceTests {
    @Test(.machineCommands) func aStrayInstanceRowIsNamedBeforeAnythingIsMade() async throws {
        let w = try World()
        try w.apply("kind: Run\nname: r\ncommand: sleep 600\n")
        try await w.tick { try w.wanted(w.run("r")).first?.phase == .running }
        let before = try w.machines().map(\.name)
        var configuration = Configuration()
        configuration.foreignKeysEnabled = false  // as sqlite3 edits it
        let queue = try DatabaseQueue(path: w.store.path, configuration: configuration)
        try await queue.write { try $0.execute(sql: "UPDATE instances SET run_id = 999") }
        try queue.close()
        let report = await w.controller.tick()
        #expect(report.observationError?.contains("damaged run_id") == true, "\(report.observationError ?? "no error")")
        #expect(report.outcomes.isEmpty)
        #expect(try w.machines().map(\.name) == before)
    }
}
