import Foundation
import ReplPlatform
import Yams

/// `create -c/--user-data FILE`: the subset of cloud-init that repl and its users rely on,
/// run inside the new machine (as root) before `create` returns — `#cloud-config` with
/// `write_files` (path, content, `encoding: b64`, permissions, owner, append) and `runcmd`
/// (strings run by `sh`, lists as argument vectors), or a `#!` script — and
/// `cloud-init status [--wait] [--long] [--format json]` inside the machine.
/// Output goes to the machine's `/var/log/cloud-init-output.log`, as on Ubuntu.
/// **uncertain**: a failing user-data leaves `create` successful and `cloud-init status`
/// reporting `error` (exit 1), as cloud-init itself does; a machine without user-data has
/// no cloud-init at all (OrbStack's `default` variant).
struct CloudInit {
    let sim: OrbSim

    struct Status: Codable {
        var status: String
        var errors: [String]
    }

    /// How long `create` waits for the user data to finish. **uncertain**: OrbStack's own limit.
    static let timeout: TimeInterval = 600

    func statusURL(_ key: String) -> URL { MachineBoot(sim: sim).directory(key).appendingPathComponent("cloud-init.json") }

    func run(_ userData: String, in machine: SimMachine) throws {
        let root = sim.machineRoot(machine.key)
        let scripts = root.appendingPathComponent("var/lib/cloud/instance/scripts")
        try FileManager.default.createDirectory(at: scripts, withIntermediateDirectories: true)
        try Data(userData.utf8).write(to: root.appendingPathComponent("var/lib/cloud/instance/user-data.txt"))
        var errors: [String] = []
        let script: String
        do {
            script = try CloudInit.script(for: userData)
        } catch {
            errors.append("\(error)")
            script = ""
        }
        if errors.isEmpty {
            try JSONEncoder().encode(Status(status: "running", errors: [])).write(to: statusURL(machine.key))
            try Data(script.utf8).write(to: scripts.appendingPathComponent("user-data"))
            let log = root.appendingPathComponent("var/log/cloud-init-output.log")
            if !FileManager.default.fileExists(atPath: log.path) { FileManager.default.createFile(atPath: log.path, contents: nil) }
            let output = try FileHandle(forWritingTo: log)
            defer { try? output.close() }
            try output.seekToEnd()
            let record = try MachineBoot(sim: sim).ensureInit(machine)
            guard let nullInput = FileHandle(forReadingAtPath: "/dev/null") else { throw CloudInitError("cannot open /dev/null") }
            let code = try MachineExec(sim: sim).enter(
                machine, record: record, user: "root", workdir: "/",
                command: ["/bin/sh", "/var/lib/cloud/instance/scripts/user-data"],
                streams: (nullInput.fileDescriptor, output.fileDescriptor, output.fileDescriptor), timeout: CloudInit.timeout)
            if code == 137 {
                errors.append("user-data did not finish within \(Int(CloudInit.timeout)) s and was ended")
            } else if code != 0 {
                errors.append("user-data script exited \(code) (see /var/log/cloud-init-output.log)")
            }
        }
        let status = Status(status: errors.isEmpty ? "done" : "error", errors: errors)
        try JSONEncoder().encode(status).write(to: statusURL(machine.key))
    }

    /// One shell script doing what the user data asks.
    static func script(for userData: String) throws -> String {
        if userData.hasPrefix("#!") { return userData }
        guard userData.hasPrefix("#cloud-config") else {
            throw CloudInitError("user data is neither #cloud-config nor a #! script")
        }
        let document: Any?
        do {
            document = try Yams.load(yaml: userData)
        } catch {
            throw CloudInitError("invalid #cloud-config: \(error)")
        }
        let config = document as? [String: Any] ?? [:]
        var lines = ["set -e"]
        for (index, item) in (config["write_files"] as? [Any] ?? []).enumerated() {
            guard let file = item as? [String: Any], let path = file["path"] as? String else {
                throw CloudInitError("write_files[\(index)]: path is required")
            }
            let content = "\(file["content"] ?? "")"
            let encoding = (file["encoding"] as? String)?.lowercased()
            let bytes: Data
            switch encoding {
            case nil, "text/plain": bytes = Data(content.utf8)
            case "b64", "base64":
                guard let decoded = Data(base64Encoded: content, options: .ignoreUnknownCharacters) else {
                    throw CloudInitError("write_files[\(index)]: content is not base64")
                }
                bytes = decoded
            default: throw CloudInitError("write_files[\(index)]: encoding \(encoding!) is not supported by orbctl-sim")
            }
            let quoted = MachineShims.quoted(path)
            let redirect = (file["append"] as? Bool) == true ? ">>" : ">"
            lines.append("mkdir -p \"$(dirname \(quoted))\"")
            lines.append("printf '%s' \(MachineShims.quoted(bytes.base64EncodedString())) | base64 -d \(redirect) \(quoted)")
            lines.append("chmod \(MachineShims.quoted((file["permissions"] as? String) ?? "0644")) \(quoted)")
            lines.append("chown \(MachineShims.quoted((file["owner"] as? String) ?? "root:root")) \(quoted)")
        }
        for item in config["runcmd"] as? [Any] ?? [] {
            if let argv = item as? [Any] {
                lines.append(argv.map { MachineShims.quoted("\($0)") }.joined(separator: " "))
            } else {
                lines.append("\(item)")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `cloud-init status` inside a machine.
    func status(_ machine: SimMachine, arguments: [String]) throws -> Int32 {
        guard arguments.first == "status" else {
            throw SimExit(code: 2, stderr: "cloud-init: orbctl-sim answers only `cloud-init status`\n")
        }
        guard let data = FileManager.default.contents(atPath: statusURL(machine.key).path),
              let status = try? JSONDecoder().decode(Status.self, from: data) else {
            throw SimExit(code: 127, stderr: "cloud-init: command not found\n")
        }
        if arguments.contains("json") || arguments.contains("--format=json") {
            sim.out(GoJSON.object([("status", .string(status.status)),
                                   ("errors", .array(status.errors.map { .string($0) }))]).rendered())
        } else {
            sim.out("status: \(status.status)\n")
            if arguments.contains("--long") || arguments.contains("-l") {
                sim.out("errors:\n" + status.errors.map { "\t- \($0)\n" }.joined())
            }
        }
        if status.status == "running" && arguments.contains("--wait") {
            // The create that runs it was killed midway: nothing will finish it.
            sim.out("status: error\n")
            return 1
        }
        return status.status == "done" ? 0 : (status.status == "running" ? 0 : 1)
    }
}

struct CloudInitError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
