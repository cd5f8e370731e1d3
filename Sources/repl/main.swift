import ArgumentParser
import Foundation
import OrbSim
import ReplCore
import ReplPlatform
import ReplStore

typealias ReplCoreManifestError = ManifestError

struct Repl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repl",
        abstract: "Keep local OrbStack VMs exactly as your manifests declare.",
        discussion: """
            Try it with the built-in emulator, on Linux as root (as in a container or CI; on a Mac, \
            OrbStack itself is the way):
              repl --orbctl sim apply -f examples/hello.yaml --wait
            Exit codes: 0 success, 1 failure, 2 bad input, 3 orbctl missing or unusable.
            """,
        version: Repl.version,
        subcommands: [
            Apply.self, PlanCommand.self, Delete.self, RunCommand.self, Logs.self, Exec.self, SSH.self, SSHConfig.self, Artifacts.self, Wait.self,
            Prune.self, SnapshotCommand.self, Orphans.self, Watch.self, Recover.self, Doctor.self,
        ])
}

extension Repl {
    /// This build's version (`repl --version`, `doctor`).
    static let version = "0.16.0"
}

Console.guardStandardDescriptors()
Platform.openStandardStreams()
let arguments = Array(CommandLine.arguments.dropFirst())
let invokedAs = (CommandLine.arguments[0] as NSString).lastPathComponent

// `--orbctl sim`: this binary is the emulator when called as `orbctl`, and runs
// the emulator's machine helpers.
if invokedAs == "orbctl" || invokedAs == "orbctl-sim" || arguments.first.map(OrbSim.helperVerbs.contains) == true {
    let env = ProcessInfo.processInfo.environment
    let sim = OrbSim(
        home: OrbSim.defaultHome(environment: env),
        executable: OrbSimExecutable.path(), environment: env)
    exit(sim.main(arguments, io: .standard))
}

/// Global options may come before the subcommand (`repl --orbctl sim apply …`): move them after it.
func reorder(_ args: [String]) -> [String] {
    let withValue: Set<String> = ["--orbctl", "--state-dir"]
    let flags: Set<String> = ["--json", "--quiet", "-q"]
    var globals: [String] = []
    var rest: [String] = []
    var i = 0
    var seenCommand = false
    while i < args.count {
        let a = args[i]
        if a == "--" {
            rest += args[i...]
            break
        }
        if !seenCommand && withValue.contains(a) && i + 1 < args.count {
            globals += [a, args[i + 1]]
            i += 2
            continue
        }
        if !seenCommand && (flags.contains(a) || withValue.contains(where: { a.hasPrefix($0 + "=") })) {
            globals.append(a)
        } else {
            if !a.hasPrefix("-") { seenCommand = true }
            rest.append(a)
        }
        i += 1
    }
    // Before a `--`: what follows it is a command's own (`repl exec r -- ls --json`).
    if let terminator = rest.firstIndex(of: "--") { return Array(rest[..<terminator]) + globals + Array(rest[terminator...]) }
    return rest + globals
}

/// Parses and runs the command; the one place errors become exit codes.
func runCommand(_ args: [String]) async throws {
    var command = try Repl.parseAsRoot(args)
    if var asyncCommand = command as? AsyncParsableCommand {
        try await asyncCommand.run()
    } else {
        try command.run()
    }
}

Interrupts.install()
do {
    try await runCommand(reorder(arguments))
    Interrupts.exitIfInterrupted()
    Console.finish()
} catch let error as CLIError {
    Interrupts.exitIfInterrupted()
    Console.err("repl: \(error.description)\n")
    exit(error.code)
} catch let error as CommandExit {
    Interrupts.exitIfInterrupted()
    // A report that could not be written says so first (exit 1), whatever it would have said.
    Console.finish()
    exit(error.code)
} catch let error as StoreError {
    // A store that failed mid-command (busy past its wait, read-only, disk full): one line.
    Interrupts.exitIfInterrupted()
    Console.err("repl: \(error.description)\n")
    exit(1)
} catch let error as ReplCoreManifestError {
    Interrupts.exitIfInterrupted()
    Console.err("\(error.description)\n")
    exit(2)
} catch {
    Interrupts.exitIfInterrupted()
    let code = Repl.exitCode(for: error)
    if code == .success {
        // --help, --version, a completion script: printed through Console, so that output that
        // cannot be written is exit 1 with one line, as for every command (found by attacking).
        Console.out(Repl.fullMessage(for: error) + "\n")
        Console.finish()
        exit(0)
    }
    // One error format: `repl: …` (not ArgumentParser's `Error: …`).
    var message = Repl.fullMessage(for: error)
    if message.hasPrefix("Error: ") { message.removeFirst("Error: ".count) }
    Console.err("repl: \(message)\n")
    exit(code == .validationFailure ? 2 : (code.rawValue == 0 ? 0 : 1))
}
