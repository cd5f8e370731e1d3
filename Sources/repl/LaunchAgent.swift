import Foundation
import OrbStack
import ReplPlatform

/// The launchd agent that runs `repl orphans sweep` every minute in the user's GUI session.
///
/// launchd starts the agent with a bare environment: no shell PATH and no working
/// directory. So the agent names the running binary by its absolute path (never `argv[0]`,
/// which is just `repl` when started from PATH), records the orbctl it resolved now, and
/// gives a PATH that holds OrbStack's own directories. It is loaded with
/// `launchctl bootstrap gui/UID` and removed with `launchctl bootout gui/UID/LABEL`
/// (the legacy `load` fails outside a GUI session, and `remove` leaves the job running).
struct LaunchAgent {
    static let label = "dev.repl.sweep"

    /// The user's home, whose `Library/LaunchAgents` holds the plist.
    var home: String
    var uid: UInt32
    var launchctl = "/bin/launchctl"
    var runner: any ProcessRunner = SystemProcessRunner()

    var plistPath: String { home + "/Library/LaunchAgents/\(Self.label).plist" }
    var domain: String { "gui/\(uid)" }

    /// PATH for the agent: OrbStack's directories first, then Homebrew's and the system's.
    static func path(home: String) -> String {
        (OrbctlCommand.installDirectories(home: home) + ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]).joined(separator: ":")
    }

    /// The plist: `program` is the absolute path of repl; `orbctl`, when known, is recorded
    /// as `REPL_ORBCTL` (an absolute path, or `sim`); `extra` are variables the sweep needs too
    /// (where an aws state directory's credentials are).
    static func plist(program: String, stateDirectory: String, orbctl: String?, home: String, extra: [(String, String)] = []) -> String {
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        let log = esc(stateDirectory + "/sweep.log")
        var environment = [("REPL_HOME", stateDirectory), ("PATH", path(home: home)), ("HOME", home)]
        if let orbctl { environment.append(("REPL_ORBCTL", orbctl)) }
        environment += extra
        let variables = environment.map { "\t\t<key>\($0.0)</key>\n\t\t<string>\(esc($0.1))</string>" }.joined(separator: "\n")
        return """
            <?xml version="1.0" encoding="UTF-8"?>
            <!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
            <plist version="1.0">
            <dict>
            	<key>Label</key>
            	<string>\(label)</string>
            	<key>ProgramArguments</key>
            	<array>
            		<string>\(esc(program))</string>
            		<string>orphans</string>
            		<string>sweep</string>
            		<string>--quiet</string>
            	</array>
            	<key>EnvironmentVariables</key>
            	<dict>
            \(variables)
            	</dict>
            	<key>WorkingDirectory</key>
            	<string>\(esc(stateDirectory))</string>
            	<key>StartInterval</key>
            	<integer>60</integer>
            	<key>RunAtLoad</key>
            	<true/>
            	<key>StandardOutPath</key>
            	<string>\(log)</string>
            	<key>StandardErrorPath</key>
            	<string>\(log)</string>
            </dict>
            </plist>

            """
    }

    /// Writes the plist and (re)loads it: a loaded older version is booted out first, so
    /// installing again picks up a new binary or state directory. Returns lines for the user.
    func install(program: String, stateDirectory: String, orbctl: String?, extra: [(String, String)] = []) async throws -> [String] {
        guard program.hasPrefix("/") else { throw CLIError.input("cannot find this repl binary's own path (got \(program))") }
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: (plistPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let text = Self.plist(program: program, stateDirectory: stateDirectory, orbctl: orbctl, home: home, extra: extra)
        try text.write(toFile: plistPath, atomically: true, encoding: .utf8)
        _ = try await launchctl(["bootout", "\(domain)/\(Self.label)"])  // not loaded yet: nothing to do
        let load = try await launchctl(["bootstrap", domain, plistPath])
        guard load.status == 0 else {
            let why = load.stderrText.trimmingCharacters(in: .whitespacesAndNewlines)
            throw CLIError.failure(
                "wrote \(plistPath), but launchctl bootstrap \(domain) failed (exit \(load.status)\(why.isEmpty ? "" : ": \(why)")); "
                    + "load it yourself with: launchctl bootstrap \(domain) \(plistPath)")
        }
        var lines = ["installed \(plistPath): `\(program) orphans sweep` every minute, logging to \(stateDirectory)/sweep.log"]
        lines.append(orbctl.map { "orbctl: \($0)" } ?? "orbctl: not found now; the agent looks on \(Self.path(home: home))")
        lines.append("remove it with: repl orphans sweep --uninstall-launchd")
        return lines
    }

    /// Boots the job out (stopping a sweep in progress) and removes the plist.
    func uninstall() async throws -> [String] {
        let exists = FileManager.default.fileExists(atPath: plistPath)
        let unload = try await launchctl(["bootout", "\(domain)/\(Self.label)"])
        guard exists || unload.status == 0 else { throw CLIError.input("no launchd agent at \(plistPath), and none loaded") }
        if exists { try FileManager.default.removeItem(atPath: plistPath) }
        return [
            unload.status == 0 ? "unloaded \(Self.label) from \(domain)" : "\(Self.label) was not loaded",
            exists ? "removed \(plistPath)" : "no plist at \(plistPath)",
        ]
    }

    private func launchctl(_ arguments: [String]) async throws -> ProcessResult {
        do {
            return try await runner.run(launchctl, arguments, input: nil, timeout: 30)
        } catch {
            throw CLIError.failure("cannot run \(launchctl): \(error)")
        }
    }
}
