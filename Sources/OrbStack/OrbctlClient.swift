import Foundation
import ReplCore
import ReplPlatform

/// Every orbctl call `repl` makes: machine-readable output, decoded, with errors
/// classified. Never runs a host shell; never stops or deletes without a name.
public struct OrbctlClient: Sendable {
    public let command: OrbctlCommand
    public let runner: any ProcessRunner
    public var timeouts = OrbctlTimeouts()
    /// Pause between a graceful stop and the delete, for OrbStack's DHCP to take the address back.
    public var deleteGrace: TimeInterval = 1.0
    public var pollInterval: TimeInterval = 0.25
    /// The limits each orbctl process runs under (the controller's `--concurrency`), or none.
    public var limits: CallLimits?

    public init(command: OrbctlCommand, runner: any ProcessRunner = SystemProcessRunner()) {
        self.command = command
        self.runner = runner
    }

    /// Runs one orbctl call (one process, under ``limits`` in its lane) and classifies failures.
    /// A failure that says orbctl is unusable is thrown even when `allowFailure` is set.
    @discardableResult
    public func call(
        _ arguments: [String], input: Data? = nil, timeout: TimeInterval, allowFailure: Bool = false, lane: CallLane? = nil
    ) async throws(ProviderError) -> ProcessResult {
        guard let limits else { return try await spawn(arguments, input: input, timeout: timeout, allowFailure: allowFailure) }
        return try await limits.run(lane ?? Self.lane(arguments)) { () async throws(ProviderError) in
            try await spawn(arguments, input: input, timeout: timeout, allowFailure: allowFailure)
        }
    }

    /// The lane of a call by its verb: what boots a machine takes an address; everything else
    /// is light unless its caller says it copies (``call(_:input:timeout:allowFailure:lane:)``).
    public static func lane(_ arguments: [String]) -> CallLane {
        switch arguments.first {
        case "create", "clone", "start": .addressTaking
        default: .light
        }
    }

    private func spawn(_ arguments: [String], input: Data?, timeout: TimeInterval, allowFailure: Bool) async throws(ProviderError) -> ProcessResult {
        let argv = command.prefix + arguments
        let result: ProcessResult
        do {
            result = try await runner.run(command.executable, argv, input: input, timeout: timeout)
        } catch let error as RunnerError {
            throw ProviderError(error.notFound ? .unavailable : .failed, error.description, arguments: arguments)
        } catch {
            throw ProviderError(.failed, "\(error)", arguments: arguments)
        }
        if result.timedOut {
            throw ProviderError(
                .timedOut, "orbctl \(arguments.prefix(3).joined(separator: " ")) did not answer within \(Int(timeout)) s and was stopped",
                arguments: arguments, exitStatus: result.status)
        }
        if result.status != 0 {
            let error = OrbctlClient.classify(result, arguments: arguments)
            if !allowFailure || error.kind == .unavailable { throw error }
        }
        return result
    }

    /// Text from a command as one line of a message (`; ` between its lines), cut at 300.
    public static func oneLine(_ text: String) -> String {
        String(
            text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                .joined(separator: "; ").prefix(300))
    }

    /// Turns a failed call into a ``ProviderError`` carrying argv, status and stderr's first line.
    public static func classify(_ result: ProcessResult, arguments: [String]) -> ProviderError {
        let stderr = result.stderrText
        let first = stderr.split(separator: "\n").first.map(String.init) ?? "exit status \(result.status)"
        let kind: ProviderError.Kind
        if stderr.contains("missing IP address") {
            kind = .addressExhausted
        } else if stderr.contains("machine not found") {
            kind = .notFound
        } else if stderr.contains("already exists") {
            kind = .alreadyExists
        } else if stderr.contains("$HOME is not defined") {
            kind = .unavailable
        } else {
            kind = .failed
        }
        let verb = arguments.first ?? ""
        let message = kind == .addressExhausted ? first : "orbctl \(verb) failed (exit \(result.status)): \(first)"
        return ProviderError(kind, message, arguments: arguments, exitStatus: result.status)
    }

    // MARK: - Reading

    public func version() async throws(ProviderError) -> OrbctlVersion {
        let result = try await call(["version"], timeout: timeouts.quick)
        guard let version = OrbctlVersion(output: result.stdoutText) else {
            throw ProviderError(
                .unavailable, "cannot read the version from `orbctl version` (got \"\(result.stdoutText.prefix(80))\")", arguments: ["version"])
        }
        return version
    }

    public func list() async throws(ProviderError) -> [ObservedMachine] {
        let result = try await call(["list", "--format", "json"], timeout: timeouts.quick)
        return try OrbctlClient.decodeList(result.stdout)
    }

    /// Decodes `list --format json`: tolerant of unknown keys, strict about `id`,
    /// `name` and `state`, and never reading `null` or garbage as "no machines".
    /// Through `JSONDecoder` into the few fields read: `JSONSerialization` built every
    /// record as a dictionary of `Any`, half of an idle tick's time at 1,000 machines.
    public static func decodeList(_ data: Data) throws(ProviderError) -> [ObservedMachine] {
        let listed: ListedMachines
        do {
            listed = try listDecoder.decode(ListedMachines.self, from: data)
        } catch {
            throw ProviderError(
                .malformedOutput, "orbctl list printed something that is not JSON: \"\(String(decoding: data.prefix(80), as: UTF8.self))\"",
                arguments: ["list"])
        }
        guard case .array(let records) = listed else {
            throw ProviderError(
                .malformedOutput, "orbctl list printed \(listed == .null ? "null" : "a non-array") instead of a list of machines", arguments: ["list"]
            )
        }
        var machines: [ObservedMachine] = []
        machines.reserveCapacity(records.count)
        var ids = Set<String>()
        for (i, entry) in records.enumerated() {
            guard case .record(let record) = entry else {
                throw ProviderError(.malformedOutput, "orbctl list: record \(i) is not an object", arguments: ["list"])
            }
            guard let id = record.id, !id.isEmpty, let name = record.name, !name.isEmpty, let state = record.state else {
                throw ProviderError(.malformedOutput, "orbctl list: record \(i) lacks id, name or state", arguments: ["list"])
            }
            guard ids.insert(id).inserted else {
                throw ProviderError(.malformedOutput, "orbctl list: id \(id) appears twice", arguments: ["list"])
            }
            machines.append(
                ObservedMachine(
                    id: id, name: name, state: MachineState(state),
                    distro: record.distro ?? "", version: record.version ?? "", arch: record.arch ?? ""))
        }
        return machines
    }

    private static let listDecoder = JSONDecoder()

    /// What `list --format json` printed: an array, `null`, or another JSON value.
    enum ListedMachines: Decodable, Equatable {
        case array([ListEntry])
        case null
        case other

        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { self = .null } else if let entries = try? c.decode([ListEntry].self) { self = .array(entries) } else { self = .other }
        }
    }

    /// One element of the list: a machine's record, or something that is not an object.
    enum ListEntry: Decodable, Equatable {
        case record(ListRecord)
        case notObject

        init(from decoder: any Decoder) throws {
            self = (try? decoder.container(keyedBy: ListRecord.Keys.self)).map { .record(ListRecord($0)) } ?? .notObject
        }
    }

    /// The fields of a record repl reads; a field of another type reads as absent.
    struct ListRecord: Equatable {
        var id, name, state, distro, version, arch: String?

        enum Keys: String, CodingKey { case id, name, state, image }
        enum ImageKeys: String, CodingKey { case distro, version, arch }

        init(_ c: KeyedDecodingContainer<Keys>) {
            id = try? c.decodeIfPresent(String.self, forKey: .id)
            name = try? c.decodeIfPresent(String.self, forKey: .name)
            state = try? c.decodeIfPresent(String.self, forKey: .state)
            let image = try? c.nestedContainer(keyedBy: ImageKeys.self, forKey: .image)
            distro = (try? image?.decodeIfPresent(String.self, forKey: .distro)) ?? nil
            version = (try? image?.decodeIfPresent(String.self, forKey: .version)) ?? nil
            arch = (try? image?.decodeIfPresent(String.self, forKey: .arch)) ?? nil
        }
    }

    /// `info NAME --format json`: the machine's state and IPv4 address (absent when stopped).
    public func info(_ name: String) async throws(ProviderError) -> (state: MachineState, ip4: String?) {
        let (object, record) = try await infoRecord(name)
        guard let state = record["state"] as? String else {
            throw ProviderError(.malformedOutput, "orbctl info \(name) printed no machine record", arguments: ["info", name])
        }
        return (MachineState(state), object["ip4"] as? String)
    }

    /// `info NAME --format json`'s `record.config.isolated`: whether the machine was made
    /// isolated (nil when the record does not say: an OrbStack before 2.1).
    public func isolated(_ name: String) async throws(ProviderError) -> Bool? {
        (try await infoRecord(name).record["config"] as? [String: Any])?["isolated"] as? Bool
    }

    /// `info NAME --format json`, read: the whole object and its `record`.
    func infoRecord(_ name: String) async throws(ProviderError) -> (object: [String: Any], record: [String: Any]) {
        let result = try await call(["info", name, "--format", "json"], timeout: timeouts.quick)
        guard let object = (try? JSONSerialization.jsonObject(with: result.stdout)) as? [String: Any],
            let record = object["record"] as? [String: Any]
        else {
            throw ProviderError(.malformedOutput, "orbctl info \(name) printed no machine record", arguments: ["info", name])
        }
        return (object, record)
    }

    // MARK: - Lifecycle

    /// `create distro:version NAME -a arch` with the machine options (user data through a
    /// private file, removed after). A machine that already exists under the name (a retried
    /// or interrupted create) is adopted, once `info` says it runs.
    public func create(name: String, spec: Spec, options: MachineOptions = .none) async throws(ProviderError) {
        var arguments = ["create", "\(spec.distro):\(spec.version)", name, "-a", spec.arch] + options.createFlags
        var userDataDirectory: URL?
        if let userData = options.userData {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("repl-user-data-\(UUID().uuidString)")
            do {
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
                let file = directory.appendingPathComponent("user-data.yaml")
                FileManager.default.createFile(atPath: file.path, contents: nil, attributes: [.posixPermissions: 0o600])
                try Data(userData.utf8).write(to: file)
                arguments += ["-c", file.path]
                userDataDirectory = directory
            } catch {
                throw ProviderError(.failed, "cannot write the user data for \(name): \(error.localizedDescription)")
            }
        }
        defer { if let userDataDirectory { try? FileManager.default.removeItem(at: userDataDirectory) } }
        do {
            try await call(arguments, timeout: timeouts.create)
            // `create` blocks until the machine has started and leaves it running (ORBCTL.md,
            // from the GARM provider tested against 2.2.3): no `info` after it (#20).
            return
        } catch  where error.kind == .alreadyExists {
            // Adopt it: names are ours and deterministic. It may still be starting (a create
            // interrupted on our side completes in the daemon), so wait until it runs.
        }
        try await waitUntilRunning(name)
    }

    public func waitUntilRunning(_ name: String) async throws(ProviderError) {
        let deadline = Date().addingTimeInterval(timeouts.running)
        while true {
            let (state, _) = try await info(name)
            if state == .running { return }
            if state == .stopped { try await call(["start", name], timeout: timeouts.lifecycle) }
            guard Date() < deadline else {
                throw ProviderError(.timedOut, "machine \(name) is still \(state) after \(Int(timeouts.running)) s", arguments: ["info", name])
            }
            try? await Task.sleep(nanoseconds: UInt64(pollInterval * 1e9))
        }
    }

    public func start(_ name: String) async throws(ProviderError) {
        precondition(!name.isEmpty, "start needs a machine name")
        try await call(["start", name], timeout: timeouts.lifecycle)
    }

    /// Stops one machine. Never called without a name: a bare `orbctl stop` stops all of OrbStack.
    public func stop(_ name: String) async throws(ProviderError) {
        precondition(!name.isEmpty, "stop needs a machine name")
        try await call(["stop", name], timeout: timeouts.lifecycle)
    }

    /// Graceful stop, a short grace, then `delete -f NAME` (by name: delete by id crashes 2.2.3).
    /// A machine that is already gone counts as deleted.
    public func delete(_ name: String) async throws(ProviderError) {
        try await stopBeforeDelete(name)
        if deleteGrace > 0 { try? await Task.sleep(nanoseconds: UInt64(deleteGrace * 1e9)) }
        try await deleteStopped(name)
    }

    /// The first step of ``delete(_:)``: a graceful stop; gone or unstoppable machines are fine.
    public func stopBeforeDelete(_ name: String) async throws(ProviderError) {
        precondition(!name.isEmpty, "delete needs a machine name")
        do {
            try await stop(name)
        } catch  where error.kind == .notFound {
            return
        } catch  where error.kind == .timedOut {
            // A machine that will not stop is deleted anyway (killed).
        }
    }

    /// The last step of ``delete(_:)``: `delete -f NAME`; "not found" counts as done.
    public func deleteStopped(_ name: String) async throws(ProviderError) {
        precondition(!name.isEmpty, "delete needs a machine name")
        do {
            try await call(["delete", "-f", name], timeout: timeouts.lifecycle)
        } catch  where error.kind == .notFound {
            return
        }
    }

    /// `clone SOURCE NAME`: the clone is stopped. A snapshot's clone takes no address (`lane: .heavy`).
    public func clone(_ source: String, _ name: String, lane: CallLane = .addressTaking) async throws(ProviderError) {
        do {
            try await call(["clone", source, name], timeout: timeouts.lifecycle, lane: lane)
        } catch  where error.kind == .alreadyExists {
            // Adopt an earlier, interrupted clone.
        }
    }

    // MARK: - Inside the machine

    /// `orbctl run -m NAME -u USER ARGV…`: argv is passed as words, never through a host shell.
    /// A run that copies files in or out says so with `lane: .heavy`.
    public func run(
        _ name: String, user: String = "root", _ argv: [String], input: Data? = nil, timeout: TimeInterval? = nil, lane: CallLane = .light
    ) async throws(ProviderError) -> ProcessResult {
        try await call(
            ["run", "-m", name, "-u", user] + argv, input: input, timeout: timeout ?? timeouts.command, allowFailure: true, lane: lane)
    }

    /// The three-step address discovery: `info`'s ip4, then DNS `NAME.orb.local`,
    /// then `hostname -I` inside the machine.
    public func address(_ name: String, resolve: @Sendable (String) -> String? = OrbctlClient.resolveIPv4) async throws(ProviderError) -> String? {
        if let ip = try? await info(name).ip4, !ip.isEmpty { return ip }
        if let ip = resolve("\(name).orb.local") { return ip }
        let result = try await run(name, user: "root", ["hostname", "-I"], timeout: timeouts.quick)
        guard result.status == 0 else { return nil }
        return result.stdoutText.split(separator: " ").first.map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) }
            .flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Looks a host name up through the system resolver (IPv4 only).
    public static func resolveIPv4(_ host: String) -> String? {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return nil }
        defer { freeaddrinfo(result) }
        guard let sockaddr = first.pointee.ai_addr else { return nil }
        var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard getnameinfo(sockaddr, first.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 else { return nil }
        return String(cString: buffer)
    }
}
