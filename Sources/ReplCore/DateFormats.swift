import Foundation

/// Every date repl parses or prints, in one place, each with a fixed locale (`en_US_POSIX`),
/// the Gregorian calendar and an explicit time zone. A formatter that follows the user's
/// settings reads `2026-12-31` as a Buddhist or Japanese-era year, and turns `HH` into a
/// 12-hour clock where the user forces one; the portability check refuses
/// `DateFormatter()` anywhere else.
public enum DateFormats {
    /// A formatter for `format`, immune to the user's locale, calendar and clock settings.
    public static func fixed(_ format: String, timeZone: TimeZone) -> DateFormatter {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.calendar = Calendar(identifier: .gregorian)
        formatter.timeZone = timeZone
        formatter.dateFormat = format
        return formatter
    }

    private static let utc = TimeZone(identifier: "UTC")!
    // Formatters are expensive to make and safe to share for formatting and parsing.
    nonisolated(unsafe) private static let isoSeconds = fixed("yyyy-MM-dd'T'HH:mm:ssXXXXX", timeZone: utc)
    nonisolated(unsafe) private static let isoFraction = fixed("yyyy-MM-dd'T'HH:mm:ss.SSSXXXXX", timeZone: utc)
    nonisolated(unsafe) private static let isoNoZone = fixed("yyyy-MM-dd'T'HH:mm:ss", timeZone: utc)
    nonisolated(unsafe) private static let day = fixed("yyyy-MM-dd", timeZone: utc)

    /// `2026-12-31T08:05:09Z`: for JSON and files. Through `ISO8601FormatStyle`, which is fixed
    /// by its definition and needs no ICU (the first `DateFormatter` of a process loads ICU's
    /// data: a twentieth of `run list --json` with 1,000 runs).
    public static func iso8601(_ date: Date) -> String { date.formatted(isoStyle) }

    private static let isoStyle = Date.ISO8601FormatStyle(timeZone: utc)

    /// An ISO 8601 time (with a zone, fractional seconds allowed; none means UTC) or a day
    /// (`2026-12-31`, midnight UTC). Nil when it is neither.
    public static func parse(_ text: String) -> Date? {
        let text = text.trimmingCharacters(in: .whitespaces)
        for formatter in [isoSeconds, isoFraction, isoNoZone, day] {
            if let date = formatter.date(from: text) { return date }
        }
        return nil
    }

    /// `13:05:09` in `timeZone` (the user's own by default), always on a 24-hour clock:
    /// the time stamp of watch lines.
    public static func clock(_ date: Date, timeZone: TimeZone = .current) -> String {
        let formatter = timeZone == .current ? localClock : fixed("HH:mm:ss", timeZone: timeZone)
        return formatter.string(from: date)
    }

    nonisolated(unsafe) private static let localClock = fixed("HH:mm:ss", timeZone: .current)
}
