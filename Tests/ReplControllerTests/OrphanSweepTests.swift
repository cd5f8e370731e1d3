import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import OrbStack
@testable import ReplController

/// `repl orphans sweep` and `repl recover`, run as the CLI against the emulator.
@Suite(.serialized) struct OrphanSweepTests {

    /// Owned, orphaned (young and old), foreign, whitelisted and unmanaged machines.
    func populate(_ w: World) async throws -> (old: [String], young: String, foreign: String, whitelisted: String, unmanaged: String) {
        try w.apply("kind: Run\nname: keep\ncommand: sleep 600\n")
        try await w.tick { try w.wanted(w.run("keep")).first?.phase == .running }
        let cid = try w.store.controlID()
        let old = ["repl-\(cid)-z1-z1", "repl-\(cid)-none-z2"]
        for name in old { try await w.sim(["create", "ubuntu", name]) }
        let foreign = "repl-zzzzzz-1-1"
        try await w.sim(["create", "ubuntu", foreign])
        let whitelisted = "repl-\(cid)-z3-z3"
        try await w.sim(["create", "ubuntu", whitelisted])
        try w.store.addToWhitelist(whitelisted, reason: "debugging", expires: nil)
        let unmanaged = "my-dev-box"
        try await w.sim(["create", "ubuntu", unmanaged])
        try await w.sim(["admin", "clock", "advance", "10m"])  // everything so far is old now
        let young = "repl-\(cid)-z4-z4"
        try await w.sim(["create", "ubuntu", young])
        return (old, young, foreign, whitelisted, unmanaged)
    }

    func names(_ w: World) async throws -> Set<String> { Set(try w.machines().map(\.name)) }

    /// Stops and deletes boot nothing (RPCs to OrbStack's daemon), so a sweep does not queue
    /// them behind the creates' limit of 4 (#20): 16 orphans' stops are in flight together.
    @Test func aSweepStopsOrphansBeyondTheCreateLimitAtOnce() async throws {
        let w = try World()
        let cid = try w.store.controlID()
        let orphans = (0..<16).map { "repl-\(cid)-none-o\($0)" }
        for name in orphans { try await w.sim(["create", "ubuntu", name]) }
        try await w.sim(["admin", "clock", "advance", "10m"])
        try await w.sim(["admin", "latency", "stop", "800"])
        try await w.sim(["admin", "calls", "--reset"])
        #expect(w.controller.settings.concurrency == 4)
        let report = await w.controller.tick()
        #expect(!report.failed)
        #expect(try w.machines().isEmpty)
        // The most stops whose spans overlap, from the emulator's call log.
        let log = try String(contentsOf: w.root.appendingPathComponent("sim/calls.jsonl"), encoding: .utf8)
        let stops = log.split(separator: "\n").compactMap { line -> (Int, Int)? in
            guard let call = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                (call["argv"] as? [String])?.first == "stop", let at = call["at"] as? Int, let ms = call["ms"] as? Int
            else { return nil }
            return (at, at + ms)
        }
        #expect(stops.count == 16)
        let overlap = stops.map { s in stops.filter { $0.0 <= s.0 && s.0 < $0.1 }.count }.max() ?? 0
        #expect(overlap > 4, "at most \(overlap) stops at once")
    }

    @Test(.machineCommands)
    func aSweepDeletesExactlyTheOldOrphans() async throws {
        let w = try World()
        let m = try await populate(w)
        let before = try await names(w)
        let dry = try await w.repl(["orphans", "sweep", "--dry-run", "--json"])
        #expect(dry.status == 0)
        let planned = try JSONSerialization.jsonObject(with: dry.stdout) as? [String: Any]
        let dryActions = (planned?["actions"] as? [[String: Any]] ?? []).compactMap { $0["action"] as? String }
        await #expect(try names(w) == before)  // --dry-run deletes nothing…
        #expect(Set(dryActions) == Set(m.old.map { "delete \($0) (orphan)" }))  // …and lists the same set
        // An orphan still in its grace is named with when it goes, never left unsaid (#18).
        let waiting = (planned?["waiting"] as? [[String: Any]] ?? []).compactMap { $0["machine"] as? String }
        #expect(waiting == [m.young], "\(planned ?? [:])")
        let told = try await w.repl(["orphans", "sweep", "--dry-run"])
        #expect(told.stdoutText.contains("\(m.young): orphan, deleted once its grace of 2m has passed, in "), "\(told.stdoutText)")
        let sweep = try await w.repl(["orphans", "sweep"])
        #expect(sweep.status == 0, "\(sweep.stderrText)")
        await #expect(try names(w) == before.subtracting(m.old))
        let foreign = try await w.repl(["orphans", "sweep", "--include-foreign"])
        #expect(foreign.status == 0)
        await #expect(try names(w) == before.subtracting(m.old + [m.foreign]))
        // The young orphan goes once its grace has passed; the whitelisted and unmanaged never do.
        try await w.sim(["admin", "clock", "advance", "3m"])
        await #expect(try w.repl(["orphans", "sweep", "--quiet"]).status == 0)
        await #expect(try names(w) == before.subtracting(m.old + [m.foreign, m.young]))
        await #expect(try names(w).isSuperset(of: [m.whitelisted, m.unmanaged]))
        // A quiet sweep with nothing to do prints nothing; without --quiet it says so.
        let quiet = try await w.repl(["orphans", "sweep", "--quiet"])
        #expect(quiet.status == 0 && quiet.stdoutText.isEmpty)
        let said = try await w.repl(["orphans", "sweep"])
        #expect(said.status == 0 && said.stdoutText.hasPrefix("Nothing to do"), "\(said.stdoutText)")
    }

    /// Random machine lists: a sweep never stops or deletes an unmanaged, whitelisted or young machine
    /// (checked from the emulator's call log).
    /// Seeded, so that a failing world fails again (#21: it was not), and it checks what must
    /// go as well as what must stay: past the grace every orphan is deleted, within it none.
    @Test func sweepsOverRandomMachinesNeverTouchWhatTheyMustNot() async throws {
        var rng = SeededGenerator(seed: 2101)
        for round in 0..<8 {
            var orphans: Set<String> = []
            let w = try World()
            let cid = try w.store.controlID()
            var protected: Set<String> = []
            for i in 0..<Int.random(in: 3...8, using: &rng) {
                switch Int.random(in: 0..<4, using: &rng) {
                case 0:
                    let name = ["dev-\(round)-\(i)", "repl-\(round)x\(i)", "repl-\(cid)-01-\(i)", "ubuntu\(i)"].randomElement(using: &rng)!
                    try await w.sim(["create", "ubuntu", name]); protected.insert(name)
                case 1:
                    let name = "repl-\(cid)-w\(i)-\(i)"
                    try await w.sim(["create", "ubuntu", name]); try w.store.addToWhitelist(name, reason: "test", expires: nil);
                    protected.insert(name)
                case 2:
                    try await w.sim(["create", "ubuntu", "repl-\(cid)-o\(i)-\(i)"]); orphans.insert("repl-\(cid)-o\(i)-\(i)")
                default:
                    try await w.sim(["create", "ubuntu", "repl-zz\(round)zz\(i % 10)-1-\(i)"]); protected.insert("repl-zz\(round)zz\(i % 10)-1-\(i)")
                }
            }
            let pastGrace = Bool.random(using: &rng)
            if pastGrace { try await w.sim(["admin", "clock", "advance", "5m"]) }
            let young = "repl-\(cid)-y1-y1"
            try await w.sim(["create", "ubuntu", young]); protected.insert(young)
            try await w.sim(["admin", "calls", "--reset"])
            await #expect(try w.repl(["orphans", "sweep"]).status == 0)
            for call in try String(contentsOf: w.root.appendingPathComponent("sim/calls.jsonl"), encoding: .utf8).split(separator: "\n") {
                let argv = (try JSONSerialization.jsonObject(with: Data(call.utf8)) as? [String: Any])?["argv"] as? [String] ?? []
                guard let verb = argv.first, verb == "stop" || verb == "delete" else { continue }
                #expect(argv.count > 1, "a bare \(verb)")
                for name in argv.dropFirst() where !name.hasPrefix("-") {
                    #expect(!protected.contains(name), "sweep called \(argv) on a machine it must not touch")
                }
            }
            let left = Set(try w.machines().map(\.name))
            #expect(protected.isSubset(of: left), "round \(round): \(protected.subtracting(left)) went")
            #expect(
                pastGrace ? left.isDisjoint(with: orphans) : orphans.isSubset(of: left),
                "round \(round), past the grace: \(pastGrace), orphans left: \(left.intersection(orphans))")
        }
    }

    @Test(.machineCommands)
    func recoverRebuildsTheStoreFromTheMachines() async throws {
        let w = try World()
        try "kept\n".write(to: w.root.appendingPathComponent("f.txt"), atomically: true, encoding: .utf8)
        for name in ["one", "two", "three"] {
            let file = w.root.appendingPathComponent("\(name).yaml")
            // One with OrbStack's options, files and artifacts: recovered whole, or the re-apply
            // below would replace its machines (#17).
            let more =
                name == "one" ? "resources: {cpus: 2, memory: 1G}\nuser: dev\nfiles: [{from: f.txt, to: /etc/f.txt}]\nartifacts: [/srv/*.json]\n" : ""
            try "kind: Run\nname: \(name)\ncommand: sleep 600\nenv: {WHO: \(name)}\n\(more)".write(to: file, atomically: true, encoding: .utf8)
            await #expect(try w.repl(["apply", "-f", file.path]).status == 0)
        }
        let machines = try await names(w)
        #expect(machines.count == 3)
        let cid = try w.store.controlID()
        // The database is lost.
        let state = w.root.appendingPathComponent("state")
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(at: state.appendingPathComponent("state.db" + suffix)) }
        let recover = try await w.repl(["recover", "--json"])
        #expect(recover.status == 0, "\(recover.stderrText)")
        let out = try JSONSerialization.jsonObject(with: recover.stdout) as? [String: Any]
        #expect(out?["controlId"] as? String == cid.rawValue)
        #expect(Set(out?["recovered"] as? [String] ?? []) == ["one", "two", "three"])
        // The runs are back with their manifests, and their machines are owned, not orphans.
        let list = try await JSONSerialization.jsonObject(with: try w.repl(["run", "list", "--json"]).stdout) as? [String: Any]
        let runs = list?["runs"] as? [[String: Any]] ?? []
        #expect(Set(runs.compactMap { $0["name"] as? String }) == ["one", "two", "three"])
        #expect(runs.allSatisfy { $0["command"] as? String == "sleep 600" })
        let orphans = try await JSONSerialization.jsonObject(with: try w.repl(["orphans", "--json"]).stdout) as? [String: Any]
        #expect((orphans?["machines"] as? [Any])?.isEmpty == true)
        // A plain tick then changes nothing.
        let plan = try await w.repl(["orphans", "sweep", "--dry-run", "--json"])
        let planned = try JSONSerialization.jsonObject(with: plan.stdout) as? [String: Any]
        #expect((planned?["actions"] as? [Any])?.isEmpty == true)
        await #expect(try names(w) == machines)
        // Re-applying an unchanged manifest is still a no-op.
        let again = try await w.repl(["apply", "-f", w.root.appendingPathComponent("one.yaml").path])
        #expect(again.stdoutText.contains("one: unchanged"))
        await #expect(try names(w) == machines)
    }
}
