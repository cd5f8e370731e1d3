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
    let machine: MachineName

    /// The instance N names (1, 2, … within the run), else the run's first live one. A run that
    /// has no machine up (finished, cancelled, not yet started) is one line, exit 2.
    static func resolve(_ text: String, context: Context) async throws -> InstanceTarget {
        let (key, number) = try Context.splitInstance(text)
        let record = try context.findRun(key, quiet: true)
        let run = record.run
        if try context.store().provider().name != "orbstack" {
            throw CLIError.input("run \(run.manifest.name) is on EC2: exec and ssh into instances are not there yet")
        }
        guard let cid = try context.store().existingControlID() else { throw CLIError.input("run \(run.manifest.name) has no machines") }
        if record.deleted || run.cancelled {
            throw CLIError.input("run \(run.manifest.name) was \(record.deleted ? "deleted" : "cancelled"): it has no machine to enter")
        }
        var candidates = run.instances.filter { run.wants($0) }.sorted { $0.id < $1.id }
        if let number { candidates = [try Context.instance(number, of: run)] }
        func machine(_ i: InstanceState) -> MachineName { MachineName(controlID: cid, manifestID: run.id, instanceID: i.id) }
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
            throw CLIError.input(
                "\(label) has finished (\(run.phase.rawValue)) and its machine is gone; `repl logs \(label)` shows its output "
                    + "(keep a machine after its command with hold:)")
        }
        throw CLIError.input("\(label) has no machine up yet (\(run.phase.rawValue)); `repl wait \(run.manifest.name) --for Running` waits for it")
    }
}

/// A Linux account name for `--user`: never something ssh or orbctl would read as an option or
/// as a user@host (found by attacking: `--user=-oProxyCommand=…`).
func checkUser(_ user: String?) throws {
    guard let user else { return }
    if !MachineOptions.isUsername(user) {
        throw CLIError.input(
            "--user: \"\(Console.visible(String(user.prefix(40))))\" is not a Linux user name (lowercase letters, digits, _ and -, not starting with a digit or -)"
        )
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
        try checkUser(user)
        guard let first = command.first else {
            throw CLIError.input("give the command after --, as in: repl exec \(target) -- uname -a")
        }
        // orbctl run reads its own flags up to the first word without a dash.
        if first.hasPrefix("-") {
            throw CLIError.input("the command cannot start with \(first): orbctl run would read it as its own flag; run it through sh: -- sh -c '…'")
        }
        let target = try await InstanceTarget.resolve(target, context: context)
        let (orbctl, environment) = try context.orbctlCommand()
        let arguments = orbctl.prefix + ["run", "-m", target.machine.description] + (user.map { ["-u", $0] } ?? []) + command
        Console.finish()
        let why = Platform.replaceProcess(orbctl.executable, arguments, environment: environment)
        throw CLIError.orbctl("cannot start orbctl: \(why)")
    }
}
