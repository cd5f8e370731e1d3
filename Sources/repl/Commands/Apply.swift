import ArgumentParser
import Foundation
import ReplController
import ReplCore

struct Apply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record manifests as desired state and converge until their commands have started.",
        discussion: """
            Files, directories (their *.yaml and *.yml) and `-` for standard input. A set with any invalid \
            document applies nothing. With --wait, goes on until the runs finish, prints their output and \
            exits with the command's exit code (124 when the deadline ended it).

            Example: repl apply -f examples/hello.yaml --wait
            """)

    @OptionGroup var global: GlobalOptions
    @Option(name: .shortAndLong, help: "A manifest file, a directory, or - for standard input (repeatable).")
    var file: [String] = []
    @Flag(help: "Show what would change and change nothing.")
    var dryRun = false
    @Flag(help: "Wait for the runs to finish and exit with the command's exit code.")
    var wait = false
    @Flag(help: "After applying, keep watching (as `repl watch -f`).")
    var watch = false
    @Option(help: "Give up (exit 1, naming what is stuck and why) when the runs have not all started by then: 10m, 90s.")
    var timeout: String = "10m"
    @Flag(help: "Replace long-lived machines (runs without a command) whose source, bootstrap or env changed, without asking.")
    var yes = false
    @Flag(help: "Start a new installation even though machines of another one exist (see `repl recover`).")
    var newInstallation = false

    func validate() throws {
        if file.isEmpty { throw ValidationError("give at least one manifest with -f PATH") }
    }

    func run() async throws {
        let context = Context(global)
        guard let limit = TimeSpan(parsing: timeout), limit.milliseconds > 0 else {
            throw CLIError.input("--timeout: \"\(timeout)\" is not a duration (use 10m, 90s or 600000)")
        }
        let set = try context.manifests(file)
        let code = try await Converger(context: context).apply(
            set, wait: wait, dryRun: dryRun, timeout: limit.seconds, newInstallation: newInstallation,
            replaceLongLived: yes)
        if watch && !dryRun { try await WatchLoop(context: context, files: file, interval: 2).run() }
        if code != 0 { throw CommandExit(code: code) }
    }
}

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show what apply would do, like `terraform plan`, and change nothing.",
        discussion: "Example: repl plan -f examples/replicas.yaml")

    @OptionGroup var global: GlobalOptions
    @Option(name: .shortAndLong, help: "A manifest file, a directory, or - (repeatable).")
    var file: [String] = []

    func validate() throws {
        if file.isEmpty { throw ValidationError("give at least one manifest with -f PATH") }
    }

    func run() async throws {
        let context = Context(global)
        let set = try context.manifests(file)
        let controller = try await context.controller { $0.dryRun = true }
        _ = try await PlanPrinter(context: context).show(set: set, controller: controller)
    }
}

/// Prints a plan over the desired state the manifests would make, in a scratch copy of the store.
struct PlanPrinter {
    let context: Context

    func show(set: ManifestSet, controller: Controller) async throws -> Int32 {
        // What apply would refuse, plan refuses too (an option this OrbStack is too old for).
        try Converger(context: context).refuseOptionsThisOrbStackLacks(set)
        let before = Dictionary(try context.store().runs().map { ($0.run.manifest.name, $0.run) }, uniquingKeysWith: { a, _ in a })
        let scratch = try context.store().scratchCopy()
        defer { try? FileManager.default.removeItem(atPath: (scratch.path as NSString).deletingLastPathComponent) }
        let changes = try scratch.apply(set)
        let preview = Controller(store: scratch, provider: controller.provider, settings: controller.settings)
        let report = await preview.tick()
        if let error = report.observationError { throw CLIError.failure("cannot plan: \(error)") }
        let plan = report.plan!
        var lines: [String] = []
        var items: [[String: Any]] = []
        func add(_ sign: String, _ verb: String, _ what: CustomStringConvertible, _ why: String, fields: [String] = []) {
            let what = what.description
            lines.append("\(sign) \(verb) \(what)  (\(why))" + fields.map { "\n    \($0)" }.joined())
            items.append(["action": verb, "target": what, "reason": why, "fields": fields])
        }
        // The manifests first, with what changed in each field.
        let snapshots = Set(set.snapshots.map(\.name))
        for change in changes {
            switch change {
            case .replaced(let n, let g):
                let fields = set.runs.first { $0.name == n }.flatMap { new in before[n].map { new.differences(from: $0.manifest) } } ?? []
                add("~", "replace", "run \(n)", "its machines are made again: generation \(g)", fields: fields)
            case .updated(let n):
                let fields = set.runs.first { $0.name == n }.flatMap { new in before[n].map { new.differences(from: $0.manifest) } } ?? []
                add("~", "update", "run \(n)", "in place", fields: fields)
            case .created(let n) where snapshots.contains(n):
                let from = set.snapshots.first { $0.name == n }?.from ?? "?"
                add("+", "snapshot", n, "of run \(from), taken once its command has started")
            default: break
            }
        }
        let runs = try scratch.runs()
        func runName(_ id: RunID) -> String { runs.first { $0.run.id == id }?.run.manifest.name ?? Base36.encode(id) }
        // OrbStack's options for the machine; an isolated one has no host status channel.
        func machineOptions(_ id: RunID) -> String {
            guard let o = runs.first(where: { $0.run.id == id })?.run.manifest.options, o != .none else { return "" }
            var parts: [String] = []
            if let c = o.cpus { parts.append("\(c) cpus") }
            if let m = o.memory { parts.append("memory \(m)") }
            if let d = o.disk { parts.append("disk \(d)") }
            if let u = o.user { parts.append("user \(u)") }
            if o.userData != nil { parts.append("cloud-init user data, waited for before the bootstrap") }
            if o.isolated { parts.append("isolated: no host status channel, so its status is read by probing the machine") }
            return " (" + parts.joined(separator: "; ") + ")"
        }
        func start(_ id: RunID) -> String { runs.first { $0.run.id == id }?.run.manifest.command == nil ? "bootstrap it" : "start its command" }
        // A machine made and started in one go is one line.
        let made = Set(
            plan.actions.compactMap { action -> MachineName? in
                switch action {
                case .create(_, _, let m, _), .clone(_, _, let m, _): return m;
                default: return nil
                }
            })
        for action in plan.actions {
            switch action {
            case let .create(run, _, machine, spec):
                add("+", "create", machine, "run \(runName(run)), \(spec)\(machineOptions(run)), then \(start(run))")
            case let .clone(run, _, machine, snap): add("+", "clone", machine, "run \(runName(run)) from \(snap), then \(start(run))")
            case let .delete(machine, reason): add("-", "delete", machine, reason.rawValue)
            case let .takeSnapshot(s, src, machine): add("+", "snapshot", machine, "snapshot \(s) of \(src)")
            case let .startRun(run, _, machine) where !made.contains(machine): add("~", "start", machine, "run \(runName(run))")
            case let .start(machine): add("~", "start", machine, "stopped but wanted")
            case let .stop(machine): add("~", "stop", machine, "a snapshot is kept stopped")
            default: break
            }
        }
        // What nothing repl does will end (a machine in the way): shown, not hidden behind
        // "Nothing to do" (found by attacking).
        let blocked = plan.blocked
        for b in blocked { lines.append("! blocked \(b.machine)  (\(b.why))") }
        if context.json {
            context.printJSON([
                "changes": items, "nothingToDo": items.isEmpty && blocked.isEmpty,
                "blocked": blocked.map { ["machine": $0.machine, "reason": $0.why] },
            ])
        } else if lines.isEmpty {
            print("Nothing to do: machines match the manifests.")
        } else {
            print(Console.visible(lines.joined(separator: "\n")))
            // Each line is one thing: the counts add up to the lines above.
            let counts = ["+", "~", "-", "!"].map { s in lines.filter { $0.hasPrefix(s) }.count }
            print(
                "\nPlan: \(counts[0]) to add, \(counts[1]) to change, \(counts[2]) to delete"
                    + (counts[3] > 0 ? "; \(counts[3]) blocked until you act." : "."))
        }
        return 0
    }
}
