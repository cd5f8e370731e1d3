import ArgumentParser
import Foundation
import OrbStack
import ReplController
import ReplCore
import ReplStore

struct Recover: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rebuild the state from the machines after the database was lost.",
        discussion: """
            Adopts the machines' control id (choose with --control-id when several exist), restores each run's \
            manifest from the copy every machine keeps in /etc/repl/manifest.yaml, and keeps machines whose \
            manifest cannot be read (whitelisted as recovered) until you delete or re-apply them.

            Example: repl recover
            """)

    @OptionGroup var global: GlobalOptions
    @Option(help: "The control id to adopt when machines of several installations exist.") var controlId: String?

    func run() async throws {
        let context = Context(global)
        let store = try context.store()
        let provider = try await context.provider()
        guard try store.isEmpty() else {
            throw CLIError.input("\(store.path) already holds runs; recover rebuilds a lost database, so move that file away first")
        }
        let machines: [ObservedMachine]
        do { machines = try await provider.list() } catch { throw CLIError.failure("cannot list machines: \(error.description)") }
        let ours = machines.compactMap { m in MachineName(parsing: m.name).map { (m, $0) } }
        let ids = Set(ours.map(\.1.controlID))
        let cid: ControlID
        if let controlId {
            guard let id = ControlID(controlId) else { throw CLIError.input("--control-id: \"\(controlId)\" is not 6 characters of [0-9a-z]") }
            cid = id
        } else if ids.count == 1 {
            cid = ids.first!
        } else if ids.isEmpty {
            if context.json {
                context.printJSON(["recovered": [], "kept": [], "controlId": try store.controlID().rawValue])
            } else {
                context.say("no repl machines found; nothing to recover")
            }
            return
        } else {
            let counts = Dictionary(grouping: ours, by: \.1.controlID).mapValues(\.count)
            throw CLIError.input(
                "machines of several installations exist (\(ids.sorted().map { "\($0.rawValue): \(counts[$0]!) machine\(counts[$0]! == 1 ? "" : "s")" }.joined(separator: ", "))); choose one with --control-id"
            )
        }
        try store.setControlID(cid)
        if ids.count > 1, !context.json {
            let counts = Dictionary(grouping: ours, by: \.1.controlID).mapValues(\.count)
            context.say(
                "control ids seen: "
                    + counts.keys.sorted().map { "\($0) (\(counts[$0]!) machine\(counts[$0]! == 1 ? "" : "s"))" }.joined(separator: ", "))
        }
        let mine = ours.filter { $0.1.controlID == cid }
        try store.reserveIDs(manifest: mine.compactMap(\.1.manifestID).max() ?? 0, instance: mine.map(\.1.instanceID.rawValue).max() ?? 0)

        // Read each running machine's manifest copy; stopped ones are not started just to read it.
        // A copy is the machine's to write: it is believed only where it cannot give a machine
        // more than it has, and only where the machines of a run agree.
        struct Claim {
            var machine: String
            var copy: ManifestCopy.Copy
            var instance: (InstanceID, InstancePhase, Date?, Int?)
        }
        var claims: [Claim] = []
        var kept: [(name: String, why: String)] = []
        for (machine, name) in mine {
            guard let runID = name.runID, machine.state == .running,
                let text = try? await provider.manifestCopy(name: name), let parsed = ManifestCopy.read(text),
                parsed.runID == runID
            else {
                kept.append((machine.name, "its manifest could not be read"))
                continue
            }
            // An isolated machine's copy may not ask for a machine that is not, nor for the host's files.
            let isolated = try? await provider.isolation(name: name)
            if let isolated, isolated != parsed.manifest.options.isolated {
                kept.append((machine.name, "its manifest says isolated: \(parsed.manifest.options.isolated), the machine is not so"))
                continue
            }
            if isolated == true, !parsed.manifest.files.isEmpty {
                kept.append((machine.name, "an isolated machine's manifest asks for files of the host"))
                continue
            }
            // The host channel keeps the status with its exit code (no orbctl call); else the machine.
            var status = StatusChannel(directory: context.channelDirectory).status(machine.name)
            if status == nil { status = try? await provider.probe(name: name) }
            let phase: InstancePhase
            var exitCode: Int?
            if case .exited(let code)? = status { exitCode = code }
            switch status {
            case .exited(let code)?: phase = code == 0 ? .succeeded : .failed
            case .timedOut?: phase = .timedOut
            case .bootstrapping?: phase = .bootstrapping
            default: phase = .running
            }
            claims.append(Claim(machine: machine.name, copy: parsed, instance: (name.instanceID, phase, machine.createdAt, exitCode)))
        }
        // Machines of one run that disagree on it, or two runs that claim one name: none of them
        // is believed (which is the forgery cannot be told), and none is touched.
        let byRun = Dictionary(grouping: claims, by: \.copy.runID)
        let runOfName = Dictionary(grouping: byRun.values.compactMap(\.first), by: \.copy.manifest.name)
        var recoveredRuns: [(manifest: RunManifest, id: RunID, generation: Int, instances: [(InstanceID, InstancePhase, Date?, Int?)])] = []
        for (id, group) in byRun.sorted(by: { $0.key < $1.key }) {
            let first = group[0].copy
            if group.contains(where: { $0.copy.manifest != first.manifest || $0.copy.generation != first.generation }) {
                kept += group.map { ($0.machine, "the machines of run #\(Base36.encode(id)) disagree on its manifest") }
            } else if runOfName[first.manifest.name, default: []].count > 1 {
                kept += group.map { ($0.machine, "another run's machines also claim the name \(first.manifest.name)") }
            } else {
                recoveredRuns.append((first.manifest, id, first.generation, group.map(\.instance)))
            }
        }
        // All or nothing: a recover that fails records nothing, and can be run again.
        try store.insertRecovered(
            recoveredRuns.map { run in
                (
                    run: run.manifest, id: run.id, generation: run.generation,
                    instances: run.instances.map { (id: $0.0, phase: $0.1, createdAt: $0.2, exitCode: $0.3) }
                )
            }, kept: kept.map { (name: $0.name, reason: "recovered: \($0.why); delete or re-apply to manage it") })
        let recovered = recoveredRuns.map(\.manifest.name)
        if context.json {
            context.printJSON(["controlId": cid.rawValue, "recovered": recovered, "kept": kept.map(\.name)])
        } else {
            context.say("adopted control id \(cid)")
            for name in recovered { context.say("run \(name): recovered") }
            for k in kept { context.say("\(k.name): kept (\(k.why); whitelisted until you delete or re-apply)") }
        }
    }
}
