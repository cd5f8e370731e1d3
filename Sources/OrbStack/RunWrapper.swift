import Foundation
import ReplCore

/// The script `repl` writes to `/var/lib/repl/run.sh` and launches detached, and the
/// launcher that starts it at most once per machine.
///
/// Every user-supplied text (command, bootstrap, env values, manifest) is embedded
/// base64-encoded and decoded inside the machine, never interpolated into shell code.
/// The wrapper runs the bootstrap as root (failures logged, not fatal), then the command
/// with its env, and keeps `/var/lib/repl/status`: line 1 `bootstrapping`, `running`,
/// `exited CODE` or `timedout`, then `launched=`, `started=`, `ended=` in epoch seconds.
/// With the host status channel (a directory of the Mac's, reached through `/mnt/mac`) it
/// mirrors the status there and writes both logs there, so the controller reads them
/// with no orbctl call; without it, logs stay in the machine (`run.log`, `/tmp/bootstrap.log`).
///
/// A watch loop (`switch.sh`, in a session of its own) is the deadline and the dead man's
/// switch: it ends the command at `launched + maxDuration`, powers the machine off
/// `deadlineMargin` later, and `hold + abandonedAfter` after the command ended when no
/// controller has deleted the machine. It reads `maxDuration` and `hold` from the channel's
/// `limits` file when there is one (the controller rewrites it when they change in place),
/// else from the copy made at launch. `poweroff` is called by name, through PATH.
public enum RunWrapper {
    public static let directory = "/var/lib/repl"
    public static let statusPath = StatusFile.path
    public static let logPath = "/var/lib/repl/run.log"
    public static let bootstrapLogPath = "/tmp/bootstrap.log"
    public static let manifestPath = ManifestCopy.path
    /// Seconds between a deadline's SIGTERM and SIGKILL to the command's session.
    public static let killGrace = 5
    /// Seconds between two looks of the watch loop (each one a heartbeat).
    public static let watchPeriod = 2
    /// A heartbeat older than this makes the controller ask whether the wrapper is gone.
    public static let heartbeatTimeout = 30

    static func b64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    public static func script(_ p: RunPayload) -> String {
        var lines: [String] = [
            "#!/bin/sh",
            "# Written by repl: runs one instance (bootstrap, command, status, deadline, dead man's switch).",
            "R=\(directory)",
            "H=$(cat \"$R/channel\" 2>/dev/null)",
            "T0=$(date +%s); S=; E=",
            "echo \"$T0\" > \"$R/t0\"",
            "decode() { printf '%s' \"$1\" | base64 -d; }",
            mirrorFunctions,
            // In the machine (the source of truth), then the watch loop is woken: it mirrors the
            // logs, then the status, to the host channel (so a final status there means the logs
            // there are whole).
            "status() {",
            StatusFile.writer,
            // (When the loop is gone, killed by the command, the wrapper copies them itself.)
            "  SP=; [ -s \"$R/switch.pid\" ] && read -r SP < \"$R/switch.pid\" && kill -USR1 \"$SP\" 2>/dev/null && return",
            "  [ -z \"$H\" ] || [ ! -s \"$R/switch.pid\" ] || mirror 2>/dev/null; true",
            "}",
            "SH=$(command -v bash || echo sh)",
            // The logs are written in the machine, always: removing the host channel (or /mnt/mac
            // going away) loses nothing; the watch loop copies them out.
            "LOG=\(logPath); BLOG=\(bootstrapLogPath)",
            "mkdir -p /etc/repl",
            "decode '\(b64(p.manifestYAML))' > \(manifestPath)",
            "printf '%s' '\(RunLimits.text(maxDuration: p.remaining, hold: p.hold))' > \"$R/limits\"",
            "status bootstrapping",
            "cat > \"$R/switch.sh\" <<'SWITCH'",
            watchLoop(margin: Int(max(1, p.deadlineMargin).rounded(.up)), abandoned: Int(max(1, p.abandonedAfter).rounded(.up))),
            "SWITCH",
            "setsid sh \"$R/switch.sh\" > /dev/null 2>&1 < /dev/null &",
        ]
        if p.waitForCloudInit {
            // User data (cloud-init) provisions first; the bootstrap builds on it. Its errors are
            // logged, not fatal, like the bootstrap's.
            lines.append(
                "cloud-init status --wait > \"$BLOG\" 2>&1 < /dev/null || "
                    + "echo \"repl: cloud-init reported errors (see /var/log/cloud-init-output.log); not fatal: the bootstrap and command still run\" >> \"$BLOG\""
            )
        }
        if let bootstrap = p.bootstrap {
            lines.append("decode '\(b64(bootstrap))' > \"$R/bootstrap.sh\"")
            lines.append(
                "(cd /root && \"$SH\" \"$R/bootstrap.sh\") >> \"$BLOG\" 2>&1 < /dev/null || "
                    + "echo \"repl: bootstrap exited $? (not fatal: the command still runs)\" >> \"$BLOG\"")
        }
        guard let command = p.command else {
            lines.append("status running")
            lines.append("")
            return lines.joined(separator: "\n")
        }
        // The env is set at the top of the command's own script, never in this one: a user's
        // PATH, R, T0 or SH cannot reach the wrapper's. Every value is decoded byte for byte (the
        // `x` keeps trailing newlines from `$(…)`) into the positional parameters (no name a
        // key could take) before any is set: a value such as LD_PRELOAD's would otherwise reach
        // the decoding of the ones after it. Keys are checked by the manifest parser:
        // [A-Za-z_][A-Za-z0-9_]*.
        var commandScript = ""
        let keys = p.env.keys.sorted()
        if !keys.isEmpty {
            commandScript += "set --"
            for key in keys { commandScript += " \"$(printf '%s' '\(b64(p.env[key]!))' | /usr/bin/base64 -d; printf x)\"" }
            commandScript += "\n"
            for (i, key) in keys.enumerated() { commandScript += "\(key)=${\(i + 1)%x}; export \(key)\n" }
            commandScript += "set --\n"
        }
        commandScript += command
        lines += [
            "decode '\(b64(commandScript))' > \"$R/command.sh\"",
            // A bootstrap that outlived the deadline leaves no time for the command.
            // (the channel's limits first: maxDuration may have changed in place meanwhile; T0 is
            // a whole second at or before the launch, so "past" is strictly more than MD after it)
            limitFunction,
            "MD=$(limit maxDuration)",
            "if [ -n \"$MD\" ] && [ \"$MD\" != none ] && [ $(($(date +%s) - T0)) -gt \"$MD\" ]; then printf '' > \"$R/timedout\"; E=$(date +%s); echo \"$E\" > \"$R/ended\"; status timedout; exit 0; fi",
            "S=$(date +%s)",
            "status running",
            // The command gets a session of its own (its pid is its group's id), so the watch loop
            // can end all of it at the deadline.
            "(cd /root && exec setsid \"$SH\" \"$R/command.sh\") > \"$LOG\" 2>&1 < /dev/null &",
            "echo $! > \"$R/cpid\"",
            "wait $!",
            "CODE=$?",
            "E=$(date +%s); echo \"$E\" > \"$R/ended\"",
            "if [ -e \"$R/timedout\" ]; then status timedout; else status \"exited $CODE\"; fi",
            "",
        ]
        return lines.joined(separator: "\n")
    }

    /// The watch loop's copy of the machine's logs and status to the host channel: the status
    /// is read first, the logs' new bytes appended (by offset, so a host copy that was removed
    /// is copied again whole), then that status written, so a final status on the host comes
    /// after the whole output. Builtins only, but `wc` (and `tail | head` when there is news).
    static let mirrorFunctions = """
        copyNew() {
          [ -f "$1" ] || return 0
          o=0; [ -f "$H/$2" ] && [ -s "$R/$3" ] && read -r o < "$R/$3"
          case "$o" in ''|*[!0-9]*) o=0 ;; esac
          m=$(wc -c < "$1"); m=${m##* }
          case "$m" in ''|*[!0-9]*) return 1 ;; esac
          [ "$m" -gt "$o" ] || { [ -f "$H/$2" ] || printf '' > "$H/$2"; return; }
          if [ "$o" -eq 0 ]; then printf '' > "$H/$2" || return 1; fi
          tail -c +$((o + 1)) "$1" | head -c $((m - o)) >> "$H/$2" && printf '%s\\n' "$m" > "$R/$3"
        }
        mirror() {
          SV=; while IFS= read -r l; do SV="$SV$l
        "; done < "$R/status"
          [ -d "$H" ] || return 1
          if [ -z "$BDONE" ]; then
            copyNew \(bootstrapLogPath) bootstrap.log mirrored.bootstrap || return 1
            # Read after the bootstrap ended: that copy was the last one needed.
            case "$SV" in bootstrapping*) ;; *) BDONE=1 ;; esac
          fi
          copyNew \(logPath) run.log mirrored.run || return 1
          if [ "$SV" != "$LAST" ] || [ ! -f "$H/status" ]; then
            printf '%s' "$SV" > "$H/status.tmp" && mv -f "$H/status.tmp" "$H/status" && LAST=$SV
          fi
        }
        """

    /// `limit NAME`: a value of the limits, from the channel's copy when there is one (the
    /// controller rewrites it when maxDuration or hold change in place), else the launch's.
    static let limitFunction = """
        limit() {
          f="$R/limits"; [ -n "$H" ] && [ -s "$H/limits" ] && f="$H/limits"
          v=; while IFS='=' read -r k x; do [ "$k" = "$1" ] && v=$x; done < "$f"; printf '%s' "$v"
        }
        """

    /// The watch loop: no user text, only numbers. It forks twice per look (`date`, `sleep`).
    static func watchLoop(margin: Int, abandoned: Int) -> String {
        """
        # The wrapper wakes this loop when its status changes (a trapped signal ends `wait`);
        # trapped before the pid is known, or the first signal would end the loop.
        trap : USR1
        R=\(directory)
        echo $$ > "$R/switch.pid"
        H=$(cat "$R/channel" 2>/dev/null)
        T0=$(cat "$R/t0")
        \(limitFunction)
        \(mirrorFunctions)
        while :; do
          NOW=$(date +%s); MD=$(limit maxDuration); HOLD=$(limit hold); FIRE=
          # The heartbeat: the wrapper (this loop) is alive. It stops when the machine restarts.
          printf '%s\\n' "$NOW" > "$R/alive"; [ -z "$H" ] || printf '%s\\n' "$NOW" > "$H/alive"
          [ -z "$H" ] || mirror
          case "$MD" in ''|*[!0-9]*) MD= ;; esac
          case "$HOLD" in ''|*[!0-9]*) HOLD=0 ;; esac
          if [ -n "$MD" ]; then
            FIRE=$((T0 + MD + \(margin)))
            if [ -s "$R/cpid" ] && [ ! -s "$R/ended" ] && [ "$NOW" -gt $((T0 + MD)) ]; then
              C=$(cat "$R/cpid"); printf '' > "$R/timedout"
              if [ "$NOW" -gt $((T0 + MD + \(killGrace))) ]; then kill -KILL -"$C"; else kill -TERM -"$C"; fi
            fi
          fi
          if [ -s "$R/ended" ]; then
            AFTER=$(($(cat "$R/ended") + HOLD + \(abandoned)))
            if [ -z "$FIRE" ] || [ "$AFTER" -lt "$FIRE" ]; then FIRE=$AFTER; fi
          fi
          if [ -n "$FIRE" ] && [ "$NOW" -ge "$FIRE" ]; then [ -z "$H" ] || mirror; poweroff; exit 0; fi
          sleep \(watchPeriod) & wait $!
        done 2>/dev/null
        """
    }

    /// The one `orbctl run` argv that installs the wrapper (sent base64 on stdin) and launches
    /// it detached, at most once per machine: `$1` is the machine's name, `$2` the host channel
    /// directory as the Mac names it (empty for none).
    ///
    /// Under a lock (`flock` on `.lock`, util-linux), a launcher that finds this machine's
    /// marker answers `already launched` and starts nothing. Otherwise it clears what a clone
    /// inherited from its source (markers, status, logs, manifest copy), installs the wrapper
    /// and starts it with the lock's descriptor: the wrapper itself makes the marker, then lets
    /// the lock go. A launcher killed before that leaves no marker and no wrapper, so the next
    /// one starts afresh; one killed after leaves a wrapper that will mark and run, and the
    /// next one waits for the lock and answers `already launched`.
    /// `hostRoot`: where the channel's path is reached in the machine (`/mnt/mac` on OrbStack;
    /// nothing in an EC2 instance, whose channel is a directory of its own).
    public static func launchArguments(machine: String, channel: String?, hostRoot: String = "/mnt/mac") -> [String] {
        let launcher = """
            set -e
            R=\(directory)
            mkdir -p "$R"
            exec 9>>"$R/.lock"
            flock 9
            if [ -d "$R/launched.$1" ]; then echo "already launched"; exit 0; fi
            for f in "$R"/* "$R"/.[!.]*; do [ "$f" = "$R/.lock" ] || rm -rf "$f"; done
            rm -rf /etc/repl \(bootstrapLogPath)
            base64 -d > "$R/run.sh.new"; chmod 700 "$R/run.sh.new"; mv -f "$R/run.sh.new" "$R/run.sh"
            H=
            if [ -n "$2" ] && [ -d "\(hostRoot)$2" ] && printf '' 2>/dev/null > "\(hostRoot)$2/run.log"; then H="\(hostRoot)$2"; fi
            printf '%s' "$H" > "$R/channel"
            echo bootstrapping > "$R/status"
            setsid sh -c 'mkdir "$0/launched.$1" || exit; [ -z "$2" ] || echo bootstrapping > "$2/status"; echo $$ > "$0/launched"; exec "$0/run.sh" 9>&-' "$R" "$1" "$H" > /dev/null 2>&1 < /dev/null &
            exec 9>&-
            i=0; while [ ! -s "$R/launched" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done
            [ -s "$R/launched" ] && echo "launched${H:+ with the host channel}"
            """
        return ["sh", "-c", launcher, "repl-launch", machine, channel ?? ""]
    }

    /// What a launch answered: started now, or found already started (by an earlier launch
    /// whose answer was lost).
    public enum LaunchAnswer: Equatable, Sendable {
        case launched, alreadyLaunched
        init?(_ stdout: String) {
            if stdout.contains("already launched") {
                self = .alreadyLaunched
            } else if stdout.contains("launched") {
                self = .launched
            } else {
                return nil
            }
        }
    }
}
