import Foundation
import ReplCore
import ReplPlatform
import ReplStore
import ReplTestSupport
import Testing

@testable import OrbStack

/// Instances are numbered 1..replicas within their run wherever a user sees them; `logs`
/// takes `RUN/N` and `--tail N` (#18).
@Suite(.serialized) struct InstanceNumberTests {
    @Test(.machineCommands) func instancesAreNumberedPerRunAndLogsPicksAndTails() async throws {
        let home = CLITests.Home()
        let file = home.dir.appendingPathComponent("fan.yaml")
        try "kind: Run\nname: fan\nreplicas: 3\ncommand: echo \"out-$(hostname)\"; seq 1 5\n".write(to: file, atomically: true, encoding: .utf8)
        let wait = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", file.path, "--wait"])
        #expect(wait.status == 0, "\(wait.stderr)")
        for n in 1...3 { #expect(wait.stdout.contains("[fan/\(n)] 5\n"), "\(wait.stdout)") }
        #expect(!wait.stdout.contains("[fan/4]"))

        let status = try await CLITests.run(home, ["run", "status", "fan", "--json"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
        let instances = try #require(json["instances"] as? [[String: Any]])
        #expect(instances.compactMap { $0["number"] as? Int }.sorted() == [1, 2, 3])
        let second = try #require(instances.first { $0["number"] as? Int == 2 }?["machine"] as? String)

        let one = try await CLITests.run(home, ["logs", "fan/2"])
        #expect(one.status == 0 && one.stdout == "out-\(second)\n1\n2\n3\n4\n5\n", "\(one.stdout)\(one.stderr)")
        let tail = try await CLITests.run(home, ["logs", "fan", "--tail", "2"])
        #expect(tail.stdout.components(separatedBy: "4\n5\n").count == 4, "\(tail.stdout)")
        #expect(tail.stdout.contains("==> fan/2 (\(second)) <==") && !tail.stdout.contains("out-"), "\(tail.stdout)")
        let lastOfTwo = try await CLITests.run(home, ["logs", "fan/2", "--tail", "1"])
        #expect(lastOfTwo.stdout == "5\n")
        let none = try await CLITests.run(home, ["logs", "fan/4"])
        #expect(none.status == 2 && none.stderr.contains("has no instance 4"), "\(none.stderr)")
        let table = try await CLITests.run(home, ["run", "status", "fan"])
        let rows: [String] = table.stdout.split(separator: "\n").dropFirst(3).map { line -> String in
            String(line.split(separator: " ").first ?? "")
        }
        #expect(rows == ["1", "2", "3"], "\(table.stdout)")
    }
}

/// Phases that are true without a controller running (#18): read commands show what the
/// machines' own status says, marked as not yet recorded, and when it was last confirmed.
@Suite(.serialized) struct SeenPhaseTests {
    @Test(.machineCommands) func aFinishedCommandIsNotShownRunningWhenNoControllerRuns() async throws {
        let home = CLITests.Home()
        let applied = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", "examples/hello.yaml"])
        #expect(applied.status == 0, "\(applied.stderr)")
        var json: [String: Any] = [:]
        for _ in 0..<100 {
            let out = try await CLITests.run(home, ["run", "status", "hello", "--json"])
            json = (try? JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]) ?? [:]
            if json["observedPhase"] as? String == "Succeeded" { break }
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        #expect(json["observedPhase"] as? String == "Succeeded", "\(json)")
        #expect(json["phase"] as? String != "Succeeded")  // nothing recorded it: no controller ran
        let list = try await CLITests.run(home, ["run", "list"])
        #expect(list.stdout.contains("Succeeded*") && list.stdout.contains("not yet recorded"), "\(list.stdout)")
        // A sweep records it: the mark goes.
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "orphans", "sweep"]).status == 0)
        let after = try await CLITests.run(home, ["run", "list"])
        #expect(after.stdout.contains("Succeeded") && !after.stdout.contains("*"), "\(after.stdout)")
    }
}

/// `logs -l SELECTOR`: the output of every matching run, each instance headed (#18).
@Suite(.serialized) struct LogsBySelectorTests {
    @Test(.machineCommands) func logsBySelectorPrintsEveryMatchingRun() async throws {
        let home = CLITests.Home()
        let file = home.dir.appendingPathComponent("l.yaml")
        try
            "kind: Run\nname: one\nlabels: {team: x}\ncommand: printf 'a1\\na2\\n'\n---\nkind: Run\nname: two\nlabels: {team: x}\ncommand: printf 'b1\\nb2\\n'\n---\nkind: Run\nname: three\ncommand: echo c\n"
            .write(to: file, atomically: true, encoding: .utf8)
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", file.path, "--wait"]).status == 0)
        let all = try await CLITests.run(home, ["logs", "-l", "team=x"])
        #expect(all.status == 0, "\(all.stderr)")
        #expect(
            all.stdout.contains("==> one/1 (") && all.stdout.contains("a1\na2\n") && all.stdout.contains("==> two/1 (")
                && all.stdout.contains("b1\nb2\n"), "\(all.stdout)")
        #expect(!all.stdout.contains("c\n==>") && !all.stdout.hasSuffix("c\n"), "\(all.stdout)")
        let tail = try await CLITests.run(home, ["logs", "-l", "team=x", "--tail", "1"])
        #expect(
            tail.stdout.contains("a2\n") && !tail.stdout.contains("a1") && tail.stdout.contains("b2\n") && !tail.stdout.contains("b1"),
            "\(tail.stdout)")
        #expect(try await CLITests.run(home, ["logs", "-l", "team=nobody"]).status == 2)
        #expect(try await CLITests.run(home, ["logs", "-l", "team=x", "-f"]).status == 2)
    }
}

/// `repl wait RUN --for PHASE --timeout D` (#18), with no controller running.
@Suite(.serialized) struct WaitCommandTests {
    @Test(.machineCommands) func waitReturnsAtThePhaseAndFailsWhenItCannotComeOrTimesOut() async throws {
        let home = CLITests.Home()
        let file = home.dir.appendingPathComponent("w.yaml")
        try "kind: Run\nname: quick\ncommand: sleep 1; echo x\n---\nkind: Run\nname: long\ncommand: sleep 100\n".write(
            to: file, atomically: true, encoding: .utf8)
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", file.path]).status == 0)
        let ok = try await CLITests.run(home, ["wait", "quick", "--for", "Succeeded", "--timeout", "30s"])
        #expect(ok.status == 0 && ok.stdout == "quick: Succeeded\n", "\(ok.stdout)\(ok.stderr)")
        let finished = try await CLITests.run(home, ["wait", "quick", "--for", "finished"])
        #expect(finished.status == 0)
        let never = try await CLITests.run(home, ["wait", "quick", "--for", "Failed", "--timeout", "30s"])
        #expect(never.status == 1 && never.stderr.contains("ended Succeeded, not Failed"), "\(never.stderr)")
        let running = try await CLITests.run(home, ["wait", "long", "--for", "Running", "--timeout", "30s"])
        #expect(running.status == 0, "\(running.stderr)")
        let late = try await CLITests.run(home, ["wait", "long", "--for", "Succeeded", "--timeout", "1s"])
        #expect(late.status == 1 && late.stderr.contains("is Running, not Succeeded, after"), "\(late.stderr)")
        let bad = try await CLITests.run(home, ["wait", "long", "--for", "Done"])
        #expect(bad.status == 2 && bad.stderr.contains("is not a phase"), "\(bad.stderr)")
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "delete", "run", "long"]).status == 0)
    }

    /// A run without a command succeeds at its deadline, as a controller would record it: `wait`
    /// with no controller running says so (found by an attacker: it waited until killed, while
    /// the machine had stopped and `run list` showed it Running).
    @Test(.machineCommands) func waitSeesARunWithoutACommandSucceedAtItsDeadline() async throws {
        let home = CLITests.Home()
        let file = home.dir.appendingPathComponent("box.yaml")
        try "kind: Run\nname: box\nmaxDuration: 3s\n".write(to: file, atomically: true, encoding: .utf8)
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", file.path]).status == 0)
        let done = try await CLITests.run(home, ["--orbctl", "sim", "wait", "box", "--for", "Succeeded", "--timeout", "60s"])
        #expect(done.status == 0 && done.stdout == "box: Succeeded\n", "\(done.stdout)\(done.stderr)")
        let list = try await CLITests.run(home, ["--orbctl", "sim", "run", "list"])
        #expect(list.stdout.contains("Succeeded"), "\(list.stdout)")
    }
}

/// `plan` shows what changes field by field, counts that add up, snapshots; replacing a
/// long-lived machine needs `--yes` (#18).
@Suite(.serialized) struct PlanDiffTests {
    @Test(.machineCommands) func planShowsFieldDiffsAndReplacingABoxNeedsYes() async throws {
        let home = CLITests.Home()
        let v1 = home.dir.appendingPathComponent("v1.yaml"), v2 = home.dir.appendingPathComponent("v2.yaml")
        try "kind: Run\nname: box\nbootstrap: echo one\n---\nkind: Run\nname: job\ncommand: sleep 30\n".write(
            to: v1, atomically: true, encoding: .utf8)
        try
            "kind: Run\nname: box\nbootstrap: echo two\n---\nkind: Run\nname: job\ncommand: sleep 40\nreplicas: 2\n---\nkind: Snapshot\nname: s\nfrom: job\n"
            .write(to: v2, atomically: true, encoding: .utf8)
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", v1.path]).status == 0)
        let plan = try await CLITests.run(home, ["--orbctl", "sim", "plan", "-f", v2.path])
        #expect(plan.status == 0, "\(plan.stderr)")
        let text = plan.stdout
        #expect(text.contains("bootstrap: \"echo one\" → \"echo two\""), "\(text)")
        #expect(text.contains("command: \"sleep 30\" → \"sleep 40\"") && text.contains("replicas: 1 → 2"), "\(text)")
        #expect(text.contains("+ snapshot s"), "\(text)")
        #expect(!text.contains("~ start"), "\(text)")  // a new machine's start is part of its create line
        let lines = text.split(separator: "\n")
        let counts = ["+", "~", "-"].map { sign in lines.filter { $0.hasPrefix(sign + " ") }.count }
        #expect(text.contains("Plan: \(counts[0]) to add, \(counts[1]) to change, \(counts[2]) to delete."), "\(text)")
        // Replacing the long-lived box is refused without --yes (no terminal here), nothing recorded.
        let refused = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", v2.path])
        #expect(refused.status == 2 && refused.stderr.contains("long-lived machines of box") && refused.stderr.contains("--yes"), "\(refused.stderr)")
        #expect(try await CLITests.run(home, ["run", "status", "box"]).stdout.contains("generation 1"))
        let yes = try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", v2.path, "--yes"])
        #expect(yes.status == 0, "\(yes.stderr)")
        #expect(try await CLITests.run(home, ["run", "status", "box"]).stdout.contains("generation 2"))
        _ = try await CLITests.run(home, ["--orbctl", "sim", "delete", "-f", v2.path])
    }
}

/// kubectl-like querying on `run list` (#18): `-l`, `-o wide|json`, `--all`.
@Suite(.serialized) struct RunQueryTests {
    @Test(.machineCommands) func runListSelectsByLabelAndShowsDeletedOnlyWithAll() async throws {
        let home = CLITests.Home()
        let file = home.dir.appendingPathComponent("labelled.yaml")
        try """
        kind: Run
        name: a
        replicas: 0
        labels: {team: ml, tier: batch}
        ---
        kind: Run
        name: b
        replicas: 0
        labels: {team: web}
        ---
        kind: Run
        name: c
        replicas: 0
        """.write(to: file, atomically: true, encoding: .utf8)
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "apply", "-f", file.path]).status == 0)
        func names(_ args: [String]) async throws -> [String] {
            let out = try await CLITests.run(home, ["run", "list", "-o", "json"] + args)
            #expect(out.status == 0, "\(out.stderr)")
            let json = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]
            return (json?["runs"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }.sorted()
        }
        #expect(try await names(["-l", "team=ml"]) == ["a"])
        #expect(try await names(["-l", "team"]) == ["a", "b"])
        #expect(try await names(["-l", "team!=ml"]) == ["b", "c"])
        #expect(try await names(["-l", "team=ml,tier=batch"]) == ["a"])
        #expect(try await names(["-l", "team=ml,tier=web"]) == [])
        let wide = try await CLITests.run(home, ["run", "list", "-o", "wide"])
        #expect(wide.stdout.contains("LABELS") && wide.stdout.contains("team=ml,tier=batch"), "\(wide.stdout)")
        #expect(try await CLITests.run(home, ["--orbctl", "sim", "delete", "run", "b"]).status == 0)
        #expect(try await names([]) == ["a", "c"])
        #expect(try await names(["--all"]) == ["a", "b", "c"])
        // A deleted run is still read by its name, saying so.
        let status = try await CLITests.run(home, ["run", "status", "b"])
        #expect(status.status == 0 && status.stderr.contains("was deleted; showing its history"), "\(status.stdout)\(status.stderr)")
        let bad = try await CLITests.run(home, ["run", "list", "-l", "=x"])
        #expect(bad.status == 2 && bad.stderr.hasPrefix("repl: -l:"), "\(bad.stderr)")
        #expect(try await CLITests.run(home, ["run", "list", "-o", "yamlish"]).status == 2)
        // -o yaml: the JSON document as YAML (types kept: numbers, booleans, nulls).
        let yaml = try await CLITests.run(home, ["run", "list", "-l", "team=ml", "-o", "yaml"])
        #expect(
            yaml.status == 0 && yaml.stdout.hasPrefix("runs:\n- ") && yaml.stdout.contains("  name: a\n")
                && yaml.stdout.contains("  replicas: 0\n") && yaml.stdout.contains("  deleted: false\n") && yaml.stdout.contains("team: ml"),
            "\(yaml.stdout)")
        // run status -l: every match, text blocks or one document of runs.
        let many = try await CLITests.run(home, ["run", "status", "-l", "team!=web", "-o", "json"])
        let doc = try JSONSerialization.jsonObject(with: Data(many.stdout.utf8)) as? [String: Any]
        #expect((doc?["runs"] as? [[String: Any]])?.compactMap { $0["name"] as? String }.sorted() == ["a", "c"], "\(many.stdout)")
        let text = try await CLITests.run(home, ["run", "status", "-l", "team!=web"])
        #expect(text.stdout.contains("run 1 a:") && text.stdout.contains("run 3 c:") && !text.stdout.contains(" b:"), "\(text.stdout)")
        #expect(try await CLITests.run(home, ["run", "status"]).status == 2)
        let one = try await CLITests.run(home, ["run", "status", "a", "-o", "yaml"])
        #expect(one.status == 0 && one.stdout.contains("name: a\n") && one.stdout.contains("lastError: null\n"), "\(one.stdout)")
        // delete -l: every run whose labels match, exactly; none matching deletes nothing.
        let none = try await CLITests.run(home, ["--orbctl", "sim", "delete", "-l", "team=nobody"])
        #expect(none.status == 2 && none.stderr.contains("nothing was deleted"), "\(none.stderr)")
        let byLabel = try await CLITests.run(home, ["--orbctl", "sim", "delete", "-l", "tier=batch"])
        #expect(byLabel.status == 0 && byLabel.stdout.contains("run a: deleted"), "\(byLabel.stdout)\(byLabel.stderr)")
        #expect(try await names([]) == ["c"])
    }
}

/// A snapshot a live run still clones from is not deleted under it: the run would wait for ever
/// (found by attacking). Deleting both together is fine.
@Suite(.serialized) struct SnapshotInUseTests {
    @Test(.machineCommands) func aSnapshotARunStillClonesIsNotDeletedAlone() async throws {
        let home = CLITests.Home()
        let file = home.dir.appendingPathComponent("clone.yaml")
        try
            "kind: Run\nname: base\ncommand: sleep 30\n---\nkind: Snapshot\nname: snap\nfrom: base\n---\nkind: Run\nname: copy\nfrom: snap\nreplicas: 2\n"
            .write(to: file, atomically: true, encoding: .utf8)
        _ = try await CLITests.run(home, ["--orbctl", "sim", "apply", "--timeout", "1s", "-f", file.path])
        let refused = try await CLITests.run(home, ["--orbctl", "sim", "delete", "snapshot", "snap"])
        #expect(refused.status == 2 && refused.stderr.contains("run copy still clones snapshot snap"), "\(refused.status) \(refused.stderr)")
        #expect(try await CLITests.run(home, ["snapshot", "list"]).stdout.contains("snap"))
        let both = try await CLITests.run(home, ["--orbctl", "sim", "delete", "-f", file.path])
        #expect(both.status == 0, "\(both.stderr)")
    }
}
