import Foundation
import ReplCore

extension OrbSim {
    // MARK: - Simple verbs

    func version(_ args: [String]) throws -> Int32 {
        let version = emulatedVersion
        out("Version: \(version) (\(OrbSim.number(of: version)))\nCommit: \(OrbSim.commit) (v\(version))\n")
        return 0
    }

    func status(_ args: [String]) throws -> Int32 {
        out("Running\n")
        return 0
    }

    /// Finds a machine by name, or by id.
    static func find(_ key: String, in state: SimState) -> Int? {
        state.machines.firstIndex { $0.name == key } ?? state.machines.firstIndex { $0.id == key }
    }

    static func record(_ m: SimMachine, now: Date) -> GoJSON {
        .object([
            ("id", .string(m.id)),
            ("name", .string(m.name)),
            (
                "image",
                .object([
                    ("distro", .string(m.distro)), ("version", .string(m.version)),
                    ("arch", .string(m.arch)), ("variant", .string(m.variant)),
                ])
            ),
            (
                "config",
                .object([
                    ("isolated", .bool(m.settings["isolated"] == "true")),
                    ("forward_ssh_agent", .bool(m.settings["forward_ssh_agent"] != "false")),
                    ("isolate_network", .bool(m.settings["isolate_network"] == "true")),
                    ("default_username", .string(m.defaultUsername)),
                    ("http_port", .int(0)), ("https_port", .int(0)),
                ])
            ),
            ("builtin", .bool(false)),
            ("state", .string(m.state(at: now))),
        ])
    }

    func list(_ args: [String]) throws -> Int32 {
        let flags = try FlagParser(usage: "list [flags]", bools: ["r": "running", "q": "quiet"], values: ["f": "format"]).parse(args)
        guard flags.positional.isEmpty else { throw SimExit.usage("unknown command \"\(flags.positional[0])\" for \"orbctl list\"", "list [flags]") }
        let format = flags.values["format"] ?? "text"
        guard format == "text" || format == "json" else { throw SimExit(code: 1, stderr: "invalid format: \(format)\n") }
        let state = try store.read()
        let now = now(state)
        var machines = state.machines.sorted { $0.name < $1.name }
        if flags.bools.contains("running") { machines = machines.filter { $0.state(at: now) == "running" } }
        if flags.bools.contains("quiet") {
            out(machines.map { $0.name + "\n" }.joined())
        } else if format == "json" {
            out(GoJSON.array(machines.map { OrbSim.record($0, now: now) }).rendered())
        } else {
            var rows: [[String]] = io.stdoutIsTTY ? [["NAME", "STATE", "DISTRO", "VERSION", "ARCH", "SIZE", "IP"]] : []
            for m in machines {
                rows.append([
                    m.name, m.state(at: now), m.distro, m.version, m.arch,
                    String(format: "%.1f GB", Double(m.diskSize) / 1e9),
                    m.state(at: now) == "running" ? m.ip4 ?? "" : "",
                ])
            }
            out(OrbSim.table(rows))
        }
        return 0
    }

    /// Columns padded as Go's tabwriter pads them (minimum width, two spaces apart).
    static func table(_ rows: [[String]]) -> String {
        guard let width = rows.map(\.count).max() else { return "" }
        var widths = [Int](repeating: 0, count: width)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        return rows.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i] + 2, withPad: " ", startingAt: 0) }
                .joined().trimmingCharacters(in: .whitespaces) + "\n"
        }.joined()
    }

    func info(_ args: [String]) throws -> Int32 {
        let flags = try FlagParser(usage: "info [flags] MACHINE", values: ["f": "format"]).parse(args)
        guard flags.positional.count == 1 else {
            throw SimExit.usage("accepts 1 arg(s), received \(flags.positional.count)", "info [flags] MACHINE")
        }
        let format = flags.values["format"] ?? "text"
        guard format == "text" || format == "json" else { throw SimExit(code: 1, stderr: "invalid format: \(format)\n") }
        let state = try store.read()
        let now = now(state)
        guard let i = OrbSim.find(flags.positional[0], in: state) else { throw SimExit.notFound(flags.positional[0]) }
        let m = state.machines[i]
        let running = m.state(at: now) == "running"
        if format == "json" {
            var fields: [(String, GoJSON)] = [("record", OrbSim.record(m, now: now)), ("disk_size", .int(m.diskSize))]
            if running, let ip4 = m.ip4 { fields.append(("ip4", .string(ip4))) }
            if running, let ip6 = m.ip6 { fields.append(("ip6", .string(ip6))) }
            out(GoJSON.object(fields).rendered())
        } else {
            var text =
                "ID: \(m.id)\nName: \(m.name)\nState: \(m.state(at: now))\nDistro: \(m.distro)\nVersion: \(m.version)\nArchitecture: \(m.arch)\n"
            if running, let ip4 = m.ip4 { text += "\nIP: \(ip4)\n" }
            out(text)
        }
        return 0
    }
}
