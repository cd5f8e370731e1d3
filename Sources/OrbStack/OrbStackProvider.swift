import Foundation
import ReplCore

/// The OrbStack provider: `Provider` over `OrbctlClient`.
public struct OrbStackProvider: Provider {
    public let client: OrbctlClient
    public var capabilities: ProviderCapabilities { .orbstack }

    public init(client: OrbctlClient) {
        self.client = client
    }

    public func list() async throws(ProviderError) -> [ObservedMachine] { try await client.list() }

    public func state(name: MachineName) async throws(ProviderError) -> MachineState? {
        do {
            return try await client.info(name.description).state
        } catch  where error.kind == .notFound {
            return nil
        }
    }

    public func create(name: MachineName, spec: MachineSpec, options: MachineOptions) async throws(ProviderError) {
        guard case .orbstack(let spec) = spec else {
            throw ProviderError(.failed, "OrbStack cannot make \(spec): that is another provider's machine")
        }
        try await client.create(name: name.description, spec: spec, options: options)
    }

    public func clone(snapshot: MachineName, name: MachineName) async throws(ProviderError) {
        try await client.clone(snapshot.description, name.description)
        try await client.start(name.description)
        try await client.waitUntilRunning(name.description)
    }

    public func start(name: MachineName) async throws(ProviderError) { try await client.start(name.description) }
    public func stop(name: MachineName) async throws(ProviderError) { try await client.stop(name.description) }
    public func delete(name: MachineName) async throws(ProviderError) { try await client.delete(name.description) }

    public func snapshot(source: MachineName, name: MachineName) async throws(ProviderError) {
        try await client.clone(source.description, name.description, lane: .heavy)
        try await client.stop(name.description)
    }

    public func startRun(name: MachineName, payload: RunPayload) async throws(ProviderError) {
        let script = RunWrapper.script(payload)
        let result = try await client.run(
            name.description, user: "root", RunWrapper.launchArguments(machine: name.description, channel: payload.channel),
            input: Data(Data(script.utf8).base64EncodedString().utf8))
        guard result.status == 0, RunWrapper.LaunchAnswer(result.stdoutText) != nil else {
            throw OrbctlClient.classify(result, arguments: ["run", "-m", name.description, "(start the run)"])
        }
    }

    public func pushArchive(name: MachineName, archive: Data, to directory: String) async throws(ProviderError) {
        // `-o`: owned by root in the machine, not by the Mac user's uid the archive records.
        // An empty archive: the directory only (an empty source directory).
        let unpack = archive.isEmpty ? "mkdir -p \"$1\"" : "mkdir -p \"$1\" && tar -x -o -f - -C \"$1\""
        let result = try await client.run(
            name.description, user: "root", ["sh", "-c", unpack, "sh", directory],
            input: archive.isEmpty ? nil : archive, timeout: client.timeouts.create, lane: .heavy)
        guard result.status == 0 else {
            throw ProviderError(
                .failed, "cannot unpack into \(directory) in \(name): \(OrbctlClient.oneLine(result.stderrText))", exitStatus: result.status)
        }
    }

    public func pushFile(name: MachineName, data: Data, to path: String) async throws(ProviderError) {
        let result = try await client.run(
            name.description, user: "root", ["sh", "-c", "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\"", "sh", path],
            input: data, timeout: client.timeouts.create, lane: .heavy)
        guard result.status == 0 else {
            throw ProviderError(.failed, "cannot write \(path) in \(name): \(OrbctlClient.oneLine(result.stderrText))", exitStatus: result.status)
        }
    }

    public func pullArchive(name: MachineName, globs: [String]) async throws(ProviderError) -> (archive: Data, unmatched: [String]) {
        // Each glob expands in the machine's shell; what matches nothing is named on stderr.
        // Globs are split at newlines only (a glob may hold spaces); names are listed one a line
        // as `./path` (never read as a tar option), and one holding a newline is skipped, said so.
        let script = """
            L=$(mktemp) || exit 1
            NL='
            '
            IFS=$NL
            for g in "$@"; do n=0; for f in $g; do [ -e "$f" ] || [ -L "$f" ] || continue
                case "$f" in *"$NL"*) printf 'repl-skipped a name with a newline under %s\\n' "$g" >&2; continue ;; esac
                printf './%s\\n' "${f#/}" >> "$L"; n=1; done
              [ $n = 1 ] || printf 'repl-unmatched %s\\n' "$g" >&2; done
            if [ -s "$L" ]; then tar -c -f - -C / -T "$L"; s=$?; else s=0; fi
            rm -f "$L"; exit $s
            """
        let result = try await client.run(
            name.description, user: "root", ["sh", "-c", script, "sh"] + globs, timeout: client.timeouts.create, lane: .heavy)
        let unmatched = result.stderrText.split(separator: "\n").compactMap { $0.hasPrefix("repl-unmatched ") ? String($0.dropFirst(15)) : nil }
        if result.truncated { throw ProviderError(.failed, "the artifacts of \(name) are more than 64 MiB; copy them out with repl exec") }
        guard result.status == 0 else {
            throw ProviderError(
                .failed, "cannot pack the artifacts in \(name): \(OrbctlClient.oneLine(result.stderrText))", exitStatus: result.status)
        }
        return (result.stdout, unmatched)
    }

    public func probe(name: MachineName) async throws(ProviderError) -> ProbeResult {
        // The status, and whether the wrapper's watch loop still exists: by its process, not by
        // clocks (a restarted machine has lost it; a Mac that slept has not). No judgement
        // without a recorded loop (a wrapper of an older repl, or one just starting).
        let result = try await client.run(
            name.description, user: "root",
            [
                "sh", "-c",
                "cat \(RunWrapper.statusPath) || exit 1; p=$(cat \(RunWrapper.directory)/switch.pid 2>/dev/null) || exit 0; "
                    + "tr '\\000' ' ' < /proc/$p/cmdline 2>/dev/null | grep -q switch.sh || echo 'heartbeat stopped'",
            ], timeout: client.timeouts.quick)
        guard result.status == 0 else {
            if result.stderrText.contains("machine not found") { throw OrbctlClient.classify(result, arguments: ["run", "-m", name.description]) }
            return .unreadable(result.stderrText.split(separator: "\n").first.map(String.init) ?? "status unreadable")
        }
        let status = StatusFile.read(result.stdoutText).result
        if !status.isFinal, result.stdoutText.contains("heartbeat stopped") { return .gone(ProbeResult.wrapperGone) }
        return status
    }

    /// Bytes read per `orbctl run` (well under the runner's capture limit), so a log of any
    /// size arrives whole, a piece at a time.
    public static let logChunk = 16 << 20

    public func logs(name: MachineName, bootstrap: Bool, from offset: Int) async throws(ProviderError) -> Data {
        let path = bootstrap ? RunWrapper.bootstrapLogPath : RunWrapper.logPath
        var data = Data()
        while true {
            let at = offset + data.count
            let result = try await client.run(
                name.description, user: "root",
                [
                    "sh", "-c", "[ -e \"$1\" ] || exit 0; tail -c +$(($2 + 1)) \"$1\" | head -c \"$3\"",
                    "repl-logs", path, String(at), String(Self.logChunk),
                ])
            guard result.status == 0, !result.truncated else {
                throw OrbctlClient.classify(result, arguments: ["run", "-m", name.description, "tail", path])
            }
            data.append(result.stdout)
            if result.stdout.count < Self.logChunk { return data }
        }
    }

    public func address(name: MachineName) async throws(ProviderError) -> String? { try await client.address(name.description) }

    public func isolation(name: MachineName) async throws(ProviderError) -> Bool? { try await client.isolated(name.description) }

    public func manifestCopy(name: MachineName) async throws(ProviderError) -> String? {
        let result = try await client.run(
            name.description, user: "root", ["sh", "-c", "[ ! -e \"$1\" ] || cat \"$1\"", "repl-manifest", ManifestCopy.path])
        guard result.status == 0 else { throw OrbctlClient.classify(result, arguments: ["run", "-m", name.description, "cat", ManifestCopy.path]) }
        return result.stdout.isEmpty ? nil : result.stdoutText
    }
}

extension OrbStackProvider {
    /// Limited at the process seam: each orbctl process holds one permit of its lane while it
    /// runs, and a delete's grace between its stop and its delete holds none.
    public func limited(by limits: CallLimits) -> any Provider {
        var client = client
        client.limits = limits
        return OrbStackProvider(client: client)
    }
}
