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

    /// The machine stops (or goes) while its user data runs: nothing will finish it.
    func interrupt(_ key: String) {
        guard read(key)?.status == "running" else { return }
        try? JSONEncoder().encode(Status(status: "error", errors: ["cloud-init was interrupted: the machine stopped"])).write(to: statusURL(key))
    }

    func read(_ key: String) -> Status? {
        FileManager.default.contents(atPath: statusURL(key).path).flatMap { try? JSONDecoder().decode(Status.self, from: $0) }
    }

    func statusURL(_ key: String) -> URL { MachineBoot(sim: sim).directory(key).appendingPathComponent("cloud-init.json") }

    /// Records the user data and its status (`running`, or `error` when it cannot be read), then
    /// runs it in a process of its own (`orbctl-sim __cloudinit KEY`) that outlives the create.
    func start(_ userData: String, in machine: SimMachine) throws {
        let root = sim.machineRoot(machine.key)
        let scripts = root.appendingPathComponent("var/lib/cloud/instance/scripts")
        try FileManager.default.createDirectory(at: scripts, withIntermediateDirectories: true)
        try Data(userData.utf8).write(to: root.appendingPathComponent("var/lib/cloud/instance/user-data.txt"))
        let script: String
        do {
            script = try CloudInit.script(for: userData)
        } catch {
            try JSONEncoder().encode(Status(status: "error", errors: ["\(error)"])).write(to: statusURL(machine.key))
            return
        }
        try JSONEncoder().encode(Status(status: "running", errors: [])).write(to: statusURL(machine.key))
        try Data(script.utf8).write(to: scripts.appendingPathComponent("user-data"))
        var env = sim.environment
        env["ORBSIM_HOME"] = sim.store.home.path
        let environment = env
        let arguments = ["-c", "\"$0\" __cloudinit \"$1\" </dev/null >/dev/null 2>&1 &", sim.executable, machine.key]
        let launched = try waitForAsync {
            try await SystemProcessRunner.run(
                "/bin/sh", arguments,
                input: nil, timeout: 30, environment: environment, limit: 1 << 16)
        }
        guard launched.status == 0 else { throw SimExit.daemon("create '\(machine.name)': cloud-init: \(launched.stderrText)") }
    }

    /// `orbctl-sim __cloudinit KEY`: runs the machine's recorded user data to its end.
    static func main(_ args: [String], sim: OrbSim) -> Int32 {
        guard let key = args.first, let machine = try? sim.store.read().machines.first(where: { $0.key == key }) else { return 1 }
        do {
            try CloudInit(sim: sim).run(in: machine)
            return 0
        } catch {
            let status = Status(status: "error", errors: ["\(error)"])
            try? JSONEncoder().encode(status).write(to: CloudInit(sim: sim).statusURL(key))
            return 1
        }
    }

    func run(in machine: SimMachine) throws {
        let root = sim.machineRoot(machine.key)
        var errors: [String] = []
        // cloud-init's earlier stages (network, config) take a while on a real boot: a client
        // that does not wait for it finds its files missing, here as there.
        // The delay is the `cloud-init` latency (`admin latency cloud-init MS`).
        let delay = (try? sim.store.read().latencies["cloud-init"]) ?? nil
        Thread.sleep(forTimeInterval: Double(min(max(0, delay ?? 1000), 600_000)) / 1000)
        do {
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
    func status(_ key: String, arguments: [String]) throws -> Int32 {
        guard arguments.first == "status" else {
            throw SimExit(code: 2, stderr: "cloud-init: orbctl-sim answers only `cloud-init status`\n")
        }
        guard var status = read(key) else { throw SimExit(code: 127, stderr: "cloud-init: command not found\n") }
        // `--wait`: until it has finished (a machine stopped midway marks it an error).
        let deadline = Date().addingTimeInterval(CloudInit.timeout + 30)
        while status.status == "running" && arguments.contains("--wait") && Date() < deadline {
            usleep(100_000)
            status = read(key) ?? status
        }
        if arguments.contains("json") || arguments.contains("--format=json") {
            sim.out(
                GoJSON.object([
                    ("status", .string(status.status)),
                    ("errors", .array(status.errors.map { .string($0) })),
                ]).rendered())
        } else {
            sim.out("status: \(status.status)\n")
            if arguments.contains("--long") || arguments.contains("-l") {
                sim.out("errors:\n" + status.errors.map { "\t- \($0)\n" }.joined())
            }
        }
        return status.status == "done" ? 0 : (status.status == "running" && !arguments.contains("--wait") ? 0 : 1)
    }
}

struct CloudInitError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
