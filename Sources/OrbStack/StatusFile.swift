import Foundation
import ReplCore

/// The run's status file, `/var/lib/repl/status` in the machine (and its mirror in the host
/// channel): line 1 `bootstrapping`, `running`, `exited CODE` or `timedout`, then `launched=`,
/// `started=` and `ended=` in epoch seconds. The wrapper writes it (``writer``, a shell
/// function); repl reads it (``read(_:)``). Anything in a machine can write it: the reader
/// believes only what the writer writes.
public enum StatusFile {
    public static let path = "/var/lib/repl/status"

    /// The wrapper's `status STATE` shell function: writes the file whole (a rename), from
    /// `$R` (the directory), `$T0` (launched), `$S` (started) and `$E` (ended).
    static let writer =
        "  { printf '%s\\nlaunched=%s\\n' \"$1\" \"$T0\"; [ -z \"$S\" ] || printf 'started=%s\\n' \"$S\"; [ -z \"$E\" ] || printf 'ended=%s\\n' \"$E\"; }"
        + " > \"$R/status.tmp\" && mv -f \"$R/status.tmp\" \"$R/status\""

    /// What a status file says: its state, and its times (`launched`, `started`, `ended`).
    public struct Contents: Equatable, Sendable {
        public var result: ProbeResult
        public var times: [String: TimeInterval]
    }

    public static func read(_ text: String) -> Contents {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let first = lines.isEmpty ? "" : String(lines.removeFirst())
        var times: [String: TimeInterval] = [:]
        for line in lines {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2, let value = TimeInterval(parts[1]) { times[String(parts[0])] = value }
        }
        return Contents(result: state(first.trimmingCharacters(in: .whitespacesAndNewlines)), times: times)
    }

    /// The first line's state.
    static func state(_ line: String) -> ProbeResult {
        switch line {
        case "bootstrapping": return .bootstrapping
        case "running": return .running
        case "timedout": return .timedOut
        default:
            // An exit code is what a shell's `$?` prints: 0 to 255, digits only (a `+0`, a
            // `-5` or a 256 was written by something else).
            let digits = line.dropFirst(7)
            if line.hasPrefix("exited "), (1...3).contains(digits.count), digits.allSatisfy({ $0.isASCII && $0.isNumber }),
                let code = Int(digits), code <= 255
            {
                return .exited(code)
            }
            return .unreadable("unexpected status \"\(line.prefix(40))\"")
        }
    }
}
