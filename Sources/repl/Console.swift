import Foundation

/// Writes to standard output and error with write(2). FileHandle's `write(_:)` traps when
/// the stream is closed or the disk is full (cron's `>> sweep.log`); here standard error
/// failing is ignored, and standard output failing is remembered: the command goes on (a
/// watch still releases its lease, an apply still records what it did) and repl then exits 1
/// with one line on standard error. Lost output is a failure, never a crash.
enum Console {
    /// Opens `/dev/null` on any of descriptors 0, 1 and 2 that is closed (`repl … >&-`), so that
    /// no file repl opens later (the state database) becomes its standard output.
    static func guardStandardDescriptors() {
        for fd: Int32 in 0...2 where fcntl(fd, F_GETFD) == -1 && errno == EBADF {
            let null = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY)
            if null >= 0 && null != fd {
                dup2(null, fd)
                close(null)
            }
        }
    }

    nonisolated(unsafe) private static var lost: Int32?

    static func out(_ text: String) {
        if !write(Array(text.utf8)[...], to: 1), lost == nil { lost = errno }
    }

    /// Bytes as they are (a command's output need not be UTF-8).
    static func out(_ data: Data) {
        if !write(Array(data)[...], to: 1), lost == nil { lost = errno }
    }

    /// Text on standard error, control characters made visible (`raw`: repl's own escapes, the status line).
    static func err(_ text: String, raw: Bool = false) {
        _ = write(Array((raw ? text : visible(text)).utf8)[...], to: 2)
    }

    /// Text from machines and orbctl (a reason, an error, a name in a message) shown, never
    /// interpreted: control characters other than newline and tab become `\x1B`-style escapes,
    /// so an escape sequence cannot move the cursor, retitle the terminal or hide a line. A
    /// command's own output (`--wait`, `logs`) is the one raw stream, written as bytes.
    static func visible(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if isControl(scalar) {
                out += String(format: scalar.value > 0xFF ? "\\u{%04X}" : "\\x%02X", scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Whether `text` holds a control character, a line break or tab included (what a crontab
    /// line cannot carry as it is).
    static func hasControlCharacter(_ text: String) -> Bool { text.unicodeScalars.contains { $0.properties.generalCategory == .control } }

    static func isControl(_ s: Unicode.Scalar) -> Bool {
        (s.value < 0x20 && s != "\n" && s != "\t") || (0x7F...0x9F).contains(s.value) || s.value == 0x2028 || s.value == 0x2029
            // Bidirectional overrides and isolates reorder what follows them on the terminal.
            || (0x202A...0x202E).contains(s.value) || (0x2066...0x2069).contains(s.value) || s.value == 0x200E || s.value == 0x200F
    }

    /// Flushes what `print` buffered; exits 1 when any output could not be written.
    static func finish() {
        if fflush(nil) != 0, lost == nil { lost = errno }
        if let lost { lostOutput(lost) }
    }

    private static func lostOutput(_ code: Int32) -> Never {
        let reason = String(cString: strerror(code))
        err("repl: cannot write to standard output (\(reason))\n")
        exit(1)
    }

    private static func write(_ bytes: ArraySlice<UInt8>, to fd: Int32) -> Bool {
        var bytes = bytes
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            bytes = bytes.dropFirst(n)
        }
        return true
    }
}
