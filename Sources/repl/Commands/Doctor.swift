import ArgumentParser
import Foundation
import ReplCore
import ReplStore

struct Doctor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check orbctl, the state store, the lease, the circuit breaker and the machines.",
        discussion: "Example: repl doctor")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let context = Context(global)
        let provider = try await context.provider()
        let store = try context.store()
        let cid = try store.controlID()
        let lease = try store.leaseHolder()
        let breaker = try store.breaker()
        var counts: [String: Int] = [:]
        var listError: String?
        let controller = try await context.controller { $0.dryRun = true }
        let report = await controller.tick()
        if let e = report.observationError { listError = e }
        for m in report.plan?.machines ?? [] { counts[m.machineClass.rawValue, default: 0] += 1 }
        let caps = provider.capabilities.table
        if context.json {
            context.printJSON([
                "orbctl": context.orbctlDescription, "orbctlVersion": context.orbctlVersion?.version as Any,
                "store": store.path, "schema": Store.schemaVersion, "controlId": cid.rawValue,
                "lease": lease.map { ["holder": $0.holder, "pid": Int($0.pid)] } as Any,
                "breaker": ["open": breaker.isOpen(at: Date()), "failures": breaker.failures, "message": breaker.message as Any],
                "machines": counts, "listError": listError as Any,
                "capabilities": Dictionary(uniqueKeysWithValues: caps.map { ($0.0, $0.1) }),
            ])
            return
        }
        print("orbctl:        \(context.orbctlDescription) (version \(context.orbctlVersion?.version ?? "?"))")
        print("state store:   \(store.path) (schema \(Store.schemaVersion))")
        print("control id:    \(cid)")
        print("lease:         \(lease.map { "held by \($0)" } ?? "free")")
        if breaker.isOpen(at: Date()) {
            print("breaker:       OPEN until \(breaker.openUntil!): \(breaker.message ?? ""); \(ProviderError.resetAdvice)")
        } else {
            print("breaker:       closed")
        }
        if let listError { print("machines:      cannot list: \(listError)") } else {
            print("machines:      " + ["owned", "orphan", "whitelisted", "foreign", "unmanaged"].map { "\(counts[$0] ?? 0) \($0)" }.joined(separator: ", "))
        }
        print("provider:      orbstack: " + caps.map { "\($0.0) \($0.1 ? "yes" : "no")" }.joined(separator: ", "))
    }
}
