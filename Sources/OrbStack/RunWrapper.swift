import Foundation
import ReplCore

/// The script `repl` writes to `/var/lib/repl/run.sh` and launches detached.
///
/// Every user-supplied text (command, bootstrap, env values, manifest) is embedded
/// base64-encoded and decoded inside the machine, never interpolated into shell code.
/// It runs the bootstrap as root (logged to `/tmp/bootstrap.log`, failures not
/// fatal), the command with its env under the remaining deadline (output to
/// `/var/lib/repl/run.log`), keeps `/var/lib/repl/status` (`bootstrapping`,
/// `running`, then `exited CODE` or `timedout`), and is the machine's dead man's
/// switch: it powers the machine off after its deadline, and again when the run
/// has ended and nobody deleted the machine a while later. `poweroff` is called by
/// name, through PATH.
public enum RunWrapper {
    public static let directory = "/var/lib/repl"
    public static let statusPath = "/var/lib/repl/status"
    public static let logPath = "/var/lib/repl/run.log"
    public static let bootstrapLogPath = "/tmp/bootstrap.log"
    public static let manifestPath = "/etc/repl/manifest.yaml"

    static func b64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    public static func script(_ p: RunPayload) -> String {
        var lines: [String] = [
            "#!/bin/sh",
            "# Written by repl: runs one instance (bootstrap, command, status, dead man's switch).",
            "R=\(directory)",
            "T0=$(date +%s)",
            "decode() { printf '%s' \"$1\" | base64 -d; }",
            "status() { printf '%s\\n' \"$1\" > \"$R/status.tmp\" && mv -f \"$R/status.tmp\" \"$R/status\"; }",
            "SH=$(command -v bash || echo sh)",
            "mkdir -p \"$R\" /etc/repl",
            "decode '\(b64(p.manifestYAML))' > \(manifestPath)",
            "status bootstrapping",
        ]
        if let remaining = p.remaining {
            let fire = Int(max(1, remaining + p.deadlineMargin).rounded(.up))
            lines.append("# Dead man's switch: the machine never outlives its deadline, even with no controller alive.")
            lines.append("setsid sh -c 'sleep \(fire); poweroff' > /dev/null 2>&1 < /dev/null &")
        }
        if let bootstrap = p.bootstrap {
            lines.append("decode '\(b64(bootstrap))' > \"$R/bootstrap.sh\"")
            lines.append("(cd /root && \"$SH\" \"$R/bootstrap.sh\") > \(bootstrapLogPath) 2>&1 < /dev/null || "
                         + "echo \"repl: bootstrap exited $? (not fatal: the command still runs)\" >> \(bootstrapLogPath)")
        }
        guard let command = p.command else {
            lines.append("status running")
            lines.append("")
            return lines.joined(separator: "\n")
        }
        // The env is set at the top of the command's own script, never in this one: a user's
        // PATH, R, T0 or SH cannot reach the wrapper's. Each value is decoded byte for byte (the
        // `x` keeps trailing newlines from `$(…)`), by absolute path (the user's PATH may
        // already be set by then). Keys are checked by the manifest parser: [A-Za-z_][A-Za-z0-9_]*.
        var commandScript = ""
        for key in p.env.keys.sorted() {
            commandScript += "\(key)=$(printf '%s' '\(b64(p.env[key]!))' | /usr/bin/base64 -d; printf x); \(key)=${\(key)%x}; export \(key)\n"
        }
        commandScript += command
        lines.append("decode '\(b64(commandScript))' > \"$R/command.sh\"")
        lines.append("status running")
        if let remaining = p.remaining {
            let limit = Int(max(1, remaining).rounded(.up))
            lines += [
                "LEFT=$((\(limit) - ($(date +%s) - T0)))",
                "[ \"$LEFT\" -lt 1 ] && LEFT=1",
                "(cd /root && timeout -k 5 \"$LEFT\" \"$SH\" \"$R/command.sh\") > \(logPath) 2>&1 < /dev/null",
                "CODE=$?",
                "if [ \"$CODE\" -eq 124 ] && [ $(($(date +%s) - T0)) -ge \(limit) ]; then status timedout; else status \"exited $CODE\"; fi",
            ]
        } else {
            lines += [
                "(cd /root && \"$SH\" \"$R/command.sh\") > \(logPath) 2>&1 < /dev/null",
                "status \"exited $?\"",
            ]
        }
        let after = Int(max(1, p.hold + p.abandonedAfter).rounded(.up))
        lines.append("# The run has ended; if no controller has deleted this machine a while later, power it off.")
        lines.append("sleep \(after); poweroff")
        lines.append("")
        return lines.joined(separator: "\n")
    }

    /// The one `orbctl run` argv that installs the wrapper (sent base64 on stdin) and launches it detached.
    public static let launchArguments = [
        "sh", "-c",
        "set -e; mkdir -p \(directory) /etc/repl; base64 -d > \(directory)/run.sh; chmod 700 \(directory)/run.sh; "
            // The first status is written before this call returns, so a probe right after never finds none.
            + "echo bootstrapping > \(statusPath); rm -f \(directory)/launched; "
            // What is still in this session's process group when it ends is ended with it (as
            // OrbStack does): return only once the wrapper is in a session of its own.
            + "setsid sh -c 'echo $$ > \(directory)/launched; exec \(directory)/run.sh' > /dev/null 2>&1 < /dev/null & "
            + "i=0; while [ ! -s \(directory)/launched ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; "
            + "[ -s \(directory)/launched ] && echo launched",
    ]
}

/// The OrbStack provider: `Provider` over `OrbctlClient`.
public struct OrbStackProvider: Provider {
    public let client: OrbctlClient
    public var capabilities: ProviderCapabilities { .orbstack }

    public init(client: OrbctlClient) {
        self.client = client
    }

    public func list() async throws(ProviderError) -> [ObservedMachine] { try await client.list() }

    public func spawn(name: String, spec: Spec) async throws(ProviderError) {
        try await client.create(name: name, spec: spec)
    }

    public func clone(snapshot: String, name: String) async throws(ProviderError) {
        try await client.clone(snapshot, name)
        try await client.start(name)
        try await client.waitUntilRunning(name)
    }

    public func start(name: String) async throws(ProviderError) { try await client.start(name) }
    public func stop(name: String) async throws(ProviderError) { try await client.stop(name) }
    public func terminate(name: String) async throws(ProviderError) { try await client.delete(name) }

    public func snapshot(source: String, name: String) async throws(ProviderError) {
        try await client.clone(source, name)
        try await client.stop(name)
    }

    public func startRun(name: String, payload: RunPayload) async throws(ProviderError) {
        let script = RunWrapper.script(payload)
        let result = try await client.run(name, user: "root", RunWrapper.launchArguments, input: Data(Data(script.utf8).base64EncodedString().utf8))
        guard result.status == 0, result.stdoutText.contains("launched") else {
            throw OrbctlClient.classify(result, arguments: ["run", "-m", name, "(start the run)"])
        }
    }

    public func probe(name: String) async throws(ProviderError) -> ProbeResult {
        let result = try await client.run(name, user: "root", ["cat", RunWrapper.statusPath], timeout: client.timeouts.quick)
        guard result.status == 0 else {
            if result.stderrText.contains("machine not found") { throw OrbctlClient.classify(result, arguments: ["run", "-m", name]) }
            return .unreadable(result.stderrText.split(separator: "\n").first.map(String.init) ?? "status unreadable")
        }
        return ProbeResult(statusText: result.stdoutText)
    }

    public func logs(name: String, bootstrap: Bool) async throws(ProviderError) -> Data {
        let path = bootstrap ? RunWrapper.bootstrapLogPath : RunWrapper.logPath
        let result = try await client.run(name, user: "root", ["sh", "-c", "cat \(path) 2>/dev/null; true"])
        guard result.status == 0 else { throw OrbctlClient.classify(result, arguments: ["run", "-m", name, "cat", path]) }
        return result.stdout
    }

    public func address(name: String) async throws(ProviderError) -> String? { try await client.address(name) }
}

extension OrbStackProvider: GracefulTerminating {
    public var terminationGrace: TimeInterval { client.deleteGrace }
    public func stopForTermination(name: String) async throws(ProviderError) { try await client.stopBeforeDelete(name) }
    public func deleteAfterStop(name: String) async throws(ProviderError) { try await client.deleteStopped(name) }
}
