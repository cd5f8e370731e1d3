import ArgumentParser
import Foundation
import ReplController
import ReplCore
import ReplStore

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Start a run from flags (a manifest made for you), or manage runs.",
        discussion: """
            Example: repl run --provider orbstack --spec "ubuntu:noble:arm64" --command "echo hello" --max-duration 60000
            """,
        subcommands: [RunList.self, RunStatus.self, RunCancel.self])

    @OptionGroup var global: GlobalOptions
    @Option(help: "The run's name (default: run-XXXXXX).") var name: String?
    @Option(help: "The provider (only orbstack).") var provider: String?
    @Option(help: "distro:version:arch, e.g. ubuntu:noble:arm64.") var spec: String?
    @Option(help: "A snapshot to clone instead of a spec.") var from: String?
    @Option(help: "The command to run once.") var command: String?
    @Option(help: "Deadline: milliseconds (60000) or 90s, 10m, 2h, 1d.") var maxDuration: String?
    @Option(help: "A script file run as root before the command.") var bootstrap: String?
    @Option(help: "Number of machines.") var replicas: Int?
    @Option(help: "CPUs of each machine (OrbStack 2.2.0+).") var cpus: Int?
    @Option(help: "Memory of each machine, e.g. 4G (OrbStack 2.2.0+).") var memory: String?
    @Option(help: "Disk of each machine, e.g. 64G (OrbStack 2.2.0+).") var disk: String?
    @Flag(help: "Isolated machines: no /mnt/mac, no way to the Mac (OrbStack 2.1.0+).") var isolated = false
    @Option(help: "The machines' default user.") var user: String?
    @Option(help: "A cloud-init file (#cloud-config or a #! script) given to orbctl create -c.") var userData: String?
    @Flag(help: "Wait for the run to finish and exit with the command's exit code.") var wait = false
    @Flag(help: "Replace a long-lived run of this name (no command) whose machines would be lost, without asking.") var yes = false
    @Flag(help: "Start a new installation even though machines of another one exist (see `repl recover`).") var newInstallation = false

    func run() async throws {
        let context = Context(global)
        let set = try manifest(context: context)
        let code = try await Converger(context: context).apply(
            set, wait: wait, dryRun: false, newInstallation: newInstallation, replaceLongLived: yes)
        if !context.json, let record = try? context.findRun(set.runs[0].name) {
            let line = "run \(Base36.encode(record.run.id)) (\(record.run.manifest.name))"
            if wait { context.progress(line) } else { context.say(line) }
        }
        if code != 0 { throw CommandExit(code: code) }
    }
}

extension RunCommand {
    /// The run the flags describe, through the same field checks as a manifest's, each problem
    /// named by its flag; every problem is reported at once, and nothing is applied.
    func manifest(context: Context) throws -> ManifestSet {
        var problems: [String] = []
        func check<T>(_ flag: String, _ result: Result<T, FieldProblem>) -> T? {
            switch result {
            case .success(let value): return value
            case .failure(let problem):
                problems.append("\(flag): \(problem.message)")
                return nil
            }
        }
        func read(_ flag: String, _ path: String?) -> String? {
            guard let path else { return nil }
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                problems.append("\(flag): cannot read \(path)")
                return nil
            }
            return text
        }
        let runName = check("--name", RunFields.name(name ?? "run-" + String(ControlID.generate().rawValue)))
        let chosen = provider.flatMap { check("--provider", RunFields.provider($0)) }?.name ?? "orbstack"
        if chosen != "orbstack" {
            problems.append(
                "--provider: \(chosen) runs are written as manifests (provider: \(chosen) with its spec: mapping) and applied with `repl apply -f`")
        }
        var source = RunSource.spec(.defaultSpec)
        if spec != nil, from != nil {
            problems.append("--from: cannot be combined with --spec; a clone takes its spec from the snapshot, so give one of them")
        } else if let from {
            if let snapshot = check("--from", RunFields.name(from)) { source = .snapshot(snapshot) }
        } else if let spec, let parsed = check("--spec", RunFields.spec(spec)) {
            source = .spec(parsed)
        }
        var options = MachineOptions()
        options.cpus = cpus.flatMap { check("--cpus", RunFields.cpus($0)) }
        options.memory = memory.flatMap { check("--memory", RunFields.memory($0)) }
        options.disk = disk.flatMap { check("--disk", RunFields.disk($0)) }
        options.isolated = isolated
        options.user = user.flatMap { check("--user", RunFields.user($0)) }
        options.userData = read("--user-data", userData).flatMap { check("--user-data", RunFields.userData($0, source: source)) }
        let run = RunManifest(
            name: runName ?? "", provider: chosen, source: source,
            command: command.flatMap { check("--command", RunFields.command($0)) },
            maxDuration: maxDuration.flatMap { check("--max-duration", RunFields.duration($0, allowZero: false)) },
            bootstrap: read("--bootstrap", bootstrap).flatMap { check("--bootstrap", RunFields.script($0)) },
            replicas: replicas.flatMap { check("--replicas", RunFields.replicas($0)) } ?? 1,
            options: options)
        if problems.isEmpty, case .snapshot(let from) = source {
            let known = try context.store().knownNames()
            if let problem = RunFields.snapshotReference(from, snapshots: known.snapshots, runs: known.runs) {
                problems.append("--from: \(problem.message)")
            }
        }
        guard problems.isEmpty else { throw CLIError.input(problems.joined(separator: "\n")) }
        return ManifestSet(documents: [LocatedManifest(manifest: .run(run), location: SourceLocation(file: "flags", line: 1, column: 1))])
    }
}

struct RunList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List runs, finished ones included.",
        discussion: "Example: repl run list -l team=ml -o wide   ·   repl run list --all --json")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("l"), .customLong("selector")], help: "Only runs whose labels match: key=value[,key2=value2], key!=value, key.")
    var selector: String?
    @Option(name: [.customShort("o"), .customLong("output")], help: "wide (adds labels), json or yaml.") var output: String?
    @Flag(help: "Include deleted runs (their history is kept).") var all = false

    func run() async throws {
        var options = global
        if output == "json" { options.json = true }
        let context = Context(options)
        switch output {
        case nil, "wide", "json", "yaml": break
        default: throw CLIError.input("-o: \"\(output!)\" is not an output format (use wide, json or yaml)")
        }
        let records = try context.runs(matching: selector, includeDeleted: all)
        let cid = context.hasStore ? try context.store().existingControlID() : nil
        let seen = SeenPhases(channel: StatusChannel(directory: context.channelDirectory), cid: cid)
        if output == "yaml" {
            try context.printYAML(["runs": records.map { RunJSON.object($0, cid: cid, seen: seen) }])
            return
        }
        if context.json {
            context.printJSON(["runs": records.map { RunJSON.object($0, cid: cid, seen: seen) }])
            return
        }
        if records.isEmpty {
            print(
                selector == nil
                    ? "No runs yet. Try: repl apply -f examples/hello.yaml" : "No runs match \(Console.visible(String(selector!.prefix(200)))).")
            return
        }
        var footnote = false
        let rows = records.map { record -> [String] in
            // As the machines show it, when no controller has recorded it yet.
            let (run, unrecorded) = seen.run(record.run)
            footnote = footnote || unrecorded
            let r = (run: run, record: record)
            let wanted = r.run.instances.filter { r.run.wants($0) }
            // A cancelled or deleted run keeps the exit codes its instances ended with (found by
            // attacking: `run list --all` showed `-` where `run status` showed 0).
            let codes = r.run.instances.filter { !$0.retired && $0.generation == r.run.generation }.compactMap(\.exitCode).map(String.init)
                .joined(separator: ",")
            return [
                Base36.encode(r.run.id), r.run.manifest.name, r.run.phase.rawValue + (unrecorded ? "*" : ""),
                "\(wanted.filter { !$0.phase.isTerminal }.count)/\(r.run.manifest.replicas)",
                r.run.manifest.source.description, codes.isEmpty ? "-" : codes, Table.age(Date().timeIntervalSince(r.record.createdAt)),
            ]
                + (output == "wide" ? [r.run.manifest.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")] : [])
                + (all ? [r.record.deleted ? "deleted" : ""] : [])
        }
        print(
            Table.render(["ID", "NAME", "PHASE", "ACTIVE", "SOURCE", "EXIT", "AGE"] + (output == "wide" ? ["LABELS"] : []) + (all ? [""] : []), rows))
        if footnote { print(SeenPhases.footnote) }
    }
}

enum RunJSON {
    /// `phase` is the recorded one; `observedPhase` what the machines show (the same once a
    /// controller has recorded it), with `confirmedAt` of a live instance's last heartbeat.
    /// Built as a typed document, not through `Any`: `run list --json` of 1,000 runs spent
    /// most of its time in dynamic casts.
    static func object(_ r: RunRecord, cid: ControlID?, seen: SeenPhases, addresses: [String: String] = [:], only: InstanceID? = nil) -> JSONDocument
    {
        let observed = seen.run(r.run)
        func text(_ s: String?) -> JSONDocument { s.map { .string($0) } ?? .null }
        let instances: [JSONDocument] = r.run.instances.filter { only == nil || $0.id == only }.map { i in
            let machine = cid.map { MachineName(controlID: $0, manifestID: r.run.id, instanceID: i.id).description }
            let seenNow = seen.seen(r.run, i)
            return .object([
                "id": .string(Base36.encode(i.id)), "number": .int(Int64(r.run.number(of: i.id) ?? 0)),
                "machine": text(machine), "host": text(machine.map { $0 + ".orb.local" }),
                "address": text(machine.flatMap { addresses[$0] }),
                "generation": .int(Int64(i.generation)), "phase": .string(i.phase.rawValue), "retired": .bool(i.retired),
                "exitCode": i.exitCode.map { .int(Int64($0)) } ?? .null, "reason": text(i.reason),
                "observedPhase": .string(seenNow.phase.rawValue),
                "confirmedAt": text(seenNow.confirmed.map(DateFormats.iso8601)),
            ])
        }
        return .object([
            "id": .string(Base36.encode(r.run.id)), "name": .string(r.run.manifest.name), "phase": .string(r.run.phase.rawValue),
            "observedPhase": .string(observed.run.phase.rawValue),
            "generation": .int(Int64(r.run.generation)), "replicas": .int(Int64(r.run.manifest.replicas)),
            "source": .string(r.run.manifest.source.description),
            "command": text(r.run.manifest.command), "createdAt": .string(DateFormats.iso8601(r.createdAt)),
            "lastError": text(r.lastError), "labels": .object(r.run.manifest.labels.mapValues { .string($0) }), "deleted": .bool(r.deleted),
            "instances": .array(instances),
        ])
    }
}

struct RunStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show one run and its instances.",
        discussion: "Example: repl run status hello   ·   repl run status -l team=ml -o yaml")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Run id, name, or a unique prefix.", completion: RunNameCompletion.kind) var id: String?
    @Option(name: [.customShort("l"), .customLong("selector")], help: "Every run whose labels match (key=value[,key2=value2], key!=value, key).")
    var selector: String?
    @Option(name: [.customShort("o"), .customLong("output")], help: "json or yaml.") var output: String?

    func validate() throws {
        if (id == nil) == (selector == nil) { throw ValidationError("give a run, or -l SELECTOR") }
    }

    func run() async throws {
        let context = Context(global)
        guard output == nil || output == "json" || output == "yaml" else {
            throw CLIError.input("-o: \"\(output!)\" is not an output format (use json or yaml)")
        }
        let cid = context.hasStore ? try context.store().existingControlID() : nil
        let seen = SeenPhases(channel: StatusChannel(directory: context.channelDirectory), cid: cid)
        let records: [RunRecord]
        var only: InstanceID?
        if let selector {
            records = try context.runs(matching: selector)
            let addresses = await Self.addresses(of: records, cid: cid, seen: seen, context: context)
            let documents = records.map { RunJSON.object($0, cid: cid, seen: seen, addresses: addresses) }
            if output == "yaml" { try context.printYAML(["runs": documents]); return }
            if context.json || output == "json" { context.printJSON(["runs": documents]); return }
            if records.isEmpty { print("No runs match \(Console.visible(String(selector.prefix(200)))).") }
        } else {
            // `RUN/N`: that instance only, as `logs RUN/N` reads it.
            let (key, number) = try Context.splitInstance(id!)
            let record = try context.findRun(key)
            if let number { only = try Context.instance(number, of: record.run).id }
            records = [record]
            let addresses = await Self.addresses(of: records, cid: cid, seen: seen, context: context)
            let document = RunJSON.object(records[0], cid: cid, seen: seen, addresses: addresses, only: only)
            if output == "yaml" { try context.printYAML(document); return }
            if context.json || output == "json" {
                context.printJSON(document)
                return
            }
        }
        let addresses = await Self.addresses(of: records, cid: cid, seen: seen, context: context)
        for (i, r) in records.enumerated() {
            if i > 0 { print("") }
            show(r, cid: cid, seen: seen, addresses: addresses, only: only, notes: Self.notes(of: r, context: context))
        }
    }

    /// The run's events about its files and output (artifacts that matched nothing, logs or
    /// artifacts left in a machine that was gone), oldest first.
    static func notes(of r: RunRecord, context: Context) -> [String] {
        guard context.hasStore, let events = try? context.store().events(limit: 50, run: r.run.id) else { return [] }
        return events.filter { $0.kind.hasPrefix("artifacts-") || $0.kind == "logs-left" || $0.kind == "logs-partial" }
            .sorted { $0.at < $1.at }.map(\.message)
    }

    /// The addresses of the live instances' machines, asked of orbctl (`info`, read only); none
    /// when it cannot be asked (status works without OrbStack, from the store).
    static func addresses(of records: [RunRecord], cid: ControlID?, seen: SeenPhases, context: Context) async -> [String: String] {
        guard let cid else { return [:] }
        let live = records.flatMap { r in
            r.run.instances.filter { !$0.retired && !seen.seen(r.run, $0).phase.isTerminal && $0.phase >= .provisioning }
                .map { MachineName(controlID: cid, manifestID: r.run.id, instanceID: $0.id) }
        }
        guard !live.isEmpty, let provider = try? await context.engine(checkVersion: false) else { return [:] }
        var out: [String: String] = [:]
        for machine in live.prefix(50) {
            if let address = try? await provider.address(name: machine) { out[machine.description] = address }
        }
        return out
    }

    func show(_ r: RunRecord, cid: ControlID?, seen: SeenPhases, addresses: [String: String] = [:], only: InstanceID? = nil, notes: [String] = []) {
        let observed = seen.run(r.run)
        print(
            "run \(Base36.encode(r.run.id)) \(r.run.manifest.name): \(observed.run.phase.rawValue)\(observed.unrecorded ? "*" : "") (generation \(r.run.generation), \(r.run.manifest.source))"
        )
        if let c = r.run.manifest.command { print(Console.visible("command: \(c)")) }
        if let e = r.lastError { print(Console.visible("last error: \(e)")) }
        // Instances are numbered 1, 2, … within their generation (`RUN/N`); history says which.
        // A live one says when its machine last confirmed it (the wrapper's heartbeat).
        let now = Date()
        let rows = r.run.instances.filter { only == nil || $0.id == only }.map { i in
            let s = seen.seen(r.run, i)
            let note = i.retired ? "retired" : (i.generation == r.run.generation ? nil : "generation \(i.generation)")
            let confirmed = s.phase.isTerminal ? nil : s.confirmed.map { "seen \(Table.age(max(0, now.timeIntervalSince($0)))) ago" }
            let machine = cid.map { MachineName(controlID: $0, manifestID: r.run.id, instanceID: i.id).description }
            return [
                r.run.number(of: i.id).map(String.init) ?? "?", machine ?? "-",
                s.phase.rawValue + (s.unrecorded ? "*" : ""), s.exitCode.map(String.init) ?? "-",
                machine.flatMap { addresses[$0] } ?? "-",
                [note, confirmed, i.reason].compactMap { $0 }.joined(separator: "; "),
            ]
        }
        print(Table.render(["INSTANCE", "MACHINE", "PHASE", "EXIT", "ADDRESS", "NOTE"], rows))
        // What happened to its files and output on the way (a glob that matched nothing…).
        for note in notes { print(Console.visible("note: \(note)")) }
        if observed.unrecorded { print(SeenPhases.footnote) }
        if !addresses.isEmpty { print("From the Mac, a machine answers at MACHINE.orb.local (e.g. ssh, http).") }
    }
}

struct RunCancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel", abstract: "Cancel a run: the controller deletes its machines.",
        discussion: "Example: repl run cancel hello")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The run's exact name, or #ID.", completion: RunNameCompletion.kind) var id: String

    func run() async throws {
        let context = Context(global)
        let r = try context.exactRun(id)
        // A finished run keeps its result: cancelling it would rewrite Succeeded as Cancelled
        // (and a later apply would run it again).
        if r.run.phase.isTerminal {
            let held =
                r.run.manifest.hold != .zero
                ? "; a held machine stays until its hold ends (`repl delete run \(r.run.manifest.name)` removes it now)" : ""
            if context.json {
                context.printJSON(["cancelled": false, "run": r.run.manifest.name, "phase": r.run.phase.rawValue])
            } else {
                context.say("run \(r.run.manifest.name) has already finished (\(r.run.phase.rawValue)): nothing to cancel\(held)")
            }
            return
        }
        try await context.requireUsableAWS()
        try context.store().cancel(run: r.run.id)
        // One tick now when no other process acts; else the process that does deletes them.
        _ = try await Manager(controller: try await context.controller(), holder: "cancel").once()
        if context.json { context.printJSON(["cancelled": r.run.manifest.name]) } else { context.say("run \(r.run.manifest.name) cancelled") }
    }
}
