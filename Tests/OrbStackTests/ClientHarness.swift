import Foundation
import ReplCore
import ReplPlatform
import ReplTestSupport
import Testing

@testable import OrbSim
@testable import OrbStack

/// How the contract suite reaches the emulator.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case binary, inProcess
    var testDescription: String { rawValue }
    /// Against a real orbctl (`ORBCTL_CONFORMANCE`) there is no in-process twin.
    static var available: [Backend] { Conformance.isReal ? [.binary] : allCases }
}

/// A fresh emulator and a client over it.
final class ClientHarness: @unchecked Sendable {
    let emulator: EmulatorHome
    var orbctl: String { emulator.orbctl }
    var environment: [String: String] { emulator.environment }
    let client: OrbctlClient
    let provider: OrbStackProvider

    init(_ backend: Backend = .binary) throws {
        emulator = try EmulatorHome(prefix: "orbstack-test")
        let env = emulator.environment
        let runner: any ProcessRunner =
            backend == .binary
            ? SystemProcessRunner(environment: env)
            : InProcessRunner(home: emulator.simDirectory, environment: env)
        var client = OrbctlClient(command: OrbctlCommand(executable: emulator.orbctl), runner: runner)
        client.deleteGrace = 0.01
        client.pollInterval = 0.02
        self.client = client
        provider = OrbStackProvider(client: client)
    }

    deinit { emulator.remove() }

    /// Runs the emulator binary (or the real orbctl) directly (admin commands, checks).
    @discardableResult
    func sim(_ args: [String]) async throws -> ProcessResult { try await emulator.sim(args, timeout: 30) }

    /// The machine name a test's short name stands for: a repl machine name (its own
    /// `repl-cnform-<token>-…` against a real orbctl).
    func n(_ short: String) -> String {
        if Conformance.isReal || short.hasPrefix(MachineName.prefix) { return emulator.name(short) }
        return Conformance.namePrefix + "t-" + short
    }

    /// The same, as the provider takes it.
    func m(_ short: String) -> MachineName {
        guard let name = MachineName(parsing: n(short)) else { preconditionFailure("\(n(short)) is not a repl machine name") }
        return name
    }

    /// Only this test's machines (against a real orbctl, the user's others are there too).
    func own(_ machines: [ObservedMachine]) -> [ObservedMachine] {
        Conformance.isReal ? machines.filter { $0.name.hasPrefix(emulator.name("")) } : machines
    }

    func state(_ name: String) async throws -> String? {
        let list = try OrbctlClient.decodeList(try await sim(["list", "-f", "json"]).stdout)
        return list.first { $0.name == name }?.state.description
    }
}
