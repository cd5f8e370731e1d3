import Foundation
import OrbStack
import ReplCore

/// The run inside an EC2 instance. Its user data is a small agent (bash and curl) that waits
/// for the run's launch in S3 and starts it with the very launcher and wrapper OrbStack's
/// machines use (launch exactly once, env isolation, deadline, dead man's switch), its host
/// channel a directory in the instance; the agent copies that directory's status and logs to
/// S3 as they change. It holds no credentials: each object it reads or writes has its own
/// presigned URL, valid for ``urlLifetime``.
public enum InstanceAgent {
    /// The agent's directory, and the wrapper's channel in it (a plain directory of the
    /// instance; on OrbStack the channel is the Mac's, through `/mnt/mac`). Not under
    /// `/var/lib/repl`, which a launch clears.
    public static let directory = "/var/tmp/repl-agent"
    public static let channel = "/var/tmp/repl-agent/channel"
    /// SigV4's longest: a run's channel lasts a week (the instance runs on; its status is
    /// then read from its end, by the dead man's switch, as a missing machine).
    public static let urlLifetime = 604_800
    /// EC2's limit on user data.
    public static let userDataLimit = 16 * 1024

    /// The S3 keys of a machine's channel.
    public static func key(_ machine: MachineName, _ file: String) -> String { "machines/\(machine)/\(file)" }

    /// The objects an agent reads (`launch`) and writes (the channel's files).
    public static let written = ["status", "run.log", "bootstrap.log"]

    /// The user data of `machine`: URLs for its launch (GET) and each channel file (PUT).
    public static func userData(machine: MachineName, launchURL: URL, putURLs: [String: URL]) -> String {
        let launcher = RunWrapper.launchArguments(machine: machine.description, channel: channel, hostRoot: "")[2]
        var lines = [
            "#!/bin/bash",
            "# repl's agent for \(machine): waits for its run in S3, starts it with repl's launcher, and copies",
            "# the run's status and logs back to S3 as they change. Presigned URLs only: no credentials here.",
            "A=\(directory); CH=\(channel)",
            "mkdir -p \"$A\" \"$CH\"",
            "LAUNCH='\(launchURL.absoluteString)'",
        ]
        for file in written {
            lines.append("PUT_\(variable(file))='\(putURLs[file]?.absoluteString ?? "")'")
        }
        lines += [
            "cat > \"$A/launcher.sh\" <<'REPL_LAUNCHER'",
            launcher,
            "REPL_LAUNCHER",
            // The run is put once the controller starts it; until then, every 2 s.
            "until curl -fsS --max-time 30 -o \"$A/launch.b64.new\" \"$LAUNCH\" 2>/dev/null && [ -s \"$A/launch.b64.new\" ]; do sleep 2; done",
            "mv -f \"$A/launch.b64.new\" \"$A/launch.b64\"",
            "sh \"$A/launcher.sh\" \(machine) \(channel) < \"$A/launch.b64\" > \"$A/launch.answer\" 2>&1",
            // The status is read first and put last: the wrapper writes a final status only once
            // the logs are whole, so a final status in S3 comes after the whole output.
            "put() { [ -f \"$1\" ] || return 0; s=$(stat -c '%s.%Y' \"$1\" 2>/dev/null); [ \"$s\" = \"$(cat \"$A/sent.$2\" 2>/dev/null)\" ] && return 0",
            "  curl -fsS --max-time 60 -X PUT -H 'Content-Type: application/octet-stream' --data-binary \"@$1\" \"$3\" > /dev/null && printf '%s' \"$s\" > \"$A/sent.$2\"; }",
            "while :; do",
            "  [ -f \"$CH/status\" ] && cp -p \"$CH/status\" \"$A/status.read\"",
            "  put \"$CH/bootstrap.log\" bootstrap \"$PUT_BOOTSTRAP\"; put \"$CH/run.log\" run \"$PUT_RUN\"; put \"$A/status.read\" status \"$PUT_STATUS\"",
            "  sleep 2",
            "done",
            "",
        ]
        return lines.joined(separator: "\n")
    }

    static func variable(_ file: String) -> String {
        switch file {
        case "status": return "STATUS"
        case "run.log": return "RUN"
        default: return "BOOTSTRAP"
        }
    }

    /// What the controller puts as the launch: the wrapper script, base64 (the launcher's input).
    public static func launch(_ payload: RunPayload) -> Data {
        var payload = payload
        payload.channel = channel
        return Data(Data(RunWrapper.script(payload).utf8).base64EncodedString().utf8)
    }
}
