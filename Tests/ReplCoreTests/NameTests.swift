import Foundation
import ReplTestSupport
import Testing

@testable import ReplCore

struct NameTests {
    @Test func formatMatchesTheConvention() {
        let cid = ControlID("ab12cd")!
        #expect(MachineName(controlID: cid, manifestID: RunID(35), instanceID: 36).description == "repl-ab12cd-z-10")
        #expect(MachineName(controlID: cid, manifestID: nil, instanceID: 1).description == "repl-ab12cd-none-1")
    }

    @Test(arguments: [
        "repl-ab12cd-1-2", "repl-ab12cd-none-z", "repl-000000-0-0", "repl-zzzzzz-3w5e11264sgsf-3w5e11264sgsf",
    ])
    func parsesOurNames(_ name: String) throws {
        let parsed = try #require(MachineName(parsing: name))
        #expect(parsed.description == name)
    }

    @Test(arguments: [
        "repl-AB12CD-1-2", "repl-ab12c-1-2", "repl-ab12cde-1-2", "repl-ab12cd-1", "repl-ab12cd-1-2-3",
        "repl-ab12cd--2", "repl-ab12cd-1-", "repl-ab12cd-01-2", "repl-ab12cd-1-02", "ubuntu", "repl",
        "repl-ab12cd-1-2 ", " repl-ab12cd-1-2", "xrepl-ab12cd-1-2", "repl-ab12cd-1_2-3", "repl-ab12cd-NONE-1",
        "repl-ab12cd-1-zzzzzzzzzzzzzzzz", "repl-ab12cd-é-1",
    ])
    func rejectsEverythingElse(_ name: String) {
        #expect(MachineName(parsing: name) == nil)
    }

    /// Property: format then parse is the identity, for 5,000 random names.
    @Test func namesRoundTrip() throws {
        var rng = SeededGenerator(seed: 42)
        for _ in 0..<5_000 {
            let cid = ControlID.generate(using: &rng)
            let manifest: UInt64? =
                Bool.random(using: &rng) ? nil : UInt64.random(in: 0...UInt64.max, using: &rng) >> UInt64.random(in: 0...63, using: &rng)
            let instance = UInt64.random(in: 0...UInt64.max, using: &rng) >> UInt64.random(in: 0...63, using: &rng)
            let name = MachineName(controlID: cid, manifestID: manifest, instanceID: InstanceID(instance))
            let parsed = try #require(MachineName(parsing: name.description))
            #expect(parsed == name)
            // And the pattern of DESIGN.md section 3 agrees with the parser.
            #expect(name.description.wholeMatch(of: /repl-([0-9a-z]{6})-([0-9a-z]+|none)-([0-9a-z]+)/) != nil)
        }
    }

    @Test func controlIDsAreSixBase36Characters() {
        var seen = Set<String>()
        for _ in 0..<200 {
            let id = ControlID.generate()
            #expect(id.rawValue.count == 6)
            #expect(id.rawValue.allSatisfy { Base36.alphabet.contains($0) })
            seen.insert(id.rawValue)
        }
        #expect(seen.count > 190)  // random, not a constant
    }

    @Test func ulidCarriesTheCreationTime() throws {
        // 01ARZ3NDEK, the ULID specification's example, is 1469922850259 ms (2016-07-30).
        let date = try #require(ULID.timestamp(of: "01ARZ3NDEKTSV4RRFFQ69G5FAV"))
        #expect(date.timeIntervalSince1970 * 1000 == 1_469_922_850_259)
        #expect(ULID.timestamp(of: "not-a-ulid") == nil)
        #expect(ULID.timestamp(of: "01ARZ3NDEKTSV4RRFFQ69G5FA!") == nil)
        var rng = SeededGenerator(seed: 7)
        let now = Date(timeIntervalSince1970: 1_790_000_000.123)
        let id = ULID.make(at: now, using: &rng)
        #expect(id.count == 26)
        #expect(try #require(ULID.timestamp(of: id)).timeIntervalSince1970 == 1_790_000_000.123)
    }
}

/// A small deterministic generator (SplitMix64) so property tests are repeatable.
