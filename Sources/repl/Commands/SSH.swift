import ArgumentParser
import Foundation
import OrbStack
import ReplController
import ReplCore
import ReplPlatform
import ReplStore

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
        try checkUser(user)
        let target = try await InstanceTarget.resolve(target, context: context)
        let home = context.environment["HOME"] ?? NSHomeDirectory()
        let arguments = OrbStackSSH.arguments(machine: target.machine.description, user: user, home: home) + more
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
                // (and a held one: its command ended, its machine stays for `hold`)
                for instance in run.instances
                where run.wants(instance) && instance.phase >= .bootstrapping
                    && ((!instance.phase.isTerminal && !seen.seen(run, instance).phase.isTerminal)
                        || (run.manifest.hold > .zero && !instance.logsCollected && instance.startedAt != nil))
                {
                    guard let n = run.number(of: instance.id) else { continue }
                    entries.append(
                        ("\(run.manifest.name)-\(n)", MachineName(controlID: cid, manifestID: run.id, instanceID: instance.id).description))
                }
            }
        }
        let text =
            "# Written by repl (`repl ssh-config`): OrbStack's SSH server for each live instance, as RUN-N.\n\n"
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
            // A fresh name, made by this write alone: never through a link someone left.
            let temporary = context.stateDirectory.appendingPathComponent(".ssh_config.\(UUID().uuidString)")
            try Data(text.utf8).write(to: temporary, options: .withoutOverwriting)
            chmod(temporary.path, 0o600)
            guard rename(temporary.path, file.path) == 0 else { throw CLIError.failure(String(cString: strerror(errno))) }
        } catch {
            throw CLIError.failure("cannot write \(file.path): \(error.localizedDescription)")
        }
        context.say(
            "wrote \(entries.count) host\(entries.count == 1 ? "" : "s") to \(file.path); include it at the top of ~/.ssh/config: Include \(file.path)"
        )
    }
}
