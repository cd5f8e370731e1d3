import Foundation
import ReplPlatform
import Testing

/// `ORBCTL_CONFORMANCE=/path/to/orbctl`: the emulator's conformance suite and the client's
/// contract suite run against that orbctl instead (OrbStack's own, on a Mac), so that every
/// fact the emulator models is checked against the real thing. Tests that check the emulator
/// itself (its `admin` commands, its internals) are skipped there. Every machine made is named
/// `repl-cnform-<token>-…` and deleted after its test; nothing else is touched.
public enum Conformance {
    /// The real orbctl under test, or nil (the emulator).
    public static let realOrbctl: String? = {
        guard let path = ProcessInfo.processInfo.environment["ORBCTL_CONFORMANCE"], !path.isEmpty else { return nil }
        return path
    }()

    public static var isReal: Bool { realOrbctl != nil }

    /// The prefix of every machine a conformance run makes: names of the reserved control id
    /// `cnform`, so that they parse as repl machine names (the provider takes nothing else). An
    /// installation draws that id with odds of 1 in 36^6.
    public static let namePrefix = "repl-cnform-"

    /// Test machine names (`m1`, `src`, …) map to `repl-cnform-<token>-NAME` against a real
    /// orbctl, and to themselves against the emulator.
    public static func machineName(_ short: String, token: String) -> String {
        guard isReal, !short.hasPrefix(namePrefix) else { return short }
        return namePrefix + token + "-" + short
    }

    /// A token for one test's machines.
    public static func newToken() -> String {
        // Canonical base 36 (no leading zero): it is the names' manifest id.
        String("abcdefghijklmnopqrstuvwxyz".randomElement()!)
            + String((0..<5).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
    }

    /// Deletes every machine named with `prefix` (by name, with `delete -f`: by id crashes
    /// OrbStack 2.2.3), in the background: it is called from a `deinit`, which must not
    /// block a thread of the cooperative pool on async work. What a killed run leaves behind
    /// is deleted by the next run (`sweepEarlierRuns`).
    public static func deleteMachines(named prefix: String, orbctl: String, environment: [String: String]) {
        guard prefix.hasPrefix(namePrefix), prefix.count > namePrefix.count else { return }
        Task.detached { await delete(where: { $0.hasPrefix(prefix) }, orbctl: orbctl, environment: environment) }
    }

    static func delete(
        where chosen: @Sendable (String) -> Bool, orbctl: String, environment: [String: String],
        createdBefore: Date? = nil
    ) async {
        guard
            let list = try? await SystemProcessRunner.run(
                orbctl, ["list", "-f", "json"], input: nil, timeout: 60,
                environment: environment, limit: 1 << 22),
            let records = try? JSONSerialization.jsonObject(with: list.stdout) as? [[String: Any]]
        else { return }
        for record in records {
            guard let name = record["name"] as? String, name.hasPrefix(namePrefix), chosen(name) else { continue }
            if let createdBefore, let created = ulidTime(record["id"] as? String ?? ""), created >= createdBefore { continue }
            _ = try? await SystemProcessRunner.run(
                orbctl, ["delete", "-f", name], input: nil, timeout: 120,
                environment: environment, limit: 1 << 20)
        }
    }

    /// Machines of earlier conformance runs (created before this process started) are deleted
    /// before this run makes any: a killed run leaves nothing for long.
    public static func sweepEarlierRuns(orbctl: String, environment: [String: String]) async {
        await delete(where: { _ in true }, orbctl: orbctl, environment: environment, createdBefore: processStart)
    }

    static let processStart = Date()

    /// Starts `sweepEarlierRuns` once, at the first test machine of this process.
    public static func sweepOnce(orbctl: String, environment: [String: String]) {
        lock.withLock {
            guard !swept else { return }
            swept = true
            _ = processStart
            Task.detached { await sweepEarlierRuns(orbctl: orbctl, environment: environment) }
        }
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var swept = false

    /// The creation time a ULID carries in its first 10 characters (Crockford base 32, ms).
    static func ulidTime(_ id: String) -> Date? {
        let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
        guard id.count >= 10 else { return nil }
        var ms: UInt64 = 0
        for c in id.uppercased().prefix(10) {
            guard let digit = alphabet.firstIndex(of: c) else { return nil }
            ms = ms * 32 + UInt64(digit)
        }
        return Date(timeIntervalSince1970: Double(ms) / 1000)
    }
}

extension Trait where Self == ConditionTrait {
    /// The test checks the emulator itself (admin commands, fault injection, its internals):
    /// skipped when the suite runs against a real orbctl.
    public static var emulatorOnly: Self {
        .enabled(if: !Conformance.isReal, "checks the emulator itself, not OrbStack (ORBCTL_CONFORMANCE is set)")
    }

}

extension Trait where Self == MachineCommands {
    /// The test runs commands inside machines: OrbStack always can; the emulator only on Linux as root.
    public static var machineCommands: Self { MachineCommands() }
}

/// Marks a test (or suite) that runs commands inside machines. Where the emulator cannot (a
/// Mac), the test is skipped. Where it can, only marked tests may: an emulator home made
/// outside a marked test refuses machine commands (`ORBSIM_NAMESPACES=0`, as on a Mac), so a
/// test that needs them without saying so fails in the one ordinary run instead of only on a Mac.
public struct MachineCommands: TestTrait, SuiteTrait, TestScoping {
    @TaskLocal public static var inScope = false

    private let condition = ConditionTrait.enabled(
        if: machineCommandsPossible, "runs machine commands, which the emulator does only on Linux as root")

    public var isRecursive: Bool { true }

    public func prepare(for test: Test) async throws { try await condition.prepare(for: test) }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        try await Self.$inScope.withValue(true) { try await function() }
    }
}
