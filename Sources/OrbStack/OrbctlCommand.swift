import Foundation
import ReplCore
import ReplPlatform

/// How to invoke orbctl: directly, or as `mac orbctl` from inside an OrbStack machine.
public struct OrbctlCommand: Sendable, Equatable {
    public var executable: String
    public var prefix: [String]

    public init(executable: String, prefix: [String] = []) {
        self.executable = executable
        self.prefix = prefix
    }

    /// Where OrbStack puts `orbctl` besides PATH: `~/.orbstack/bin` when its admin setup is
    /// off, `/usr/local/bin` when it is on, and Homebrew's prefix. cron (`/usr/bin:/bin`) and
    /// launchd agents start with none of them on PATH.
    public static func installDirectories(home: String) -> [String] {
        [home + "/.orbstack/bin", "/usr/local/bin", "/opt/homebrew/bin"]
    }

    /// `orbctl` on PATH, else in OrbStack's install directories, else `mac orbctl` (inside a
    /// machine), else nil.
    public static func locate(
        path: String? = ProcessInfo.processInfo.environment["PATH"],
        fallbacks: [String] = installDirectories(home: NSHomeDirectory())
    ) -> OrbctlCommand? {
        if let orbctl = findExecutable("orbctl", path: path) { return OrbctlCommand(executable: orbctl) }
        if let orbctl = findExecutable("orbctl", path: fallbacks.joined(separator: ":")), !fallbacks.isEmpty {
            return OrbctlCommand(executable: orbctl)
        }
        if let mac = findExecutable("mac", path: path) { return OrbctlCommand(executable: mac, prefix: ["orbctl"]) }
        return nil
    }
}

/// The version `orbctl version` reports.
public struct OrbctlVersion: Sendable, Equatable, CustomStringConvertible {
    public var version: String
    public var number: Int
    public var description: String { version }

    /// Parses `Version: 2.2.3 (2020300)` from the command's output.
    public init?(output: String) {
        guard let match = output.firstMatch(of: /Version: ([0-9][0-9A-Za-z.+-]*) \(([0-9]+)\)/),
            let number = Int(match.output.2)
        else { return nil }
        version = String(match.output.1)
        self.number = number
    }
}

/// Bounded waits for each kind of call.
public struct OrbctlTimeouts: Sendable {
    public var quick: TimeInterval = 15  // version, list, info, probe
    public var create: TimeInterval = 180  // a first create downloads the image
    public var lifecycle: TimeInterval = 60  // start, stop, delete, clone
    public var command: TimeInterval = 60  // orbctl run for our own short scripts
    /// How long create waits for `info` to say running.
    public var running: TimeInterval = 90
    public init() {}
}
