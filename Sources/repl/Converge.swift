import Foundation
import OrbStack
import ReplController
import ReplCore
import ReplStore

/// Records manifests and ticks until their instances have started (or, with
/// `wait`, finished). Shared by `apply` and `run`, so both take one path.
struct Converger {
    let context: Context

    /// Exit code: 0, the command's exit code with `wait` (124 on timeout), or 1 on failure.
    /// `timeout` bounds the wait for the runs to start (not, with `wait`, for them to finish).
    func apply(
        _ set: ManifestSet, wait: Bool, dryRun: Bool, timeout: TimeInterval = 600, newInstallation: Bool = false,
        replaceLongLived: Bool = true
    ) async throws -> Int32 {
        let store = try context.store()
        let set = try adoptStoreProvider(set, store: store)
        if dryRun {
            // The plan is made against the provider these runs would be on (an aws one on a
            // state directory not yet bound to it: EC2, never orbctl).
            let (provider, settings) = try bindProvider(set, store: store, checkOnly: true)
            if provider == "aws", try store.provider().name != "aws" {
                context.pin(engine: try await context.aws(region: settings["region"], endpoint: settings["endpoint"], s3: settings["s3"]))
            }
            let controller = try await context.controller { $0.dryRun = true }
            return try await PlanPrinter(context: context).show(set: set, controller: controller)
        }
        let (provider, settings) = try bindProvider(set, store: store, checkOnly: true)
        let engine: any Provider
        if provider == "orbstack" {
            if !set.runs.isEmpty { try context.requireRunnableEmulator() }
            // orbctl is checked before anything is recorded: a run saved and then left because
            // OrbStack is missing (exit 3) would start later, by surprise, under a sweep.
            engine = try await context.provider()
            try refuseOptionsThisOrbStackLacks(set)
        } else {
            // So are AWS's credentials and region.
            engine = try await context.aws(region: settings["region"], endpoint: settings["endpoint"], s3: settings["s3"])
        }
        if !newInstallation { try await refuseOverALostStore(store, engine: engine) }
        if !replaceLongLived { try confirmReplacingLongLived(set, store: store) }
        _ = try bindProvider(set, store: store, checkOnly: false)
        let changes = try store.apply(set)
        // With --wait, standard output is the commands' own output: what changed is progress then.
        for change in changes { if wait { context.progress(change.description) } else { context.say(change.description) } }
        let names = Set(set.runs.map(\.name))
        let manager = Manager(controller: try await context.controller(), holder: "apply")
        defer { manager.release() }
        var failures = 0
        let streamed = StreamedOutput()
        var lastStream = Date.distantPast
        var followed: Int32?
        let cid = try store.controlID()
        let startBy = Date().addingTimeInterval(timeout)
        var waiting: [String: String] = [:]
        var cancelledSince: Date?
        while true {
            // One actor at a time: while another process holds the lease it acts on these
            // manifests, and this one follows their runs (and takes over if it lets go).
            let turn = try await manager.turn()
            if case .heldBy(let holder) = turn {
                if followed != holder.pid {
                    context.progress(
                        "\(holder.holder) (pid \(holder.pid)) holds the controller lease and will act on these manifests\(wait ? "; following them" : "")"
                    )
                    followed = holder.pid
                }
                if !wait {
                    if context.json { context.printJSON(["applied": changes.map(\.json), "leaseHeldBy": holder.holder]) }
                    return 0
                }
            }
            let report = turn.report ?? TickReport()
            if let plan = report.plan { waiting = plan.waiting }
            for (action, error) in report.outcomes {
                if let error {
                    context.warn("\(action) failed: \(OrbctlClient.oneLine(error.description))")
                } else if let line = Self.progress(action) {
                    context.progress(line)
                }
            }
            if let error = report.observationError {
                failures += 1
                context.warn("cannot list machines: \(error)")
                if failures >= 5 { throw CLIError.failure("giving up after 5 failed attempts to list machines: \(error)") }
                try await Task.sleep(nanoseconds: UInt64(min(8, pow(2, Double(failures))) * 1e9))
                continue
            }
            failures = 0
            if let breaker = report.breaker, breaker.isOpen(at: Date()), report.deferred.contains(where: { Admission.needsAddress($0.action) }) {
                throw CLIError.failure(
                    "OrbStack ran out of machine addresses; creates are paused until \(breaker.openUntil!) (circuit breaker). \(ProviderError.resetAdvice)"
                )
            }
            let runs = try store.runs().filter { names.contains($0.run.manifest.name) }.map(\.run)
            // Cancelled or deleted by another command while followed: it will never start or end
            // as this apply was waiting for.
            // It removes their machines before it says so (one created meanwhile, by a create
            // already in flight when the cancel came, included), for up to a minute.
            if let gone = runs.first(where: \.cancelled) {
                let removing = runs.filter(\.cancelled).contains { run in run.instances.contains { !$0.phase.isTerminal } }
                if removing, cancelledSince.map({ Date().timeIntervalSince($0) < 60 }) ?? true, turn.report != nil {
                    if cancelledSince == nil { cancelledSince = Date() }
                    await manager.sleep(0.2)
                    continue
                }
                throw CLIError.failure(
                    "run \(gone.manifest.name) was cancelled or deleted by another command while this apply followed it; "
                        + (removing
                            ? "its machines are removed by the next controller tick (`repl watch`, or the next sweep)" : "its machines are removed"))
            }
            let started = runs.allSatisfy { run in
                run.instances.filter { run.wants($0) }.count >= run.manifest.replicas
                    && run.instances.filter { run.wants($0) }.allSatisfy { $0.phase >= .bootstrapping }
            }
            // Finished once every output is whole somewhere: collected, or in the host channel
            // under a final status (a held machine's logs are collected only when it goes).
            let channel = StatusChannel(directory: context.channelDirectory)
            let finished = runs.allSatisfy { run in
                // A run without a command never finishes by itself (it stays up until deleted or
                // its maxDuration): once started, there is nothing more to wait for.
                if run.manifest.command == nil {
                    return run.instances.filter { run.wants($0) }.count >= run.manifest.replicas
                        && run.instances.filter { run.wants($0) }.allSatisfy { $0.phase >= .bootstrapping }
                }
                return run.instances.filter { run.wants($0) }.count >= run.manifest.replicas
                    && run.instances.filter { run.wants($0) }.allSatisfy { instance in
                        let machine = MachineName(controlID: cid, manifestID: run.id, instanceID: instance.id).description
                        return instance.phase.isTerminal
                            && (instance.logsCollected || instance.startedAt == nil || channel.status(machine)?.isFinal == true)
                    }
            }
            if context.showsStatus {
                let spinner = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"][Int(Date().timeIntervalSince1970 * 10) % 10]
                context.status(
                    spinner + " "
                        + runs.flatMap { run in
                            run.instances.filter { run.wants($0) }.map { "\(run.label($0.id)) \($0.phase.rawValue.lowercased())" }
                        }.joined(separator: " · "))
            }
            if finished || (!wait && started) {
                return try await finish(runs: runs, wait: wait, streamed: streamed, cid: cid)
            }
            if !started && Date() > startBy {
                throw CLIError.failure(
                    "gave up after \(TimeSpan(milliseconds: Int64(timeout * 1000))): not started yet: "
                        + stuck(
                            runs: try store.runs(includeDeleted: false).filter { names.contains($0.run.manifest.name) }, cid: cid, waiting: waiting)
                        + ". The manifests stay recorded: `repl watch` or the next sweep goes on with them")
            }
            // --wait streams the commands' output live, about once a second.
            if wait && !context.json && Date().timeIntervalSince(lastStream) >= 1 {
                lastStream = Date()
                await stream(runs: runs, cid: cid, streamed: streamed)
            }
            // Statuses arrive through the host channel between ticks, so an idle tick comes
            // again in a moment, sooner when the plan has something falling due.
            await manager.sleep(Manager.pause(after: turn, idle: turn.report == nil ? 0.5 : 0.3))
        }
    }

    /// Options newer than the OrbStack installed (per-machine resources need 2.2.0, isolated
    /// machines 2.1.0) are refused before anything is recorded, naming the version needed:
    /// an older orbctl would fail every create with "unknown flag".
    func refuseOptionsThisOrbStackLacks(_ set: ManifestSet) throws {
        guard let installed = context.orbctlVersion else { return }
        for document in set.documents {
            guard case .run(let run) = document.manifest else { continue }
            for need in run.options.requirements where installed.number < need.number {
                throw CLIError.input(
                    "\(document.location): \(need.option): needs OrbStack \(need.version) or later; "
                        + "this Mac has \(installed.version) (update OrbStack, or remove \(need.option))")
            }
        }
    }

    /// A run cloned `from:` a snapshot that is not among these documents, without a `provider:`
    /// of its own, runs where the state directory's runs do (its snapshot is one of theirs).
    func adoptStoreProvider(_ set: ManifestSet, store: Store) throws -> ManifestSet {
        let bound: String
        switch Result(catching: { () throws(StoreError) in try store.provider().name }) {
        case .success(let name): bound = name
        case .failure(let error): throw CLIError.input(error.description)
        }
        var set = set
        var diagnostics: [ManifestDiagnostic] = []
        for (index, document) in set.documents.enumerated() {
            guard case .run(var run) = document.manifest, case .snapshot(let snapshot) = run.source, document.fields["provider"] == nil,
                run.provider != bound, !set.snapshots.contains(where: { $0.name == snapshot })
            else { continue }
            diagnostics += ManifestParser.adopt(
                bound, run: &run, document: document, why: "snapshot \(snapshot) is of this state directory's runs, on \(bound)")
            set.documents[index].manifest = .run(run)
        }
        if !diagnostics.isEmpty { throw ManifestError(diagnostics) }
        return set
    }

    /// The provider the manifests' runs are on, with the store put on it: one provider (and,
    /// for aws, one region and endpoint) per apply and per state directory. Nothing is recorded
    /// when they disagree.
    func bindProvider(_ set: ManifestSet, store: Store, checkOnly: Bool) throws -> (String, [String: String]) {
        let runs = set.documents.compactMap { document -> (RunManifest, SourceLocation)? in
            if case .run(let run) = document.manifest { return (run, document.location) } else { return nil }
        }
        guard let (first, firstPlace) = runs.first else { return try store.provider() }
        // Where an aws run's instances are, resolved now (the manifest, else the environment
        // and profile) and recorded: a later command in another region or against another
        // endpoint would list nothing there and read every machine as gone (found by attacking).
        func resolved(_ run: RunManifest) throws -> [String: String] {
            guard run.provider == "aws" else { return [:] }
            var spec = AWSSpec()
            if case .aws(let s) = run.source { spec = s }
            return try context.awsPlace(region: spec.region, endpoint: spec.endpoint)
        }
        let settings = try resolved(first)
        for (run, place) in runs.dropFirst() {
            let other = try resolved(run)
            if run.provider != first.provider || other != settings {
                throw CLIError.input(
                    "\(place): run \(run.name) is on \(Self.describe(run.provider, other)), but run \(first.name) (\(firstPlace)) is on \(Self.describe(first.provider, settings)): one provider and region per apply and per state directory; apply them with separate REPL_HOMEs. Nothing was recorded"
                )
            }
        }
        let bound = Result { () throws(StoreError) in try store.bind(provider: first.provider, settings: settings, checkOnly: checkOnly) }
        if case .failure(let error) = bound { throw CLIError.input("\(firstPlace): \(error.description). Nothing was recorded") }
        return (first.provider, settings)
    }

    static func describe(_ provider: String, _ settings: [String: String]) -> String {
        ([provider] + settings.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }).joined(separator: ", ")
    }

    /// A machine without a command is a long-lived box someone may be working in: replacing it
    /// (its source, bootstrap or env changed) loses what is on it, so it is asked for, on a
    /// terminal, or needs `--yes`; nothing is recorded otherwise.
    func confirmReplacingLongLived(_ set: ManifestSet, store: Store) throws {
        let current = Dictionary(try store.runs(includeDeleted: false).map { ($0.run.manifest.name, $0.run) }, uniquingKeysWith: { a, _ in a })
        var boxes: [String] = []
        for run in set.runs {
            guard let old = current[run.name], !old.cancelled, old.manifest.command == nil,
                old.manifest.generationFingerprint != run.generationFingerprint
            else { continue }
            let live = old.instances.filter { old.wants($0) && !$0.phase.isTerminal }.count
            guard live > 0 else { continue }
            let why = run.differences(from: old.manifest).prefix(3).joined(separator: "; ")
            boxes.append("\(run.name) (\(live) machine\(live == 1 ? "" : "s"); \(why))")
        }
        guard !boxes.isEmpty else { return }
        let what = "this replaces the long-lived machines of " + boxes.joined(separator: ", ") + ", and what is on them is lost"
        if isatty(0) == 1 && isatty(2) == 1 && !context.json {
            Console.err("repl: \(what). Replace them? [y/N] ")
            if let answer = readLine(), ["y", "yes"].contains(answer.lowercased().trimmingCharacters(in: .whitespaces)) { return }
            throw CLIError.input("not replaced; nothing was recorded")
        }
        throw CLIError.input("\(what); give --yes to replace them. Nothing was recorded")
    }

    /// An empty store beside machines of another installation is most likely a lost `state.db`:
    /// applying would make a second fleet while the first runs on as foreign. Refused, pointing at
    /// `repl recover`, unless `--new-installation` says it is meant. A failed list is never read
    /// as "no machines": it refuses too.
    func refuseOverALostStore(_ store: Store, engine: any Provider) async throws {
        guard try store.isEmpty() else { return }
        let machines: [ObservedMachine]
        do throws(ProviderError) {
            machines = try await engine.list()
        } catch {
            throw CLIError.failure("cannot list machines to check for an earlier installation (\(error.description)); nothing was recorded")
        }
        let cid = try store.controlID()
        var others: [ControlID: [String]] = [:]
        for machine in machines {
            if let name = MachineName(parsing: machine.name), name.controlID != cid { others[name.controlID, default: []].append(machine.name) }
        }
        guard !others.isEmpty else { return }
        let seen = others.keys.sorted().map {
            "\($0) (\(others[$0]!.count) machine\(others[$0]!.count == 1 ? "" : "s"), e.g. \(others[$0]!.sorted()[0]))"
        }
        throw CLIError.input(
            "\(store.path) is empty, but machines of another repl installation exist: control id \(seen.joined(separator: ", ")). "
                + "If its state was lost, run `repl recover` to adopt them; to start a second installation beside them, apply again with --new-installation. Nothing was recorded"
        )
    }

    /// What has not started, and why: the plan's reason, else the last error.
    func stuck(runs: [RunRecord], cid: ControlID, waiting: [String: String]) -> String {
        var parts: [String] = []
        for record in runs {
            let run = record.run
            let wanted = run.instances.filter { run.wants($0) }
            for instance in wanted where instance.phase < .bootstrapping {
                let machine = MachineName(controlID: cid, manifestID: run.id, instanceID: instance.id).description
                let why = OrbctlClient.oneLine(waiting[machine] ?? record.lastError ?? "no machine yet")
                parts.append("\(run.manifest.name) (\(machine), \(instance.phase.rawValue.lowercased())): \(why)")
            }
            if wanted.count < run.manifest.replicas {
                parts.append("\(run.manifest.name): \(run.manifest.replicas - wanted.count) instance(s) not yet planned")
            }
        }
        return parts.isEmpty ? "nothing (it started just now)" : parts.joined(separator: "; ")
    }

    static func progress(_ action: Action) -> String? {
        switch action {
        case .create(_, _, let m, let spec): return "\(m): created (\(spec))"
        case .clone(_, _, let m, let snap): return "\(m): cloned from \(snap)"
        case .startRun(_, _, let m): return "\(m): run started"
        case .delete(let m, let reason): return "\(m): deleted (\(reason.rawValue))"
        case .takeSnapshot(let s, let src, _): return "snapshot \(s): taken from \(src)"
        case .collectLogs: return nil
        default: return nil
        }
    }

    /// Prints what each running command wrote since the last call: only the new bytes, from
    /// the host channel (a local read), or from the machine when it has no channel.
    func stream(runs: [DesiredRun], cid: ControlID, streamed: StreamedOutput) async {
        guard let reader = try? await context.logReader(live: true) else { return }
        let many = Self.instanceCount(runs) > 1
        for run in runs {
            for instance in run.instances where run.wants(instance) && (instance.phase == .bootstrapping || instance.phase == .running) {
                let machine = MachineName(controlID: cid, manifestID: run.id, instanceID: instance.id)
                await drain(
                    reader, run: run, instance: instance.id, machine: machine, live: true,
                    prefix: many ? "[\(run.label(instance.id))] " : nil, streamed: streamed)
            }
        }
    }

    /// Bytes a read of a command's output takes at most: output is streamed in pieces of this
    /// size, so `--wait` on a command that printed 100 MB holds a few of them, not the whole.
    static let streamChunk = 1 << 20

    /// Reads and writes an instance's output from where it was left, a piece at a time, to
    /// its current end.
    func drain(
        _ reader: LogReader, run: DesiredRun, instance: InstanceID, machine: MachineName, live: Bool, prefix: String?,
        streamed: StreamedOutput, final: Bool = false
    ) async {
        while true {
            let data =
                (try? await reader.read(
                    run: run.manifest.name, instance: instance, machine: machine, bootstrap: false,
                    from: streamed.offsets[instance] ?? 0, live: live, limit: Self.streamChunk)) ?? Data()
            let more = data.count >= Self.streamChunk
            if !data.isEmpty || final { emit(data, instance: instance, prefix: prefix, streamed: streamed, final: final && !more) }
            if !more { return }
        }
    }

    /// What `--wait` has printed of each instance's output so far.
    final class StreamedOutput {
        var offsets: [InstanceID: Int] = [:]
        var partial: [InstanceID: Data] = [:]
        var lastByte: [InstanceID: UInt8] = [:]
    }

    static func instanceCount(_ runs: [DesiredRun]) -> Int {
        runs.reduce(0) { total, run in total + run.instances.filter { run.wants($0) }.count }
    }

    /// Writes a command's output byte for byte, a whole line at a time (so that progress lines
    /// never split one); with several instances each line gets its instance's prefix. A line
    /// not yet ended waits for its end, or the run's (`final`), when it is written as it is
    /// (with a prefix, ended).
    func emit(_ data: Data, instance: InstanceID, prefix: String?, streamed: StreamedOutput, final: Bool = false) {
        streamed.offsets[instance, default: 0] += data.count
        if let last = data.last { streamed.lastByte[instance] = last }
        let head = Data((prefix ?? "").utf8)
        var buffer = streamed.partial[instance].map { $0 + data } ?? data
        if let last = buffer.lastIndex(of: 10) {
            let whole = buffer[buffer.startIndex...last]
            if prefix == nil {
                context.out(Data(whole))
            } else {
                var rest = whole[...]
                while let newline = rest.firstIndex(of: 10) {
                    context.out(head + rest[rest.startIndex...newline])
                    rest = rest[rest.index(after: newline)...]
                }
            }
            buffer = Data(buffer[buffer.index(after: last)...])
        }
        if final && !buffer.isEmpty {
            context.out(prefix == nil ? buffer : head + buffer + Data([10]))
            buffer = Data()
        }
        streamed.partial[instance] = buffer
    }

    func finish(runs: [DesiredRun], wait: Bool, streamed: StreamedOutput, cid: ControlID) async throws -> Int32 {
        context.clearStatus()
        let reader = try await context.logReader(live: false)
        var code: Int32 = 0
        var documents: [[String: Any]] = []
        for run in runs {
            if wait && run.manifest.command == nil {
                context.progress(
                    "\(run.manifest.name) has no command: nothing to wait for; its machines stay up until deleted"
                        + (run.manifest.maxDuration.map { " or until its maxDuration (\($0))" } ?? ""))
                continue
            }
            for instance in run.instances where run.wants(instance) {
                // What was not streamed yet (all of it when the run was quick), read from there on.
                if wait, !context.json {
                    let machine = MachineName(controlID: cid, manifestID: run.id, instanceID: instance.id)
                    let many = Self.instanceCount(runs) > 1
                    await drain(
                        reader, run: run, instance: instance.id, machine: machine, live: false,
                        prefix: many ? "[\(run.label(instance.id))] " : nil, streamed: streamed, final: true)
                    // Output that did not end its last line does not run into what follows on a
                    // terminal; standard output itself stays byte for byte the command's.
                    if !many, let last = streamed.lastByte[instance.id], last != 10 { context.endLineOnTerminal() }
                }
                let c: Int32 = instance.phase == .timedOut ? 124 : instance.phase == .succeeded ? 0 : Int32(instance.exitCode ?? 1)
                if wait && code == 0 { code = c }
                let machine = MachineName(controlID: cid, manifestID: run.id, instanceID: instance.id).description
                // Where its whole output is: collected, else (a held machine) the host channel's copy.
                let collected = Controller.logFile(
                    context.stateDirectory.appendingPathComponent("logs"), run: run.manifest.name, instance: instance.id)
                let log =
                    FileManager.default.fileExists(atPath: collected.path)
                    ? collected.path : StatusChannel(directory: context.channelDirectory).logFile(machine, bootstrap: false).path
                documents.append([
                    "run": run.manifest.name, "id": Base36.encode(run.id), "instance": run.number(of: instance.id) ?? 0,
                    "machine": machine, "log": log, "timedOut": instance.phase == .timedOut,
                    "phase": instance.phase.rawValue, "exitCode": instance.exitCode as Any,
                ])
            }
            if wait { context.progress("\(run.manifest.name): \(run.phase.rawValue)") }
        }
        // Without --wait, apply is done once every command has started: an instance that failed
        // before it could (an image that does not exist) is a failure (found by attacking: exit 0).
        if !wait {
            for run in runs {
                for instance in run.instances where run.wants(instance) && instance.phase == .failed && instance.startedAt == nil {
                    context.warn("\(run.label(instance.id)) failed before its command started: \(instance.reason ?? "no reason recorded")")
                    code = 1
                }
            }
        }
        if context.json { context.printJSON(["schemaVersion": 1, "runs": documents, "exitCode": Int(code)]) }
        return code
    }
}
