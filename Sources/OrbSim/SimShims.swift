import Foundation
import ReplCore
import ReplPlatform

/// Programs a machine's command finds in place of the host's: first on PATH, and bound over
/// the host's copies of the guarded ones, so that `poweroff` stops the emulated machine and
/// never the host. Each is a small script calling `orbctl-sim __shim NAME`; it names every
/// path it needs itself, so it works under `env -i` too.
struct MachineShims {
    let sim: OrbSim

    /// Programs that must never reach the host from a machine.
    static let guarded = ["poweroff", "shutdown", "halt", "reboot", "init", "telinit", "systemctl"]
    /// Every shim: the guarded ones, `hostname` (for `-I`) and `cloud-init` (for `status`).
    static let all = guarded + ["hostname", "cloud-init"]

    /// Writes the shims under `$ORBSIM_HOME/shims` (once per emulator home).
    func install() throws {
        let dir = sim.store.shimsDirectory
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let view = MachineBoot.hostView
        let runtime = Platform.swiftRuntimeDirectory().map { view + $0 } ?? ""
        for tool in MachineShims.all {
            let path = dir.appendingPathComponent(tool).path
            // Dispatch on the name it was called by: a shim bound over /usr/bin/systemctl is
            // also what the /sbin/shutdown symlink reaches.
            let script = """
                #!/bin/sh
                # orbctl-sim shim: inside an emulated machine, \(tool) acts on the machine, never the host.
                HOME="${HOME:-/root}" ORBSIM_HOME=\(Self.quoted(view + sim.store.home.path)) LD_LIBRARY_PATH=\(Self.quoted(runtime)) \
                SWIFT_BACKTRACE=\(MachineBoot.noBacktrace) \
                exec \(Self.quoted(view + sim.executable)) __shim "${0##*/}" "$@"

                """
            if (try? String(contentsOfFile: path, encoding: .utf8)) != script {
                try script.write(toFile: path + ".tmp", atomically: false, encoding: .utf8)
                chmod(path + ".tmp", 0o755)
                rename(path + ".tmp", path)
            }
        }
    }

    /// Whether this process runs in an emulated machine: its PID 1 is an emulator's init (a
    /// command line the machine cannot rewrite, unlike any file it can see).
    static func insideAMachine() -> Bool { getpid() != 1 && MachineNamespace.pidOneIsAMachineInit() }

    static func quoted(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }
}

extension OrbSim {
    /// `poweroff`, `shutdown`, `halt`, `reboot`, `systemctl`, `hostname`, `cloud-init` inside a
    /// machine. A shim sees only what the machine's init wrote for it and the machine's own
    /// directory: the emulator's state is out of its reach, and a power tool asks the init.
    func shim(_ args: [String]) throws -> Int32 {
        // Never on the host: there PID 1 is the host's own init.
        guard let tool = args.first, MachineShims.insideAMachine() else {
            throw SimExit(code: 1, stderr: "orbctl-sim: shims only work inside an emulated machine\n")
        }
        let rest = Array(args.dropFirst())
        if tool == "systemctl" {
            guard let verb = rest.first(where: { !$0.hasPrefix("-") }), ["poweroff", "halt", "reboot", "kexec"].contains(verb) else {
                throw SimExit(code: 1, stderr: "System has not been booted with systemd as init system (PID 1). Can't operate.\n")
            }
        }
        if tool != "hostname" && tool != "cloud-init" {
            // poweroff, shutdown, halt, reboot, init, telinit: stop the emulated machine, never the
            // host, by asking its init (nothing the machine can forge is read). Only root may (the
            // default user goes through sudo). **uncertain** text.
            guard getuid() == 0, kill(1, SIGTERM) == 0 else {
                throw SimExit(code: 1, stderr: "\(tool): Access denied (must be root; use sudo)\n")
            }
            // The init stops the machine, and this process with it.
            sleep(60)
            return 0
        }
        let written = FileManager.default.contents(atPath: MachineBoot.machineMark).flatMap {
            try? JSONDecoder().decode(MachineBoot.Mark.self, from: $0)
        }
        guard let mark = written else {
            throw SimExit(code: 1, stderr: "orbctl-sim: shims only work inside an emulated machine\n")
        }
        if tool == "cloud-init" { return try CloudInit(sim: self).status(mark.key, arguments: rest) }
        if rest.contains("-I") || rest.contains("--all-ip-addresses") || rest.contains("-i") {
            out((mark.ip4 ?? "") + " \n")
        } else if rest.isEmpty || rest == ["-s"] || rest == ["-f"] {
            out(ProcessInfo.processInfo.hostName + "\n")
        } else {
            throw SimExit(code: 1, stderr: "hostname: you must be root to change the host name\n")
        }
        return 0
    }
}
