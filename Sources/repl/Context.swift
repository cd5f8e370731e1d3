import AWS
import ArgumentParser
import Foundation
import OrbSim
import OrbStack
import ReplController
import ReplCore
import ReplPlatform
import ReplStore
import Yams

/// Options every command takes (they may also be given before the subcommand).
struct GlobalOptions: ParsableArguments {
    @Flag(help: "Print one JSON document with stable keys instead of text.")
    var json = false

    @Flag(name: .shortAndLong, help: "Print only errors (and, with --wait, the command's output).")
    var quiet = false

    @Option(help: ArgumentHelp("The orbctl to use: a path, or `sim` for the built-in emulator (env REPL_ORBCTL).", valueName: "path|sim"))
    var orbctl: String?

    @Option(help: ArgumentHelp("Where state lives (env REPL_HOME; default ~/.repl).", valueName: "dir"))
    var stateDir: String?

    /// An empty `--state-dir` would be the current directory (found by an attacker).
    func validate() throws {
        if let stateDir, stateDir.trimmingCharacters(in: .whitespaces).isEmpty {
            throw ValidationError("--state-dir: empty; give a directory, or leave it out for REPL_HOME or ~/.repl")
        }
    }
}

/// A failure with its exit code: 1 failure, 2 bad input, 3 orbctl missing or unusable.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    var code: Int32
    static func input(_ message: String) -> CLIError { CLIError(description: message, code: 2) }
    static func failure(_ message: String) -> CLIError { CLIError(description: message, code: 1) }
    static func orbctl(_ message: String) -> CLIError { CLIError(description: message, code: 3) }
}

/// A command that ends with this exit code, having said why (or with nothing to add).
struct CommandExit: Error { var code: Int32 }

/// Everything a command needs, wired from the global options and the environment.
final class Context: @unchecked Sendable {
    let options: GlobalOptions
    let environment: [String: String]
    let stateDirectory: URL
    private var _store: Store?
    private var _provider: OrbStackProvider?
    private(set) var orbctlVersion: OrbctlVersion?
    /// How orbctl was chosen, for doctor.
    private(set) var orbctlDescription = ""

    init(_ options: GlobalOptions, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.options = options
        self.environment = environment
        let dir =
            options.stateDir ?? environment["REPL_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (environment["HOME"] ?? NSHomeDirectory()) + "/.repl"
        stateDirectory = URL(fileURLWithPath: (dir as NSString).expandingTildeInPath)
    }

    var json: Bool { options.json }
    var quiet: Bool { options.quiet }

    /// Whether this state directory has a store at all. Read commands on one that has none read
    /// it as empty, creating nothing (found by attacking: `run list` under a stray HOME made a
    /// new installation there).
    var hasStore: Bool {
        _store != nil || FileManager.default.fileExists(atPath: stateDirectory.appendingPathComponent("state.db").path)
    }

    func store() throws -> Store {
        if let s = _store { return s }
        do {
            let s = try Store(directory: stateDirectory)
            _store = s
            return s
        } catch {
            throw CLIError.input(error.description)
        }
    }

    /// The provider, after the one `orbctl version` check at start.
    /// The provider over the resolved orbctl. With `checkVersion` (the default) `orbctl version`
    /// is asked first, so an unusable orbctl stops the command before it records anything; a
    /// cron sweep skips it (its one `list` fails just as clearly), so that it costs one call.
    func provider(checkVersion: Bool = true) async throws -> OrbStackProvider {
        if let p = _provider, !checkVersion || orbctlVersion != nil { return p }
        let (command, env) = try orbctlCommand()
        let client = OrbctlClient(command: command, runner: SystemProcessRunner(environment: env))
        if checkVersion {
            do {
                orbctlVersion = try await client.version()
            } catch {
                throw CLIError.orbctl("orbctl is not usable (\(error.message)); \(ProviderError.installAdvice)")
            }
        }
        let p = OrbStackProvider(client: client)
        _provider = p
        return p
    }

    /// The provider this state directory's runs are on: OrbStack through orbctl (the default),
    /// or EC2 once `provider: aws` runs were applied to it (``Store/bind(provider:settings:)``).
    func engine(checkVersion: Bool = true) async throws -> any Provider {
        if let engine = _engine { return engine }
        var bound: (name: String, settings: [String: String]) = ("orbstack", [:])
        if hasStore {
            let store = try store()
            switch Result(catching: { () throws(StoreError) in try store.provider() }) {
            case .success(let value): bound = value
            case .failure(let error): throw CLIError.input(error.description)
            }
        }
        guard bound.name == "aws" else { return try await provider(checkVersion: checkVersion) }
        let engine = try await aws(region: bound.settings["region"], endpoint: bound.settings["endpoint"], s3: bound.settings["s3"])
        _engine = engine
        return engine
    }

    private var _engine: (any Provider)?

    /// Whether this state directory's provider mirrors its machines' status channel (EC2's, in
    /// S3): the host's copy is then current only as far as someone read it.
    var mirroredChannel: Bool {
        let bound = (try? store().provider().name) ?? "orbstack"
        return ProviderCapabilities.known.first { $0.name == bound }?.mirroredChannel ?? false
    }

    /// On a state directory of aws runs, EC2 as configured (the account first) before a command
    /// records anything: credentials of another account would otherwise record a delete or a
    /// cancel and then stop with exit 3 (found by attacking). OrbStack's is checked where it is
    /// used, after the store (a read-only store is said first).
    func requireUsableAWS() async throws {
        if (try? store().provider().name) == "aws" { _ = try await engine() }
    }

    /// Makes `engine` this command's provider (a dry run of aws runs on a state directory not
    /// yet bound to aws).
    func pin(engine: any Provider) { _engine = engine }

    /// EC2 through the credentials, region and endpoint AWS's own tools would use (the
    /// environment, then `~/.aws`), the store's region and endpoint first. Exit 3 when AWS
    /// cannot be reached as configured, naming what to set.
    func aws(region: String?, endpoint: String?, s3: String? = nil) async throws -> AWSProvider {
        let config = awsConfig
        do {
            let region = try config.region(manifest: region)
            let url = try config.endpoint(manifest: endpoint, region: region)
            // The manifest's endpoint is one for every service (moto's); else S3's own setting.
            let s3URL = try config.endpoint(manifest: s3 ?? endpoint, region: region, service: "s3")
            let credentials = try await config.credentials()
            let cid = try store().controlID()
            try await checkAccount(
                credentials: credentials, region: region, endpoint: try config.endpoint(manifest: endpoint, region: region, service: "sts"))
            return AWSProvider(
                ec2: EC2Client(endpoint: url, region: region, credentials: credentials),
                channel: .init(
                    s3: S3Client(endpoint: s3URL, region: region, credentials: credentials),
                    bucket: AWSProvider.Channel.bucket(controlID: cid, region: region)))
        } catch let error as AWSConfigError {
            throw CLIError.orbctl("AWS is not usable: \(error.description)")
        } catch let error as StoreError {
            throw CLIError.input(error.description)
        }
    }

    /// What a scheduled sweep (cron, launchd) of an aws state directory needs of this
    /// environment to find the same credentials: where they are (the profile, its files), never
    /// a secret itself, which a crontab or plist would keep in the clear. A warning when this
    /// command's credentials are keys in the environment, which the sweep will not see.
    func scheduledEnvironment() -> (variables: [(String, String)], warning: String?) {
        guard hasStore, (try? store().provider().name) == "aws" else { return ([], nil) }
        var variables: [(String, String)] = []
        var unfit: [String] = []
        for key in ["AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"] {
            guard let value = environment[key], !value.isEmpty else { continue }
            // A line break would end the crontab line and start another command there.
            if Console.hasControlCharacter(value) {
                unfit.append(key)
            } else {
                variables.append((key, value))
            }
        }
        if !unfit.isEmpty {
            return (variables, "\(unfit.joined(separator: ", ")) holds a control character (a line break?) and is left out of the scheduled sweep")
        }
        guard environment["AWS_ACCESS_KEY_ID"].map({ !$0.isEmpty }) == true else { return (variables, nil) }
        let profile = variables.first { $0.0 == "AWS_PROFILE" || $0.0 == "AWS_DEFAULT_PROFILE" }?.1 ?? "default"
        return (
            variables,
            "the scheduled sweep does not get AWS_ACCESS_KEY_ID and its secret (they are never written into a crontab or plist): it uses the profile \(profile) of ~/.aws; put the keys there (aws configure) for it to reach EC2"
        )
    }

    /// The credentials' account must be the one this state directory's instances are in: under
    /// another (a sweep from cron with another profile) EC2 lists none of them, and every run
    /// would be judged gone and its instances later terminated (found by attacking). Recorded at
    /// the first use of a state directory on aws; one STS call per command.
    func checkAccount(credentials: AWSCredentials, region: String, endpoint: URL) async throws {
        let store = try store()
        guard !accountChecked, (try? store.provider().name) == "aws" || (try? store.awsAccount()) != nil else { return }
        let account: String
        do {
            account = try await STSClient(endpoint: endpoint, region: region, credentials: credentials).account()
        } catch {
            let what = error.code == "Transport" ? "cannot reach \(endpoint.absoluteString)" : "STS at \(endpoint.absoluteString) refused"
            throw CLIError.orbctl("AWS is not usable: \(what) to tell which account the credentials are of: \(error.description)")
        }
        switch Result(catching: { () throws(StoreError) in try store.awsAccount() }) {
        case .success(let recorded?) where recorded != account:
            throw CLIError.orbctl(
                "AWS is not usable: the credentials are of account \(account), but this state directory's instances are in account \(recorded) (recorded at its first apply); use that account's credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID), or another state directory"
            )
        case .success(nil):
            if store.readOnlyReason == nil { _ = try? store.recordAWSAccount(account) }
        case .success: break
        case .failure(let error): throw CLIError.input(error.description)
        }
        accountChecked = true
    }

    private var accountChecked = false

    var awsConfig: AWSConfig {
        AWSConfig(environment: environment, home: environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory())
    }

    /// Where a run's instances go, as a state directory records it: the region and the EC2 and
    /// S3 endpoints, resolved from the manifest's values, else the environment and profile.
    func awsPlace(region: String?, endpoint: String?) throws -> [String: String] {
        let config = awsConfig
        do {
            let region = try config.region(manifest: region)
            return [
                "region": region, "endpoint": try config.endpoint(manifest: endpoint, region: region).absoluteString,
                "s3": try config.endpoint(manifest: endpoint, region: region, service: "s3").absoluteString,
            ]
        } catch {
            throw CLIError.orbctl("AWS is not usable: \(error.description)")
        }
    }

    /// What `--orbctl` or `REPL_ORBCTL` names: `sim`, a path or a program name; nil for the default.
    var orbctlChoice: String? { options.orbctl ?? environment["REPL_ORBCTL"].flatMap { $0.isEmpty ? nil : $0 } }

    /// The orbctl this command uses (`--orbctl`, `REPL_ORBCTL`, PATH, OrbStack's directories)
    /// and the environment to run it with, resolved once; sets `orbctlDescription`.
    func orbctlCommand() throws -> (OrbctlCommand, [String: String]) {
        if let resolved = _orbctl { return resolved }
        if options.orbctl == "" {
            throw CLIError.input("--orbctl is empty; give a path, a program name, or `sim` for the built-in emulator")
        }
        let choice = orbctlChoice
        var env = environment
        let command: OrbctlCommand
        if choice == "sim" {
            command = try simCommand(&env)
            orbctlDescription = "built-in emulator (orbctl-sim), state in \(env["ORBSIM_HOME"]!)"
        } else if let choice {
            guard let path = findExecutable(choice, path: environment["PATH"]) else {
                throw CLIError.orbctl(
                    "orbctl not found at \(choice); \(ProviderError.installAdvice), or use --orbctl sim to try repl with the emulator")
            }
            command = OrbctlCommand(executable: path)
            orbctlDescription = path
        } else {
            let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
            guard let found = OrbctlCommand.locate(path: environment["PATH"], fallbacks: OrbctlCommand.installDirectories(home: home)) else {
                throw CLIError.orbctl("orbctl not found on PATH; \(ProviderError.installAdvice). To try repl without OrbStack, add --orbctl sim")
            }
            command = found
            orbctlDescription = ([found.executable] + found.prefix).joined(separator: " ")
        }
        _orbctl = (command, env)
        return (command, env)
    }

    private var _orbctl: (OrbctlCommand, [String: String])?

    /// Whether this command talks to the emulator: `--orbctl sim`, or an orbctl that is
    /// `orbctl-sim` (or this binary) under another name.
    var usesEmulator: Bool {
        guard let (command, _) = try? orbctlCommand(), command.prefix.isEmpty else { return false }
        let real = (command.executable as NSString).resolvingSymlinksInPath
        return (real as NSString).lastPathComponent == "orbctl-sim" || real == Platform.executablePath()
    }

    /// Refuses, before anything is recorded, to start runs the emulator could not start here.
    func requireRunnableEmulator() throws {
        guard usesEmulator, let refusal = Platform.machineCommandsRefusal else { return }
        throw CLIError.orbctl("\(refusal); without --orbctl sim, repl uses OrbStack's own orbctl")
    }

    /// The orbctl a scheduled sweep should use, resolved now: `sim`, an absolute path, or nil
    /// when none is found (the agent then searches its own PATH).
    func resolvedOrbctl() -> String? {
        if orbctlChoice == "sim" { return "sim" }
        guard let (command, _) = try? orbctlCommand(), command.prefix.isEmpty else { return nil }
        let path = command.executable
        return path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    /// `--orbctl sim`: this very binary is the emulator when called as `orbctl`.
    func simCommand(_ env: inout [String: String]) throws -> OrbctlCommand {
        let simHome = env["ORBSIM_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? stateDirectory.appendingPathComponent("sim").path
        env["ORBSIM_HOME"] = simHome
        let bin = URL(fileURLWithPath: simHome).appendingPathComponent("bin")
        let link = bin.appendingPathComponent("orbctl").path
        let me = OrbSimExecutable.path()
        do {
            try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
            if (try? FileManager.default.destinationOfSymbolicLink(atPath: link)) != me {
                try? FileManager.default.removeItem(atPath: link)
                try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: me)
            }
        } catch {
            throw CLIError.input("cannot set up the emulator under \(simHome): \(error.localizedDescription)")
        }
        return OrbctlCommand(executable: link)
    }

    /// The host status channel: a directory per machine, which the machine reaches through `/mnt/mac`.
    var channelDirectory: URL { stateDirectory.appendingPathComponent("machines") }

    /// Where a run's logs are read from: collected, in the host channel, or (with `live`) the machine.
    func logReader(live: Bool) async throws -> LogReader {
        LogReader(
            logsDirectory: stateDirectory.appendingPathComponent("logs"), channel: StatusChannel(directory: channelDirectory),
            provider: live ? try await engine() : nil)
    }

    func controller(checkVersion: Bool = true, settings configure: (inout ControllerSettings) -> Void = { _ in }) async throws -> Controller {
        var settings = ControllerSettings(logsDirectory: stateDirectory.appendingPathComponent("logs"))
        settings.channelDirectory = channelDirectory
        configure(&settings)
        return Controller(store: try store(), provider: try await engine(checkVersion: checkVersion), settings: settings)
    }

    // MARK: Output

    /// A result for people (what was applied, deleted, cancelled): standard output, unbuffered,
    /// so lines appear as they happen even through a pipe.
    func say(_ text: String) {
        guard !quiet && !json else { return }
        out(Console.visible(text) + "\n")
    }

    /// Progress for people (a machine created, a run started, who holds the lease): standard
    /// error, so that standard output carries only results (with `--wait`, the command's own
    /// output, byte for byte).
    func progress(_ text: String) {
        guard !quiet && !json else { return }
        clearStatus()
        Console.err(text + "\n")
    }

    /// Writes to standard output at once (no buffering), clearing the status line first.
    func out(_ text: String) {
        out(Data(text.utf8))
    }

    /// Bytes as they are (a command's output), clearing the status line first.
    func out(_ data: Data) {
        clearStatus()
        Console.out(data)
    }

    /// Whether standard output is a terminal for people: neither --json nor --quiet (watch draws its view then).
    lazy var interactive: Bool = isatty(1) == 1 && !json && !quiet && environment["TERM"] != "dumb"
    /// Whether a status line may be drawn in place on standard error (progress, as the lines are).
    lazy var showsStatus: Bool = isatty(2) == 1 && !json && !quiet && environment["TERM"] != "dumb"
    private var statusShown = false

    /// Redraws one status line in place on a terminal, on standard error (what each instance is doing).
    func status(_ text: String) {
        guard showsStatus else { return }
        var width = 100
        var size = winsize()
        if ioctl(2, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 10 { width = Int(size.ws_col) - 1 }
        let text = Console.visible(text).replacingOccurrences(of: "\n", with: " ")
        let line = text.count > width ? String(text.prefix(width - 1)) + "…" : text
        Console.err("\r\u{1B}[K\(line)", raw: true)
        statusShown = true
    }

    /// Takes the status line away, so the next line starts on a clean one.
    func clearStatus() {
        guard statusShown else { return }
        Console.err("\r\u{1B}[K", raw: true)
        statusShown = false
    }

    /// A newline on standard error when it is a terminal: what follows a command's unended last
    /// line starts on a line of its own there, and a file or pipe gets nothing repl added.
    func endLineOnTerminal() {
        if isatty(2) == 1 && !quiet && !json { Console.err("\n", raw: true) }
    }

    func warn(_ text: String) {
        clearStatus()
        Console.err("repl: \(text)\n")
    }

    /// `-o yaml`: the same document as `--json`, as YAML.
    func printYAML(_ value: Any) throws {
        print(try Yams.dump(object: Self.yamlReady(value), sortKeys: true), terminator: "")
    }

    /// The document's Swift values as Yams takes them: optionals unwrapped (nil is null), and
    /// dictionaries and arrays of any values walked.
    static func yamlReady(_ value: Any) -> Any? {
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .optional {
            guard let wrapped = mirror.children.first?.value else { return nil }
            return yamlReady(wrapped)
        }
        switch value {
        case let d as JSONDocument: return d.plain
        case let d as [String: Any]: return d.mapValues { yamlReady($0) as Any }
        case let d as [String: String]: return d
        case let a as [Any]: return a.map { yamlReady($0) as Any }
        default: return value
        }
    }

    func printJSON(_ value: Any) {
        print(JSONDocument(value).text())
    }

    /// Reads manifests from paths and validates them against what the store knows.
    func manifests(_ paths: [String]) throws -> ManifestSet {
        let sources = try ManifestFiles.load(paths)
        let known = try store().knownNames()
        return try ManifestParser(knownRuns: known.runs, knownSnapshots: known.snapshots).parse(sources)
    }

    /// A run by id (base 36), name, or unique prefix of either.
    /// The run a destructive command names: exactly its name, or `#ID` (its base-36 id), never a
    /// prefix or a guess (a run named `1` is that run, not run id 1).
    func exactRun(_ key: String) throws -> RunRecord {
        // By name, only that run's rows are read.
        if hasStore, let named = try store().runs(includeDeleted: false, named: key).first { return named }
        if hasStore, key.hasPrefix("#"),
            let byID = try store().runs(includeDeleted: false).first(where: { Base36.encode($0.run.id) == key.dropFirst() })
        {
            return byID
        }
        throw CLIError.input("no run named \"\(key)\" (see `repl run list`; give its full name, or #ID); nothing was changed")
    }

    /// The runs whose labels match `-l SELECTOR` (all when nil); a bad selector is one line,
    /// exit 2.
    func runs(matching selector: String?, includeDeleted: Bool = false) throws -> [RunRecord] {
        let runs = hasStore ? try store().runs(includeDeleted: includeDeleted) : []
        guard let selector else { return runs }
        let select: LabelSelector
        do { select = try LabelSelector(parsing: selector) } catch {
            throw CLIError.input("-l: " + error.diagnostics.map { $0.message }.joined(separator: "; "))
        }
        return runs.filter { select.matches($0.run.manifest.labels) }
    }

    /// `RUN/N`: the run and an instance number (a run name never contains `/`), as `logs`,
    /// `run status`, `exec` and `ssh` take it.
    static func splitInstance(_ text: String) throws -> (run: String, number: Int?) {
        guard let slash = text.lastIndex(of: "/") else { return (text, nil) }
        guard let n = Int(text[text.index(after: slash)...]), n >= 1 else {
            throw CLIError.input("\(text): after the / comes an instance number (1, 2, …), as in hello/2")
        }
        return (String(text[..<slash]), n)
    }

    /// Instance N (1, 2, …) of the run's current generation, or one line, exit 2.
    static func instance(_ number: Int, of run: DesiredRun) throws -> InstanceState {
        guard let instance = run.instance(numbered: number) else {
            throw CLIError.input(
                "run \(run.manifest.name) has no instance \(number) (it has \(run.instances.filter { $0.generation == run.generation }.count))")
        }
        return instance
    }

    /// The run a read command names: its exact name or `#ID`, else its id or a unique prefix of
    /// its name or id, and then it says which run it picked.
    func findRun(_ key: String, quiet silent: Bool = false) throws -> RunRecord {
        let quiet = self.quiet || silent
        if key.isEmpty { throw CLIError.input("the run name is empty; give a run's name or #ID (repl run list shows them)") }
        if let exact = try? exactRun(key) { return exact }
        guard hasStore else { throw CLIError.input("no run matches \"\(key)\": nothing has been applied with the state in \(stateDirectory.path)") }
        let runs = try store().runs(includeDeleted: false)
        let matches = runs.filter { Base36.encode($0.run.id).hasPrefix(key) || $0.run.manifest.name.hasPrefix(key) }
        if matches.count == 1 {
            let run = matches[0].run
            if !quiet { Console.err("repl: \"\(key)\" is run \(run.manifest.name) (#\(Base36.encode(run.id)))\n") }
            return matches[0]
        }
        if matches.isEmpty {
            // History: a deleted run is still read by its exact name or #ID (its logs are kept
            // until `repl prune`).
            let deleted = try store().runs().filter(\.deleted)
            if let gone = deleted.last(where: { $0.run.manifest.name == key || "#" + Base36.encode($0.run.id) == key }) {
                if !quiet { Console.err("repl: run \(gone.run.manifest.name) (#\(Base36.encode(gone.run.id))) was deleted; showing its history\n") }
                return gone
            }
            throw CLIError.input("no run matches \"\(key)\" (see `repl run list`, or `repl run list --all` for deleted runs)")
        }
        throw CLIError.input(
            "\"\(key)\" matches \(matches.count) runs: \(matches.map { "#\(Base36.encode($0.run.id)) (\($0.run.manifest.name))" }.joined(separator: ", ")); give the full name or #ID"
        )
    }
}
