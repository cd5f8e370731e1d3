import Foundation
import ReplCore

extension OrbSim {
    // MARK: - Config

    static let globalConfig: [String: String] = [
        "network.subnet4": "192.168.138.0/23", "cpu": "8", "memory_mib": "8192", "rosetta": "true",
        "network_proxy": "auto", "machines.forward_ports": "true", "setup.use_admin": "true",
    ]
    /// Per-machine keys, addressed by name: `machine.NAME.KEY` [G, M]; GARM sets all of
    /// these but `default_username` on 2.2.3, `mounts` to "".
    static let machineKeys: Set<String> = [
        "cpu", "memory_mib", "disk_bytes", "isolated", "forward_ssh_agent", "isolate_network",
        "mounts", "default_username",
    ]

    func config(_ args: [String]) throws -> Int32 {
        guard let sub = args.first else { throw SimExit.usage("missing subcommand (get, set, show)", "config [command]") }
        switch sub {
        case "get":
            guard args.count == 2 else { throw SimExit.usage("accepts 1 arg(s), received \(args.count - 1)", "config get KEY") }
            let state = try store.read()
            guard let value = try configValue(args[1], state: state) else {
                throw SimExit(code: 1, stderr: "Unknown configuration key: \(args[1])\n")
            }
            out(value + "\n")
        case "set":
            guard args.count == 3 else { throw SimExit.usage("accepts 2 arg(s), received \(args.count - 1)", "config set KEY VALUE") }
            let (key, value) = (args[1], args[2])
            try store.withState { state in
                guard try configValue(key, state: state) != nil else { throw SimExit(code: 1, stderr: "Unknown configuration key: \(key)\n") }
                if key == "network.subnet4" {
                    guard OrbSim.isSlash23(value) else { throw SimExit(code: 1, stderr: "invalid subnet: \(value) (must be an IPv4 /23)\n") }
                    if value != state.subnet4 {
                        // A subnet pivot drops every lease not held by a running machine: the
                        // recovery that scaffold/scripts/orbstack-reset-networking.sh relies on.
                        let now = now(state)
                        let running = Set(state.machines.filter { $0.state(at: now) == "running" }.map(\.id))
                        state.pool.pivot(to: value, keeping: running)
                    }
                } else if key.hasPrefix("machine.") {
                    let parts = key.split(separator: ".")
                    if let i = state.machines.firstIndex(where: { $0.name == parts[1] }) {
                        state.machines[i].settings[String(parts[2])] = value
                    }
                } else {
                    state.config[key] = value
                }
            }
        case "show":
            let state = try store.read()
            for key in OrbSim.globalConfig.keys.sorted() { out("\(key): \(try configValue(key, state: state) ?? "")\n") }
        default:
            throw SimExit.usage("unknown command \"\(sub)\" for \"orbctl config\"", "config [command]")
        }
        return 0
    }

    /// The value of a key, or `nil` when the key is unknown (or names no machine).
    func configValue(_ key: String, state: SimState) throws -> String? {
        if key == "network.subnet4" { return state.subnet4 }
        if key.hasPrefix("machine.") {
            let parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 3, OrbSim.machineKeys.contains(parts[2]) else { return nil }
            guard let m = state.machines.first(where: { $0.name == parts[1] }) else { throw SimExit.notFound(parts[1]) }
            if let v = m.settings[parts[2]] { return v }
            switch parts[2] {
            case "cpu": return "0"
            case "memory_mib": return "0"
            case "disk_bytes": return String(m.diskSize)
            case "default_username": return m.defaultUsername
            case "forward_ssh_agent": return "true"
            case "mounts": return ""
            default: return "false"
            }
        }
        if let v = state.config[key] { return v }
        return OrbSim.globalConfig[key]
    }

    static func isSlash23(_ text: String) -> Bool {
        let parts = text.split(separator: "/")
        guard parts.count == 2, parts[1] == "23" else { return false }
        let octets = parts[0].split(separator: ".", omittingEmptySubsequences: false).compactMap { UInt8($0) }
        return octets.count == 4 && octets[2] % 2 == 0 && octets[3] == 0
    }
}
