import Foundation
import OrbSim
import OrbStack
import ReplController
import ReplCore
import ReplPlatform
import ReplStore

// repl-bench: figures measured side by side in one run, stated as ratios where they
// compare, written to docs/BENCHMARKS.md. `--quick` runs smaller sizes (under a minute).

let environment = ProcessInfo.processInfo.environment
Platform.openStandardStreams()
let me = OrbSimExecutable.path()
let args = Array(CommandLine.arguments.dropFirst())
// This binary is also the emulator when called as `orbctl`.
if (CommandLine.arguments[0] as NSString).lastPathComponent == "orbctl" || args.first.map(OrbSim.helperVerbs.contains) == true {
    exit(OrbSim(home: OrbSim.defaultHome(environment: environment), executable: me, environment: environment).main(args, io: .standard))
}
// `repl-bench __measure PROGRAM ARGS…`: runs PROGRAM (its output discarded) and prints its
// exit code and peak resident set in kilobytes: a fresh process has no other children.
if args.first == "__measure", args.count >= 2 {
    let code = try await SystemProcessRunner.runAttached(
        args[1], Array(args.dropFirst(2)), environment: environment,
        stdout: open("/dev/null", O_WRONLY), stderr: 2)
    print("\(code) \(Platform.childrenPeakResidentKilobytes())")
    exit(0)
}
let quick = args.contains("--quick")
/// The `repl` binary built beside this one (sections 5 and 6 run it).
let repl = (me as NSString).deletingLastPathComponent + "/repl"
let output = args.firstIndex(of: "--output").flatMap { args.indices.contains($0 + 1) ? args[$0 + 1] : nil }
// `--only 1c,2` runs only those sections (for working on one figure).
let only = args.firstIndex(of: "--only").flatMap { args.indices.contains($0 + 1) ? Set(args[$0 + 1].split(separator: ",").map(String.init)) : nil }
func section(_ id: String) -> Bool { only?.contains(id) ?? true }

#if DEBUG
    FileHandle.standardError.write(Data("warning: a debug build; use `swift run -c release repl-bench` for real figures\n".utf8))
#endif

var report: [String] = []
@MainActor func emit(_ line: String) {
    print(line)
    report.append(line)
}
func progress(_ line: String) { FileHandle.standardError.write(Data("… \(line)\n".utf8)) }

let started = Date()
emit("# repl benchmarks\n")
// Each emulated orbctl call is a process: with the Swift runtime as shared libraries, the
// dynamic loader's symbol lookups take about 8 ms of CPU per call on Linux, which real
// orbctl (one static Go binary) does not pay.
let runtime =
    Platform.swiftRuntimeDirectory() == nil
    ? "the Swift runtime linked in (`--static-swift-stdlib`)"
    : "the Swift runtime as shared libraries (build with `--static-swift-stdlib` for comparable figures)"
emit(
    "Measured \(DateFormats.iso8601(Date())) on \(ProcessInfo.processInfo.activeProcessorCount) cores, \(quick ? "quick" : "full") run, against orbctl-sim with its latencies as stated, \(runtime).\n"
)

/// An idle tick measured: orbctl calls per tick, the tick's median time and one `orbctl list`
/// alone at OrbStack's latency (7 ticks each).
struct IdleTick {
    var calls: Double, tick: Double, list: Double
    var cells: String {
        "\(String(format: "%.0f", calls)) | \(String(format: "%.1f", tick * 1000)) ms | \(String(format: "%.1f", list * 1000)) ms | \(String(format: "%.2f", tick / list))"
    }
}

func idleTick(_ fleet: Fleet) async throws -> IdleTick {
    try await fleet.latency("all", 0)
    try await fleet.latency("list", SimState.defaultLatencies["list"]!)
    let controller = fleet.controller(concurrency: 4)
    _ = await controller.tick()
    try await fleet.sim(["admin", "calls", "--reset"])
    var ticks: [Double] = []
    for _ in 0..<7 {
        ticks.append(
            await seconds {
                let r = await controller.tick(); precondition(r.outcomes.isEmpty, "not idle")
            })
    }
    let calls = Double(try await fleet.calls()) / 7
    // Ticks and lists alternate, so that a slower or faster stretch of the machine weighs on
    // both sides of the ratio (the list alone once varied from 85 to 143 ms between runs).
    var lists: [Double] = []
    for _ in 0..<7 {
        lists.append(try await seconds { try await fleet.sim(["list", "--format", "json"]) })
        ticks.append(await seconds { _ = await controller.tick() })
    }
    return IdleTick(calls: calls, tick: median(ticks), list: median(lists))
}

/// One row of an idle-tick table.
func idleTickRow(_ fleet: Fleet, _ n: Int) async throws -> String {
    "| \(n) | \(try await idleTick(fleet).cells) |"
}

// 1. Converged idle tick.
if section("1") {
    emit("## 1. Converged idle tick\n")
    emit(
        "Up to 200 running machines; past that, the rest are stopped snapshots (OrbStack's pool holds 238 addresses). Goal: one call, ≤ 1.2× one list at 1,000 machines.\n"
    )
    emit("| owned machines | orbctl calls per tick | tick time | one `orbctl list` alone | ratio |")
    emit("|---|---|---|---|---|")
    for n in quick ? [10, 100] : [10, 100, 1000] {
        progress("idle tick with \(n) machines")
        let fleet = try Fleet(self: me)
        defer { fleet.cleanUp() }
        // OrbStack's address pool holds 238 running machines, so past 200 the fleet is 200
        // running machines and stopped snapshots of them: all owned, all idle.
        let running = min(n, 200), snapshots = n - running
        try fleet.apply(
            "kind: Run\nname: idle\nreplicas: \(running)\n"
                + (0..<snapshots).map { "---\nkind: Snapshot\nname: snap\($0)\nfrom: idle\n" }.joined())
        let setup = fleet.controller(concurrency: 16)
        try await fleet.converge(setup) {
            let run = try fleet.store.runs()[0].run
            let snapshotsReady = try fleet.store.snapshots().allSatisfy { $0.createdAt != nil }
            return snapshotsReady && run.instances.count == running && run.instances.allSatisfy { $0.phase == .running }
        }
        emit(try await idleTickRow(fleet, n))
    }
}

// 1b. Idle tick with commands running: statuses come through the host channel.
if section("1b") {
    emit("\n## 1b. Idle tick with N running commands\n")
    emit(
        "Every instance's command is running (`sleep`); each tick reads their statuses from the host status channel (`$REPL_HOME/machines`), so a tick costs the one `orbctl list`, as an idle fleet's does. Without the channel (isolated machines), each status is an `orbctl run` per probe interval. Goal: one call, ≤ 1.2× one list with 100 running commands.\n"
    )
    emit("| running commands | orbctl calls per tick | tick time | one `orbctl list` alone | ratio |")
    emit("|---|---|---|---|---|")
    for n in quick ? [5, 20] : [5, 100] {
        progress("idle tick with \(n) running commands")
        let fleet = try Fleet(self: me)
        defer { fleet.cleanUp() }
        try fleet.apply("kind: Run\nname: busy\ncommand: sleep 3600\nreplicas: \(n)\n")
        let setup = fleet.controller(concurrency: 16)
        try await fleet.converge(setup) {
            let run = try fleet.store.runs()[0].run
            return run.instances.count == n && run.instances.allSatisfy { $0.phase == .running }
        }
        emit(try await idleTickRow(fleet, n))
    }
}

// 1c. Idle tick with a long history: finished runs are archived and ticks read live runs only.
if section("1c") {
    let historySize = quick ? 2_000 : 20_000
    emit("\n## 1c. Idle tick with \(historySize) finished runs in history\n")
    emit(
        "10 running machines; the same fleet with a fresh store, then with \(historySize) runs that finished a day ago (each with its instance, exit code and collected log). Ticks read only live runs: finished ones are archived once settled and stay queryable (`run list`, `logs`). Goal: ≤ 1.2× the fresh store.\n"
    )
    emit("| store | runs in the store | orbctl calls per tick | tick time | one `orbctl list` alone | ratio to list | ratio to fresh |")
    emit("|---|---|---|---|---|---|---|")
    var freshTick: Double?
    for history in [0, historySize] {
        progress("idle tick with \(history) finished runs")
        let fleet = try Fleet(self: me)
        defer { fleet.cleanUp() }
        try fleet.apply("kind: Run\nname: idle\nreplicas: 10\n")
        try await fleet.converge(fleet.controller(concurrency: 16)) {
            let run = try fleet.store.runs()[0].run
            return run.instances.count == 10 && run.instances.allSatisfy { $0.phase == .running }
        }
        if history > 0 {
            try fleet.apply((0..<history).map { "kind: Run\nname: done\($0)\ncommand: echo \($0)\n" }.joined(separator: "---\n"))
            let dayAgo = Date().addingTimeInterval(-86_400)
            var next = try fleet.store.desiredState().nextInstanceID
            var actions: [Action] = []
            for run in try fleet.store.desiredState().runs where run.instances.isEmpty {
                let machine = MachineName(controlID: try fleet.store.controlID(), manifestID: run.id, instanceID: next)
                actions += [
                    .addInstance(run: run.id, instance: next, generation: 1),
                    .create(run: run.id, instance: next, machine: machine, spec: .orbstack(.defaultSpec)),
                    .startRun(run: run.id, instance: next, machine: machine),
                    .markPhase(run: run.id, instance: next, phase: .succeeded, exitCode: 0, reason: nil),
                    .collectLogs(run: run.id, instance: next, machine: machine),
                ]
                next = next.next
            }
            try fleet.store.record(actions, now: dayAgo)
        }
        let counts = try fleet.store.runCounts()
        let measured = try await idleTick(fleet)
        freshTick = freshTick ?? measured.tick
        emit(
            "| \(history == 0 ? "fresh" : "with history") | \(counts.live + counts.archived) | \(measured.cells) | \(String(format: "%.2f", measured.tick / freshTick!)) |"
        )
    }
}

// 2. Planner alone.
if section("2") {
    emit("\n## 2. Planner alone (no I/O)\n")
    emit("Goal: < 20 ms at 10,000 × 10,000.\n")
    emit("| desired × observed | median time | peak RSS of this process |")
    emit("|---|---|---|")
    for (desired, observed) in [(1_000, 10_000), (10_000, 10_000)] {
        let r = PlannerBench.run(desired: desired, observed: observed)
        emit("| \(desired) × \(observed) | \(String(format: "%.1f", r.medianMilliseconds)) ms | \(peakResidentMegabytes()) MB |")
    }
}

// 3. Convergence.
if section("3") {
    let runs = quick ? 24 : 100
    emit("\n## 3. Convergence: \(runs) one-shot runs, create latency 300 ms\n")
    emit("Wall time from apply until every run's command has started, against the ideal ceil(\(runs) / concurrency) × 300 ms. Goal: ≤ 1.15×.\n")
    emit("| concurrency | wall time | ideal | ratio |")
    emit("|---|---|---|---|")
    for c in [1, 4, 8] {
        progress("convergence at concurrency \(c)")
        let fleet = try Fleet(self: me)
        defer { fleet.cleanUp() }
        try await fleet.latency("all", 5)
        try await fleet.latency("create", 300)
        let yaml = (0..<runs).map { "kind: Run\nname: job\($0)\ncommand: \"true\"\nhold: 1h\n" }.joined(separator: "---\n")
        try fleet.apply(yaml)
        let controller = fleet.controller(concurrency: c)
        let wall = try await seconds {
            try await fleet.converge(controller) {
                try fleet.store.runs().allSatisfy { r in r.run.instances.count == 1 && r.run.instances.allSatisfy { $0.phase >= .bootstrapping } }
            }
        }
        let ideal = Double((runs + c - 1) / c) * 0.3
        emit("| \(c) | \(String(format: "%.2f", wall)) s | \(String(format: "%.2f", ideal)) s | \(String(format: "%.2f", wall / ideal)) |")
    }
}

// 4. Orphan sweep against its limit and the sequential baseline.
if section("4") {
    let orphans = quick ? 12 : 50
    let teardown = ControllerSettings(logsDirectory: URL(fileURLWithPath: "/")).rpcConcurrency
    emit("\n## 4. Orphan sweep of \(orphans) machines\n")
    emit(
        "Stop latency 300 ms, delete 150 ms, 1 s grace between them. `repl orphans sweep` is one tick: creates are limited to 4 at once, stops and deletes to \(teardown). Its limit is one stop, the grace and one delete (1.45 s), as if every machine went at once; the baseline is `scaffold/bench/sequential-sweep.sh` (stop, 1 s, delete, one machine at a time). Each runs on its own \(orphans) machines. Goal: ≤ 1.5× the limit.\n"
    )
    emit("| sweep | limit | ratio to limit | sequential baseline | speed-up |")
    emit("|---|---|---|---|---|")
    do {
        progress("orphan sweep of \(orphans)")
        let fleet = try Fleet(self: me)
        defer { fleet.cleanUp() }
        let cid = try fleet.store.controlID()
        let names = (0..<orphans).map { "repl-\(cid)-none-\(Base36.encode(UInt64(1000 + $0)))" }
        let baselineNames = (0..<orphans).map { "baseline-\($0)" }
        try await fleet.sim(["admin", "ip-pool", "238"])
        for name in names + baselineNames { try await fleet.sim(["create", "ubuntu", name]) }
        try await fleet.sim(["admin", "clock", "advance", "10m"])
        try await fleet.latency("stop", 300)
        try await fleet.latency("delete", 150)
        let controller = fleet.controller(concurrency: 4)
        let sweep = await seconds {
            let r = await controller.tick(); precondition(!r.failed, "sweep failed")
        }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scaffold/bench/sequential-sweep.sh").path
        let baseline = try await seconds {
            _ = try await SystemProcessRunner.run(
                "/bin/bash", [script, fleet.orbctl] + baselineNames, input: nil, timeout: 900,
                environment: fleet.environment, limit: 1 << 20)
        }
        let left = try OrbctlClient.decodeList(try await fleet.sim(["list", "-f", "json"]).stdout)
        precondition(left.isEmpty, "machines left after the sweeps: \(left.map(\.name))")
        let limit = 0.3 + 1 + 0.15
        emit(
            "| \(String(format: "%.2f", sweep)) s | \(String(format: "%.2f", limit)) s | \(String(format: "%.2f", sweep / limit)) | \(String(format: "%.2f", baseline)) s | \(String(format: "%.1f", baseline / sweep))× |"
        )
    }
}

// 5. CLI start-up.
if section("5") {
    emit("\n## 5. CLI start-up\n")
    if FileManager.default.isExecutableFile(atPath: repl) {
        progress("CLI start-up")
        emit(
            "Each the median of 7, against the emulator's own start-up (`orbctl-sim version`, 5 ms of modelled latency) or one `orbctl-sim list`. Goal: `run list --json` with 1,000 runs ≤ 1.5× one list.\n"
        )
        emit("| command | time | baseline | baseline time | ratio |")
        emit("|---|---|---|---|---|")
        let fleet = try Fleet(self: me)
        defer { fleet.cleanUp() }
        func time(_ program: String, _ arguments: [String]) async throws -> Double {
            var times: [Double] = []
            for _ in 0..<7 {
                let (r, t) = try await fleet.timed(program, arguments)
                times.append(t)
                precondition(r.status == 0, r.stderrText)
            }
            return median(times)
        }
        func row(_ what: String, _ t: Double, _ baseline: String, _ b: Double) {
            emit(
                "| `\(what)` | \(String(format: "%.1f", t * 1000)) ms | `\(baseline)` | \(String(format: "%.1f", b * 1000)) ms | \(String(format: "%.2f", t / b)) |"
            )
        }
        let version = try await time(fleet.orbctl, ["version"])
        row("repl --version", try await time(repl, ["--version"]), "orbctl-sim version", version)
        try fleet.apply((0..<10).map { "kind: Run\nname: r\($0)\ncommand: echo \($0)\n" }.joined(separator: "---\n"))
        row("repl run list (10 runs)", try await time(repl, ["run", "list"]), "orbctl-sim version", version)
        try fleet.apply((10..<1000).map { "kind: Run\nname: r\($0)\ncommand: echo \($0)\n" }.joined(separator: "---\n"))
        let list = try await time(fleet.orbctl, ["list", "--format", "json"])
        row("repl run list (1,000 runs)", try await time(repl, ["run", "list"]), "orbctl-sim list", list)
        row("repl run list --json (1,000 runs)", try await time(repl, ["run", "list", "--json"]), "orbctl-sim list", list)
    } else {
        emit("Skipped: no `repl` binary beside this one; build it with `swift build -c release` first.")
    }
}

// 6. Log streaming: `repl run --wait` on a command that prints a lot.
if section("6") {
    emit("\n## 6. Log streaming: `repl run --wait` on a command printing N MB\n")
    if FileManager.default.isExecutableFile(atPath: repl) {
        emit(
            "The command prints N MB (`head -c` of a repeated line) in the machine; `repl run --wait` streams it to its standard output (here /dev/null) and exits with the command. The baseline is `cat` of a file of the same size on the host. Time and peak memory of the whole `repl` process. Goal: time and memory linear in the log's size (the time per MB steady, the memory flat).\n"
        )
        emit("| output | `repl run --wait` | per MB | peak RSS | `cat` of the same | `cat` peak RSS |")
        emit("|---|---|---|---|---|---|")
        for mb in quick ? [10] : [10, 100] {
            progress("--wait on \(mb) MB")
            let fleet = try Fleet(self: me)
            defer { fleet.cleanUp() }
            let bytes = mb << 20
            let command = "yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz | head -c \(bytes)"
            let measure = { (program: String, arguments: [String]) async throws -> (Double, Int) in
                let (r, t) = try await fleet.timed(me, ["__measure", program] + arguments, timeout: 900, limit: 1 << 16)
                let line = r.stdoutText
                let fields = line.split(separator: " ")
                precondition(fields.first == "0", "\(program) failed: \(line)")
                return (t, Int(fields.last!.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0)
            }
            let (t, rss) = try await measure(repl, ["--orbctl", fleet.orbctl, "-q", "run", "--name", "big", "--command", command, "--wait"])
            let file = fleet.root.appendingPathComponent("big.txt")
            _ = try await SystemProcessRunner.run(
                "/bin/sh", ["-c", "\(command) > '\(file.path)'"], input: nil, timeout: 300, environment: fleet.environment, limit: 1 << 16)
            let (c, crss) = try await measure("/bin/cat", [file.path])
            emit(
                "| \(mb) MB | \(String(format: "%.2f", t)) s | \(String(format: "%.0f", t / Double(mb) * 1000)) ms | \(rss / 1024) MB | \(String(format: "%.3f", c)) s | \(crss / 1024) MB |"
            )
        }
    } else {
        emit("Skipped: no `repl` binary beside this one; build it with `swift build -c release` first.")
    }
}

// 7. AWS against moto.
if section("7") {
    emit("\n## 7. AWS EC2 against moto\n")
    let n = quick ? 20 : 100
    emit(
        "\(n) one-instance runs on `provider: aws` against moto on loopback, without and with every EC2 and S3 call delayed 50 ms (as from a Mac to a region), concurrency 4, until each instance is launched and its run put in S3; then the calls of a converged idle tick (instances and snapshots listed: goal ≤ 2). moto's own time (a Python server on the same two cores) dominates: the ratio is each row's time over the row without delay, and the ideal is what the delay alone would add (three delayed calls per instance: its look-up by name, the launch, the run's put; at concurrency 4). Goal: the delay overlapped, a ratio near 1 + ideal/time.\n"
    )
    progress("\(n) runs on aws against moto")
    // moto's own time per call is in every figure: the row without delay shows it alone.
    var rows: [String] = []
    var alone: Double?
    for delay in [0.0, 0.05] {
        guard let (time, calls, ideal) = try await awsConvergence(runs: n, delay: delay, concurrency: 4) else { break }
        // The time with the delay against moto alone: the delayed calls, overlapped.
        let ratio = alone.map { String(format: "%.2f", time / $0) } ?? "1"
        alone = alone ?? time
        rows.append(
            "| \(n) | \(Int(delay * 1000)) ms | \(String(format: "%.1f", time)) s | \(String(format: "%.1f", ideal)) s | \(ratio) | \(String(format: "%.0f", calls)) |"
        )
    }
    if rows.isEmpty {
        emit("Skipped: `moto_server` is not on PATH (`pip install 'moto[server]'`).")
    } else {
        emit("| runs | delay per call | converged in | ideal added | ratio to no delay | EC2 calls per idle tick |")
        emit("|---|---|---|---|---|---|")
        for row in rows { emit(row) }
    }
}

emit("\nTotal benchmark time: \(String(format: "%.0f", Date().timeIntervalSince(started))) s.")
if let output {
    try (report.joined(separator: "\n") + "\n").write(toFile: output, atomically: true, encoding: .utf8)
}

/// The process's peak resident set size in megabytes.
func peakResidentMegabytes() -> Int { Platform.peakResidentMegabytes() }
