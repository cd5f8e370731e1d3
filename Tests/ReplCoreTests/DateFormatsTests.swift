import Foundation
import ReplCore
import Testing

/// Dates for machines and files do not follow the user's locale, calendar or clock style.
struct DateFormatsTests {
    static let newYearsEve = Date(timeIntervalSince1970: 1_798_675_200)  // 2026-12-31T00:00:00Z

    @Test(arguments: [
        "2026-12-31", "2026-12-31T00:00:00Z", "2026-12-31T09:00:00+09:00", "2026-12-31T00:00:00.000Z",
        "2026-12-31T00:00:00",
    ])
    func theSameDayWhateverTheSpelling(_ text: String) {
        #expect(DateFormats.parse(text) == Self.newYearsEve)
    }

    @Test(arguments: ["31/12/2026", "2026-13-01", "tomorrow", "", "2026-12-31T25:00:00Z"])
    func notADate(_ text: String) {
        #expect(DateFormats.parse(text) == nil)
    }

    @Test func printsUTCWithSeconds() {
        #expect(DateFormats.iso8601(Self.newYearsEve.addingTimeInterval(13 * 3600 + 5 * 60 + 9)) == "2026-12-31T13:05:09Z")
        // Seconds are cut, never rounded up into the next one; any year reads back.
        #expect(DateFormats.iso8601(Self.newYearsEve.addingTimeInterval(59.9)) == "2026-12-31T00:00:59Z")
        #expect(DateFormats.iso8601(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00Z")
        for date in [Self.newYearsEve, Date(timeIntervalSince1970: 4_102_444_800.5), Date(timeIntervalSince1970: 1)] {
            #expect(DateFormats.parse(DateFormats.iso8601(date)) == Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down)))
        }
    }

    @Test func theClockIsAlways24Hour() {
        let afternoon = Self.newYearsEve.addingTimeInterval(13 * 3600 + 5 * 60 + 9)
        #expect(DateFormats.clock(afternoon, timeZone: TimeZone(identifier: "UTC")!) == "13:05:09")
        #expect(DateFormats.clock(afternoon, timeZone: TimeZone(identifier: "Asia/Tokyo")!) == "22:05:09")
    }

    /// Why the locale and calendar are fixed: a formatter that follows a Thai user's settings
    /// reads the same text as a Buddhist-era year, 543 years earlier.
    @Test func aFormatterThatFollowsTheUserMisreadsTheYear() throws {
        let user = DateFormatter()  // portability: allowed, it shows the mistake
        user.locale = Locale(identifier: "th_TH")
        user.calendar = Calendar(identifier: .buddhist)
        user.timeZone = TimeZone(identifier: "UTC")
        user.dateFormat = "yyyy-MM-dd"
        let misread = try #require(user.date(from: "2026-12-31"))
        #expect(misread != Self.newYearsEve)
        let fixed = DateFormats.fixed("yyyy-MM-dd", timeZone: TimeZone(identifier: "UTC")!)
        #expect(fixed.locale.identifier == "en_US_POSIX" && fixed.calendar.identifier == .gregorian)
        #expect(fixed.date(from: "2026-12-31") == Self.newYearsEve)
    }
}
