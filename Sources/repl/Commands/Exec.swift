import ArgumentParser
import Foundation
import OrbStack
import ReplController
import ReplCore
import ReplPlatform
import ReplStore

/// `RUN[/N]`: a run's instance whose machine is up, for `exec` and `ssh`.
struct InstanceTarget {
    let record: RunRecord
    let instance: InstanceState
    let machine: String

    /// The instance N names (1, 2, … within the run), else the run's first live one. A run that
    /// has no machine up (finished, cancelled, not yet started) is one line, exit 2.
    static func resolve(_ text: String, context: Context) async throws -> InstanceTarget {
        var key = text, number: Int?
        if let slash = key.lastIndex(of: "/") {
            guard let n = Int(key[key.index(after: slash)...]), n >= 1 else {
                throw CLIError.input("\(text): after the / comes an instance number (1, 2, …), as in hello/2")
            }
            number = n
            key = String(key[..<slash])
        }
        let record = try context.findRun(key)
        let run = record.run
        guard let cid = try context.store().existingControlID() else { throw CLIError.input("run \(run.manifest.name) has no machines") }
        if record.deleted || run.cancelled {
            throw CLIError.input("run \(run.manifest.name) was \(record.deleted ? "deleted" : "cancelled"): it has no machine to enter")
        }
        var candidates = run.instances.filter { run.wants($0) }.sorted { $0.id < $1.id }
        if let number {
            guard let instance = run.instance(numbered: number) else {
                throw CLIError.input("run \(run.manifest.name) has no instance \(number) (it has \(candidates.count))")
            }
            candidates = [instance]
        }
        func machine(_ i: InstanceState) -> String { MachineName(controlID: cid, manifestID: run.id, instanceID: i.id).description }
        // Up: its machine was made and its run launched, and it has not ended; else one that
        // ended but whose machine is still there (held).
        if let live = candidates.first(where: { $0.phase >= .bootstrapping && !$0.phase.isTerminal }) {
            return InstanceTarget(record: record, instance: live, machine: machine(live))
        }
        let provider = try await context.provider()
        for ended in candidates where ended.phase.isTerminal {
            if (try? await provider.exists(name: machine(ended))) == true {
                return InstanceTarget(record: record, instance: ended, machine: machine(ended))
            }
        }
        let label = number.map { "\(run.manifest.name)/\($0)" } ?? run.manifest.name
        if run.phase.isTerminal || candidates.allSatisfy(\.phase.isTerminal) && !candidates.isEmpty {
            throw CLIError.input("\(label) has finished (\(run.phase.rawValue)) and its machine is gone; `repl logs \(label)` shows its output "
                                 + "(keep a machine after its command with hold:)")
        }
        throw CLIError.input("\(label) has no machine up yet (\(run.phase.rawValue)); `repl wait \(run.manifest.name) --for Running` waits for it")
    }
}

/// `repl exec RUN[/N] [--user U] -- CMD ARGS…`: the command in the machine through
/// `orbctl run`, which this process becomes: the terminal, the streams, the signals and the
/// exit code are the command's.
struct Exec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a command in a run's machine, with your terminal, input and its exit code.",
        discussion: "Example: repl exec hello -- uname -a   ·   repl exec fan/2 --user root -- sh   ·   echo hi | repl exec hello -- cat")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "RUN or RUN/N (instance N: 1, 2, …; default the run's first live instance).", completion: RunNameCompletion.kind)
    var target: String
    @Option(help: "The user to run as (default the machine's default user).") var user: String?
    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.") var command: [String] = []

    func run() async throws {
        let context = Context(global)
        guard let first = command.first else {
            throw CLIError.input("give the command after --, as in: repl exec \(target) -- uname -a")
        }
        // orbctl run reads its own flags up to the first word without a dash.
        if first.hasPrefix("-") {
            throw CLIError.input("the command cannot start with \(first): orbctl run would read it as its own flag; run it through sh: -- sh -c '…'")
        }
        let target = try await InstanceTarget.resolve(target, context: context)
        let (orbctl, environment) = try context.orbctlCommand()
        let arguments = orbctl.prefix + ["run", "-m", target.machine] + (user.map { ["-u", $0] } ?? []) + command
        Console.finish()
        let why = Platform.replaceProcess(orbctl.executable, arguments, environment: environment)
        throw CLIError.orbctl("cannot start orbctl: \(why)")
    }
}

/// `repl ssh RUN[/N]`: OrbStack's own SSH server, reached for that machine.
struct SSH: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssh",
        abstract: "Log in to a run's machine through OrbStack's SSH server (localhost:32222, OrbStack's key).",
        discussion: "Example: repl ssh hello   ·   repl ssh fan/2 --user root   ·   repl ssh hello -- uptime")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "RUN or RUN/N (instance N; default the run's first live instance).", completion: RunNameCompletion.kind)
    var target: String
    @Option(help: "The user to log in as (default the machine's default user).") var user: String?
    @Argument(parsing: .postTerminator, help: "More for ssh, after -- (a remote command).") var more: [String] = []

    func run() async throws {
        let context = Context(global)
        let target = try await InstanceTarget.resolve(target, context: context)
        let home = context.environment["HOME"] ?? NSHomeDirectory()
        let arguments = OrbStackSSH.arguments(machine: target.machine, user: user, home: home) + more
        Console.finish()
        let why = Platform.replaceProcess("ssh", arguments, environment: context.environment)
        throw CLIError.failure("cannot start ssh: \(why)")
    }
}

/// `repl ssh-config [--write]`: a `Host RUN-N` entry for every live instance, to include from
/// `~/.ssh/config` (so `ssh hello-1`, scp, rsync and editors reach it).
struct SSHConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssh-config",
        abstract: "SSH Host entries (RUN-N) for every live instance, through OrbStack's SSH server.",
        discussion: "Example: repl ssh-config --write   (then add `Include ~/.repl/ssh_config` at the top of ~/.ssh/config)")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Write them to $REPL_HOME/ssh_config (replaced whole each time) instead of printing them.") var write = false

    func run() async throws {
        let context = Context(global)
        var entries: [(alias: String, machine: String)] = []
        if context.hasStore, let cid = try context.store().existingControlID() {
            // Live as the machines show it: a command that has ended is on its way out.
            let seen = SeenPhases(channel: StatusChannel(directory: context.channelDirectory), cid: cid)
            for record in try context.store().runs(includeDeleted: false) where !record.run.cancelled {
                let run = record.run
                for instance in run.instances where run.wants(instance) && instance.phase >= .bootstrapping
                    && !instance.phase.isTerminal && !seen.seen(run, instance).phase.isTerminal {
                    guard let n = run.number(of: instance.id) else { continue }
                    entries.append(("\(run.manifest.name)-\(n)", MachineName(controlID: cid, manifestID: run.id, instanceID: instance.id).description))
                }
            }
        }
        let text = "# Written by repl (`repl ssh-config`): OrbStack's SSH server for each live instance, as RUN-N.\n\n"
            + entries.map { OrbStackSSH.configEntry(alias: $0.alias, machine: $0.machine, user: nil) }.joined(separator: "\n")
        if context.json {
            context.printJSON(["hosts": entries.map { ["host": $0.alias, "machine": $0.machine] }])
            return
        }
        guard write else {
            print(text, terminator: "")
            return
        }
        let file = context.stateDirectory.appendingPathComponent("ssh_config")
        do {
            try FileManager.default.createDirectory(at: context.stateDirectory, withIntermediateDirectories: true)
            let temporary = file.appendingPathExtension("tmp")
            try Data(text.utf8).write(to: temporary)
            chmod(temporary.path, 0o600)
            guard rename(temporary.path, file.path) == 0 else { throw CLIError.failure(String(cString: strerror(errno))) }
        } catch {
            throw CLIError.failure("cannot write \(file.path): \(error.localizedDescription)")
        }
        context.say("wrote \(entries.count) host\(entries.count == 1 ? "" : "s") to \(file.path); include it at the top of ~/.ssh/config: Include \(file.path)")
    }
}

/// `repl artifacts RUN [--instance N] [--to DIR]`: what `artifacts:` brought back, kept under
/// `$REPL_HOME/artifacts/RUN/N/` with the paths they had in the machine.
struct Artifacts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List or copy the artifacts a run's instances brought back.",
        discussion: "Example: repl artifacts train   ·   repl artifacts train --instance 2 --to ./results")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The run's name.", completion: RunNameCompletion.kind) var run: String
    @Option(help: "Only instance N (1, 2, …).") var instance: Int?
    @Option(help: "Copy them into this directory (RUN/N/… under it) instead of listing them.") var to: String?

    func run() async throws {
        let context = Context(global)
        let root = context.stateDirectory.appendingPathComponent("artifacts").appendingPathComponent(run)
        guard run.wholeMatch(of: /[a-z0-9][a-z0-9-]{0,39}/) != nil else { throw CLIError.input("\"\(Console.visible(run))\" is not a run name") }
        let fm = FileManager.default
        let numbers = ((try? fm.contentsOfDirectory(atPath: root.path)) ?? []).compactMap(Int.init).sorted()
            .filter { instance == nil || $0 == instance }
        var files: [(number: Int, path: String)] = []
        for n in numbers {
            let base = root.appendingPathComponent(String(n))
            for path in (fm.enumerator(atPath: base.path)?.allObjects as? [String] ?? []).sorted() where !path.hasSuffix(".incoming.tar") {
                var isDirectory: ObjCBool = false
                if fm.fileExists(atPath: base.appendingPathComponent(path).path, isDirectory: &isDirectory), !isDirectory.boolValue {
                    files.append((n, path))
                }
            }
        }
        if files.isEmpty {
            throw CLIError.input("run \(run) has no artifacts\(instance.map { " from instance \($0)" } ?? "") in \(root.path) "
                                 + "(they are copied when an instance's command ends; a glob that matched nothing is noted in `repl run status \(run)` events)")
        }
        if let to {
            let destination = URL(fileURLWithPath: to).appendingPathComponent(run)
            for file in files {
                let target = destination.appendingPathComponent(String(file.number)).appendingPathComponent(file.path)
                try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
                try? fm.removeItem(at: target)
                try fm.copyItem(at: root.appendingPathComponent(String(file.number)).appendingPathComponent(file.path), to: target)
            }
            context.say("copied \(files.count) file\(files.count == 1 ? "" : "s") to \(destination.path)")
            return
        }
        if context.json {
            context.printJSON(["artifacts": files.map { ["instance": $0.number, "path": "/" + $0.path,
                                                         "file": root.appendingPathComponent(String($0.number)).appendingPathComponent($0.path).path] }])
            return
        }
        for file in files { print(Console.visible("\(run)/\(file.number)  /\(file.path)  \(root.appendingPathComponent(String(file.number)).appendingPathComponent(file.path).path)")) }
    }
}
