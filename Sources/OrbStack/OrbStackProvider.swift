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

    public func exists(name: String) async throws(ProviderError) -> Bool {
        do {
            _ = try await client.info(name)
            return true
        } catch  where error.kind == .notFound {
            return false
        }
    }

    public func create(name: String, spec: Spec, options: MachineOptions) async throws(ProviderError) {
        try await client.create(name: name, spec: spec, options: options)
    }

    public func clone(snapshot: String, name: String) async throws(ProviderError) {
        try await client.clone(snapshot, name)
        try await client.start(name)
        try await client.waitUntilRunning(name)
    }

    public func start(name: String) async throws(ProviderError) { try await client.start(name) }
    public func stop(name: String) async throws(ProviderError) { try await client.stop(name) }
    public func delete(name: String) async throws(ProviderError) { try await client.delete(name) }

    public func snapshot(source: String, name: String) async throws(ProviderError) {
        try await client.clone(source, name, lane: .heavy)
        try await client.stop(name)
    }

    public func startRun(name: String, payload: RunPayload) async throws(ProviderError) {
        let script = RunWrapper.script(payload)
        let result = try await client.run(
            name, user: "root", RunWrapper.launchArguments(machine: name, channel: payload.channel),
            input: Data(Data(script.utf8).base64EncodedString().utf8))
        guard result.status == 0, RunWrapper.LaunchAnswer(result.stdoutText) != nil else {
            throw OrbctlClient.classify(result, arguments: ["run", "-m", name, "(start the run)"])
        }
    }

    public func pushArchive(name: String, archive: Data, to directory: String) async throws(ProviderError) {
        // `-o`: owned by root in the machine, not by the Mac user's uid the archive records.
        // An empty archive: the directory only (an empty source directory).
        let unpack = archive.isEmpty ? "mkdir -p \"$1\"" : "mkdir -p \"$1\" && tar -x -o -f - -C \"$1\""
        let result = try await client.run(
            name, user: "root", ["sh", "-c", unpack, "sh", directory],
            input: archive.isEmpty ? nil : archive, timeout: client.timeouts.create, lane: .heavy)
        guard result.status == 0 else {
            throw ProviderError(
                .failed, "cannot unpack into \(directory) in \(name): \(OrbctlClient.oneLine(result.stderrText))", exitStatus: result.status)
        }
    }

    public func pushFile(name: String, data: Data, to path: String) async throws(ProviderError) {
        let result = try await client.run(
            name, user: "root", ["sh", "-c", "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\"", "sh", path],
            input: data, timeout: client.timeouts.create, lane: .heavy)
        guard result.status == 0 else {
            throw ProviderError(.failed, "cannot write \(path) in \(name): \(OrbctlClient.oneLine(result.stderrText))", exitStatus: result.status)
        }
    }

    public func pullArchive(name: String, globs: [String]) async throws(ProviderError) -> (archive: Data, unmatched: [String]) {
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
        let result = try await client.run(name, user: "root", ["sh", "-c", script, "sh"] + globs, timeout: client.timeouts.create, lane: .heavy)
        let unmatched = result.stderrText.split(separator: "\n").compactMap { $0.hasPrefix("repl-unmatched ") ? String($0.dropFirst(15)) : nil }
        if result.truncated { throw ProviderError(.failed, "the artifacts of \(name) are more than 64 MiB; copy them out with repl exec") }
        guard result.status == 0 else {
            throw ProviderError(
                .failed, "cannot pack the artifacts in \(name): \(OrbctlClient.oneLine(result.stderrText))", exitStatus: result.status)
        }
        return (result.stdout, unmatched)
    }

    public func probe(name: String) async throws(ProviderError) -> ProbeResult {
        // The status, and whether the wrapper's watch loop still exists: by its process, not by
        // clocks (a restarted machine has lost it; a Mac that slept has not). No judgement
        // without a recorded loop (a wrapper of an older repl, or one just starting).
        let result = try await client.run(
            name, user: "root",
            [
                "sh", "-c",
                "cat \(RunWrapper.statusPath) || exit 1; p=$(cat \(RunWrapper.directory)/switch.pid 2>/dev/null) || exit 0; "
                    + "tr '\\000' ' ' < /proc/$p/cmdline 2>/dev/null | grep -q switch.sh || echo 'heartbeat stopped'",
            ], timeout: client.timeouts.quick)
        guard result.status == 0 else {
            if result.stderrText.contains("machine not found") { throw OrbctlClient.classify(result, arguments: ["run", "-m", name]) }
            return .unreadable(result.stderrText.split(separator: "\n").first.map(String.init) ?? "status unreadable")
        }
        let status = StatusFile.read(result.stdoutText).result
        if !status.isFinal, result.stdoutText.contains("heartbeat stopped") { return .gone(ProbeResult.wrapperGone) }
        return status
    }

    /// Bytes read per `orbctl run` (well under the runner's capture limit), so a log of any
    /// size arrives whole, a piece at a time.
    public static let logChunk = 16 << 20

    public func logs(name: String, bootstrap: Bool, from offset: Int) async throws(ProviderError) -> Data {
        let path = bootstrap ? RunWrapper.bootstrapLogPath : RunWrapper.logPath
        var data = Data()
        while true {
            let at = offset + data.count
            let result = try await client.run(
                name, user: "root",
                [
                    "sh", "-c", "[ -e \"$1\" ] || exit 0; tail -c +$(($2 + 1)) \"$1\" | head -c \"$3\"",
                    "repl-logs", path, String(at), String(Self.logChunk),
                ])
            guard result.status == 0, !result.truncated else { throw OrbctlClient.classify(result, arguments: ["run", "-m", name, "tail", path]) }
            data.append(result.stdout)
            if result.stdout.count < Self.logChunk { return data }
        }
    }

    public func address(name: String) async throws(ProviderError) -> String? { try await client.address(name) }

    public func isolation(name: String) async throws(ProviderError) -> Bool? { try await client.isolated(name) }

    public func manifestCopy(name: String) async throws(ProviderError) -> String? {
        let result = try await client.run(name, user: "root", ["sh", "-c", "[ ! -e \"$1\" ] || cat \"$1\"", "repl-manifest", ManifestCopy.path])
        guard result.status == 0 else { throw OrbctlClient.classify(result, arguments: ["run", "-m", name, "cat", ManifestCopy.path]) }
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
