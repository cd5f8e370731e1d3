import ArgumentParser
import Foundation
import ReplController
import ReplCore
import ReplPlatform

struct Orphans: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Machines with our name that nothing wants (orphans) and other installations' (foreign).",
        subcommands: [OrphansList.self, OrphansSweep.self, OrphansWhitelist.self, OrphansUnwhitelist.self],
        defaultSubcommand: OrphansList.self)
}

struct SweepOptions: ParsableArguments {
    @Option(help: "Orphans younger than this are kept (default 2m).") var orphanGrace: String = "2m"
    @Flag(help: "Also delete other installations' machines (foreign).") var includeForeign = false

    func grace() throws -> TimeSpan {
        guard let span = TimeSpan(parsing: orphanGrace) else {
            throw CLIError.input("--orphan-grace: \"\(orphanGrace)\" is not a duration (use 90s, 2m or 120000)")
        }
        return span
    }
}

struct OrphansList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List orphans and foreign machines, with state, age and why.",
        discussion: "Example: repl orphans --json")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var sweep: SweepOptions

    func run() async throws {
        let context = Context(global)
        let grace = try sweep.grace()
        let controller = try await context.controller {
            $0.dryRun = true
            $0.orphanGrace = grace
            $0.includeForeign = sweep.includeForeign
        }
        let report = await controller.tick()
        if let e = report.observationError { throw CLIError.failure("cannot list machines: \(e)") }
        let machines = report.plan!.machines.filter { [.orphan, .foreign, .whitelisted].contains($0.machineClass) }
            .sorted { $0.machine.name < $1.machine.name }
        if context.json {
            context.printJSON([
                "machines": machines.map { m in
                    [
                        "name": m.machine.name, "class": m.machineClass.rawValue, "state": m.machine.state.description,
                        "ageSeconds": m.age.map { Int($0) } as Any, "why": m.why,
                        "deletableAt": m.deletableAt.map { DateFormats.iso8601($0) } as Any,
                    ] as [String: Any]
                }
            ])
            return
        }
        if machines.isEmpty { print("No orphans or foreign machines."); return }
        for cls in [MachineClass.orphan, .whitelisted, .foreign] {
            let group = machines.filter { $0.machineClass == cls }
            guard !group.isEmpty else { continue }
            print("\(cls.rawValue.capitalized) (\(group.count)):")
            print(
                Table.render(
                    ["  NAME", "STATE", "AGE", "WHY"],
                    group.map {
                        ["  " + $0.machine.name, $0.machine.state.description, $0.age.map { Table.age($0) } ?? "?", $0.why]
                    }))
        }
    }
}

struct OrphansSweep: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep", abstract: "One full unattended tick for cron: deadlines, finished runs and orphans.",
        discussion: "Exit 0 when the world is as it should be, 1 when something failed.\nExample: repl orphans sweep --quiet")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var sweep: SweepOptions
    @Flag(help: "Show what would be deleted and delete nothing.") var dryRun = false
    @Flag(help: "Install a launchd agent (~/Library/LaunchAgents) that sweeps every minute (macOS).") var installLaunchd = false
    @Flag(help: "Remove that launchd agent (macOS).") var uninstallLaunchd = false
    @Flag(help: "Print the crontab line for this repl (its real path) and state directory, to add with `crontab -e`.")
    var printCrontab = false

    /// The cron line: cron's PATH is /usr/bin:/bin, so it names this binary by its real path and
    /// adds the directories orbctl lives in; the log's directory is made first, or the shell
    /// could not open the log and repl would never run.
    static func crontabLine(program: String, stateDirectory: String, orbctl: String?, extra: [(String, String)] = []) -> String {
        // cron ends a command at an unescaped `%` (and turns it into a newline), even in quotes.
        func quoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''").replacingOccurrences(of: "%", with: "\\%") + "'" }
        let orbctlFlag = orbctl.map { " --orbctl \(quoted($0))" } ?? ""
        return "* * * * * mkdir -p \(quoted(stateDirectory)) && PATH=\"$HOME/.orbstack/bin:/usr/local/bin:/opt/homebrew/bin:/usr/bin:/bin\" "
            + "REPL_HOME=\(quoted(stateDirectory)) " + extra.map { "\($0.0)=\(quoted($0.1)) " }.joined()
            + "\(quoted(program))\(orbctlFlag) orphans sweep --quiet >> \(quoted(stateDirectory + "/sweep.log")) 2>&1"
    }

    func run() async throws {
        let context = Context(global)
        if printCrontab {
            // An explicit --orbctl or REPL_ORBCTL is kept: `sim` (the emulator is built in, and
            // sweeping OrbStack with the emulator's store would be wrong) or an absolute path.
            let orbctl = context.orbctlChoice.flatMap { $0 == "sim" || ($0 as NSString).isAbsolutePath ? $0 : nil }
            let program = URL(fileURLWithPath: Platform.executablePath()).resolvingSymlinksInPath().path
            // A line break would end the crontab line and start another command; cron drops the
            // `\` of a `\%`, so a `\` there cannot be kept either (found by attacking).
            for (what, text) in [("the state directory", context.stateDirectory.path), ("this repl's path", program), ("--orbctl", orbctl ?? "")]
            where text.contains("\\") || Console.hasControlCharacter(text) {
                throw CLIError.input(
                    "\(what) (\(Console.visible(String(text.prefix(200))))) holds a line break, a control character or a \\, which a crontab line cannot hold as it is; use one without"
                )
            }
            let scheduled = context.scheduledEnvironment()
            if let warning = scheduled.warning { context.warn(warning) }
            // Nor can a `\` (before a `%`, cron drops it): such a value is left out, and said.
            let unfit = scheduled.variables.filter { $0.1.contains("\\") }.map(\.0)
            if !unfit.isEmpty { context.warn("\(unfit.joined(separator: ", ")) holds a \\ and is left out of the crontab line") }
            let extra = scheduled.variables.filter { !unfit.contains($0.0) }
            print(Self.crontabLine(program: program, stateDirectory: context.stateDirectory.path, orbctl: orbctl, extra: extra))
            return
        }
        if installLaunchd || uninstallLaunchd {
            #if os(macOS)
                let agent = LaunchAgent(home: context.environment["HOME"] ?? NSHomeDirectory(), uid: getuid())
                let scheduled = context.scheduledEnvironment()
                if installLaunchd, let warning = scheduled.warning { context.warn(warning) }
                let lines =
                    installLaunchd
                    ? try await agent.install(
                        program: Platform.executablePath(), stateDirectory: context.stateDirectory.path,
                        orbctl: context.resolvedOrbctl(), extra: scheduled.variables)
                    : try await agent.uninstall()
                for line in lines { context.say(line) }
                return
            #else
                throw CLIError.input("launchd agents exist only on macOS; on this system use cron: see scaffold/cron/crontab")
            #endif
        }
        let grace = try sweep.grace()
        let controller = try await context.controller(checkVersion: false) {
            $0.dryRun = dryRun
            $0.orphanGrace = grace
            $0.includeForeign = sweep.includeForeign
        }
        // A dry run reads only, and needs no lease.
        let report: TickReport
        switch dryRun ? .ticked(await controller.tick()) : try await Manager(controller: controller, holder: "sweep").once() {
        case .heldBy(let holder):
            if context.json {
                context.printJSON(["skipped": true, "leaseHeldBy": holder.holder, "pid": Int(holder.pid)])
            } else {
                context.say("\(holder.holder) (pid \(holder.pid)) holds the controller lease; it converges, so this sweep did nothing")
            }
            return
        case .ticked(let tick):
            report = tick
        }
        if let e = report.observationError { throw CLIError.failure("sweep: cannot list machines, nothing was touched: \(e)") }
        // No status moved this tick: said, and a failure (found by attacking: "Nothing to do", exit 0).
        if let e = report.channelError { context.warn("sweep: \(e)") }
        let done: [(Action, ProviderError?)] = dryRun ? report.plan!.actions.filter { $0.machine != nil }.map { ($0, nil) } : report.outcomes
        // Orphans (and, with --include-foreign, foreign machines) still in their grace: named with
        // when they go, so that a sweep that deleted nothing says why.
        let now = Date()
        let waiting = (report.plan?.machines ?? []).compactMap { m -> (name: String, kind: String, at: Date)? in
            guard let at = m.deletableAt, at > now, m.machineClass == .orphan || m.machineClass == .foreign else { return nil }
            return (m.machine.name, m.machineClass.rawValue, at)
        }.sorted { $0.name < $1.name }
        // Orphans whose age cannot be read (an id that is not a ULID) are kept: said, not hidden.
        let kept = (report.plan?.machines ?? []).filter { m in
            m.deletableAt == nil && m.age == nil && (m.machineClass == .orphan || (m.machineClass == .foreign && sweep.includeForeign))
        }.map { (name: $0.machine.name, kind: $0.machineClass.rawValue) }.sorted { $0.name < $1.name }
        if context.json {
            context.printJSON([
                "dryRun": dryRun, "actions": done.map { ["action": "\($0.0)", "error": $0.1?.description as Any] as [String: Any] },
                "deferred": report.deferred.map { ["action": "\($0.action)", "why": $0.why] },
                "waiting": waiting.map { ["machine": $0.name, "class": $0.kind, "deletableAt": DateFormats.iso8601($0.at)] },
                "kept": kept.map { ["machine": $0.name, "class": $0.kind, "why": "age unknown (its id is not a ULID)"] },
            ])
        } else {
            for (action, error) in done {
                if let error { context.warn("\(action): \(error.description)") } else { context.say((dryRun ? "would " : "") + "\(action)") }
            }
            for d in report.deferred { context.say("deferred: \(d.action): \(d.why)") }
            for w in waiting {
                let left = TimeSpan(milliseconds: Int64(w.at.timeIntervalSince(now).rounded(.up)) * 1000)
                context.say("\(w.name): \(w.kind), deleted once its grace of \(grace) has passed, in \(left)")
            }
            for k in kept {
                context.say("\(k.name): \(k.kind), kept: its age is unknown (its id is not a ULID); delete it yourself if it is not wanted")
            }
            let blocked = report.plan?.blocked ?? []
            for b in blocked { context.say("blocked: \(b.machine): \(b.why)") }
            if done.isEmpty && report.deferred.isEmpty && waiting.isEmpty && blocked.isEmpty && kept.isEmpty && report.channelError == nil {
                context.say("Nothing to do: every machine of ours is wanted, and no orphan is left.")
            }
        }
        if report.failed { throw CommandExit(code: 1) }
    }
}

struct OrphansWhitelist: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "whitelist", abstract: "Keep one machine: an orphan, or one of ours that would be deleted (kept for debugging).",
        discussion: "Example: repl orphans whitelist repl-ab12cd-3-7 --reason \"debugging\" --expires 2026-12-31")
    @OptionGroup var global: GlobalOptions
    @Argument var name: String
    @Option(help: "Why it is kept.") var reason: String
    @Option(help: "Until when (YYYY-MM-DD or ISO 8601).") var expires: String?

    func run() async throws {
        let context = Context(global)
        guard MachineName(parsing: name) != nil else { throw CLIError.input("\"\(name)\" is not a repl machine name (repl-XXXXXX-M-I)") }
        var date: Date?
        if let expires {
            guard let d = DateFormats.parse(expires) else { throw CLIError.input("--expires: \"\(expires)\" is not a date (use 2026-12-31)") }
            // An entry that has already expired would keep nothing: say so rather than record it.
            guard d > Date() else {
                throw CLIError.input(
                    "--expires: \"\(expires)\" is in the past; give a later date, or leave it out to keep the machine until unwhitelisted")
            }
            date = d
        }
        try context.store().addToWhitelist(name, reason: reason, expires: date)
        if context.json { context.printJSON(["whitelisted": name]) } else { context.say("\(name): whitelisted") }
    }
}

struct OrphansUnwhitelist: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unwhitelist", abstract: "Stop keeping a whitelisted machine.",
        discussion: "Example: repl orphans unwhitelist repl-ab12cd-3-7")
    @OptionGroup var global: GlobalOptions
    @Argument var name: String

    func run() async throws {
        let context = Context(global)
        guard try context.store().removeFromWhitelist(name) else { throw CLIError.input("\(name) is not whitelisted") }
        if context.json { context.printJSON(["unwhitelisted": name]) } else { context.say("\(name): no longer whitelisted") }
    }
}
