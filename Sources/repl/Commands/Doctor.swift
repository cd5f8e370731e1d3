import AWS
import ArgumentParser
import Foundation
import ReplCore
import ReplStore

struct Doctor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check orbctl, the state store, the lease, the circuit breaker and the machines.",
        discussion: """
            Reports everything it can, even when a part is broken, and exits 0 when all is well, \
            1 when something needs attention (the circuit breaker open, the store unusable, the \
            machines not listable), 3 when orbctl cannot be used.
            Example: repl doctor --json
            """)
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let context = Context(global)
        var problems: [String] = []
        var orbctlUnusable = false
        // orbctl first, then the store: each reported whatever became of the other.
        var providerError: String?
        // A state directory of `provider: aws` runs is checked against AWS, not orbctl.
        let onAWS = context.hasStore && (try? context.store().provider().name) == "aws"
        var aws: AWSProvider?
        if onAWS {
            do {
                aws = try await context.engine() as? AWSProvider
            } catch {
                providerError = (error as? CLIError)?.description ?? "\(error)"
                orbctlUnusable = true
                problems.append("aws: \(providerError!)")
            }
            // EC2 that does not answer, or refuses the credentials, cannot be used as configured
            // (3), as an orbctl that cannot run; a list that fails otherwise needs attention (1).
            if let aws {
                do throws(ProviderError) {
                    _ = try await aws.list()
                } catch  where error.kind == .timedOut || error.kind == .denied {
                    orbctlUnusable = true
                    problems.append(
                        "aws: cannot \(error.kind == .denied ? "use the credentials at" : "reach") \(aws.ec2.api.endpoint.absoluteString): \(error.message)"
                    )
                } catch {}
                // The status channel: a bucket S3 will not answer for means no status moves.
                if !orbctlUnusable {
                    do throws(AWSError) {
                        try await aws.channel.s3.headBucket(aws.channel.bucket)
                    } catch  where error.status == 404 && ((try? context.store().runs(includeDeleted: false)) ?? []).isEmpty {
                        // Made at the first create; with runs recorded it was deleted.
                    } catch {
                        problems.append("bucket \(aws.channel.bucket) (the status channel) cannot be used: \(error.description)")
                    }
                }
            }
        } else {
            do {
                _ = try await context.provider()
                // The emulator where it cannot run machine commands: apply and run refuse (exit 3).
                try context.requireRunnableEmulator()
            } catch {
                providerError = (error as? CLIError)?.description ?? "\(error)"
                orbctlUnusable = true
                problems.append("orbctl: \(providerError!)")
            }
        }
        var store: Store?
        var storeError: String?
        do { store = try context.store() } catch {
            storeError = (error as? CLIError)?.description ?? "\(error)"
            problems.append("state store: \(storeError!)")
        }
        // Readable but not writable: no apply, sweep or watch can record anything (found by attacking).
        if let reason = store?.readOnlyReason { problems.append("state store: cannot be written: \(reason)") }
        // What cannot be read is a problem to show, never a "free" lease or a closed breaker.
        func read<T>(_ what: String, _ body: () throws -> T?) -> T? {
            do { return try body() } catch {
                problems.append("\(what): \(error)")
                return nil
            }
        }
        let cid = read("control id") { try store?.controlID() }
        let unreadBefore = problems.count
        let lease = read("lease") { try store?.leaseHolder() }
        // A lease that cannot be read is not "free" (found by attacking).
        let leaseUnread = problems.count > unreadBefore
        let breakers = read("circuit breaker") { try store?.breakers() }
        let breaker = breakers.map { $0[""] ?? .closed }
        let breakerOpen = breaker?.isOpen(at: Date()) == true
        // Each open breaker: OrbStack's address pool, or an EC2 instance type in a zone.
        let open = (breakers ?? [:]).filter { $0.value.isOpen(at: Date()) }.sorted { $0.key < $1.key }
        for (scope, b) in open { problems.append("\(Admission.name(scope)) open until \(b.openUntil!): \(b.message ?? "")") }
        let counts = try await machines(context, store: store, problems: &problems)
        let caps = (try? await (onAWS ? context.engine() : context.provider()).capabilities.table) ?? []
        let awsReport: [String: Any]? = aws.map {
            [
                "region": $0.ec2.api.signer.region, "endpoint": $0.ec2.api.endpoint.absoluteString, "bucket": $0.channel.bucket,
                "credentials": Self.credentialSource(context.environment),
            ]
        }
        if context.json {
            context.printJSON([
                "schemaVersion": 1, "repl": Repl.version,
                "orbctl": onAWS
                    ? NSNull()
                    : ["path": context.orbctlDescription, "version": context.orbctlVersion?.version as Any, "error": providerError as Any]
                        as [String: Any] as Any,
                "aws": onAWS ? (awsReport ?? ["error": providerError as Any]) as Any : NSNull(),
                "store": [
                    "path": context.stateDirectory.appendingPathComponent("state.db").path, "schema": Store.schemaVersion,
                    "readOnly": store?.readOnlyReason as Any, "error": storeError as Any,
                ] as [String: Any],
                "controlId": cid?.rawValue as Any,
                "lease": lease.map { ["holder": $0.holder, "pid": Int($0.pid), "expiresAt": DateFormats.iso8601($0.expiresAt)] } as Any,
                "breaker": breaker.map {
                    [
                        "open": breakerOpen, "failures": $0.failures, "message": $0.message as Any,
                        "openUntil": $0.openUntil.map(DateFormats.iso8601) as Any,
                    ] as [String: Any]
                } as Any,
                "breakers": (breakers ?? [:]).sorted { $0.key < $1.key }.map { scope, b in
                    [
                        "scope": scope, "open": b.isOpen(at: Date()), "failures": b.failures, "message": b.message as Any,
                        "openUntil": b.openUntil.map(DateFormats.iso8601) as Any,
                    ] as [String: Any]
                },
                "machines": counts.byClass, "listError": counts.error as Any,
                "capabilities": Dictionary(uniqueKeysWithValues: caps.map { ($0.0, $0.1) }),
                "problems": problems, "ok": problems.isEmpty,
            ])
        } else {
            // What orbctl and the store said is shown, never interpreted by the terminal.
            func line(_ text: String) { print(Console.visible(text)) }
            line("repl:          \(Repl.version)")
            if let aws {
                line("aws:           region \(aws.ec2.api.signer.region), endpoint \(aws.ec2.api.endpoint.absoluteString)")
                line("credentials:   \(Self.credentialSource(context.environment))")
                line("bucket:        \(aws.channel.bucket) (made at the first create; its objects expire after \(aws.channel.expireAfterDays) days)")
                line(
                    "quotas:        EC2 caps running vCPUs per instance family: a VcpuLimitExceeded opens the breaker; ask for more in the Service Quotas console"
                )
            } else if onAWS {
                line("aws:           UNUSABLE: \(providerError ?? "?")")
            } else {
                line(
                    "orbctl:        "
                        + (providerError.map { "UNUSABLE: \($0)" }
                            ?? "\(context.orbctlDescription) (version \(context.orbctlVersion?.version ?? "?"))"))
            }
            line(
                "state store:   "
                    + (storeError.map { "UNUSABLE: \($0)" }
                        ?? "\(store!.path) (schema \(Store.schemaVersion))\(store!.readOnlyReason.map { "; cannot be written: \($0)" } ?? "")"))
            line("control id:    \(cid.map(\.rawValue) ?? "-")")
            line("lease:         \(store == nil ? "-" : leaseUnread ? "cannot be read" : lease.map { "held by \($0)" } ?? "free")")
            for (scope, b) in open {
                line(
                    "breaker:       OPEN\(scope.isEmpty ? "" : " for \(scope)") until \(b.openUntil!): \(b.message ?? "")"
                        + (onAWS ? "" : "; \(ProviderError.resetAdvice)"))
            }
            if open.isEmpty { line("breaker:       \(breaker == nil ? "-" : "closed")") }
            if let e = counts.error {
                line("machines:      cannot list: \(e)")
            } else if providerError != nil {
                line("machines:      -")
            } else if let listed = counts.byClass["listed"] {
                line("machines:      \(listed) listed (sorting them into ours and others needs the store)")
            } else {
                line(
                    "machines:      "
                        + ["owned", "orphan", "whitelisted", "foreign", "unmanaged"].map { "\(counts.byClass[$0] ?? 0) \($0)" }.joined(
                            separator: ", "))
            }
            if !caps.isEmpty {
                line("provider:      \(onAWS ? "aws" : "orbstack"): " + caps.map { "\($0.0) \($0.1 ? "yes" : "no")" }.joined(separator: ", "))
            }
            line(problems.isEmpty ? "all well" : "needs attention: " + problems.joined(separator: "; "))
        }
        if orbctlUnusable { throw CommandExit(code: 3) }
        if !problems.isEmpty { throw CommandExit(code: 1) }
    }

    /// Where AWS's credentials come from, as AWS's own tools would take them.
    static func credentialSource(_ environment: [String: String]) -> String {
        if environment["AWS_ACCESS_KEY_ID"].map({ !$0.isEmpty }) == true {
            return "AWS_ACCESS_KEY_ID in the environment\(environment["AWS_SESSION_TOKEN"].map { $0.isEmpty ? "" : " (with a session token)" } ?? "")"
        }
        let profile = [environment["AWS_PROFILE"], environment["AWS_DEFAULT_PROFILE"]].compactMap { $0 }.first { !$0.isEmpty } ?? "default"
        return "profile \(profile) (~/.aws/credentials, ~/.aws/config, or its credential_process)"
    }

    /// The machines by class, through a dry-run tick (one `orbctl list`); without a store, only
    /// whether they can be listed.
    func machines(_ context: Context, store: Store?, problems: inout [String]) async throws -> (byClass: [String: Int], error: String?) {
        let onAWS = context.hasStore && (try? context.store().provider().name) == "aws"
        guard let provider = try? await (onAWS ? context.engine() : context.provider()) else { return ([:], nil) }
        guard store != nil, let controller = try? await context.controller(settings: { $0.dryRun = true }) else {
            do {
                let listed = try await provider.list()
                return (["listed": listed.count], nil)
            } catch {
                problems.append("machines: cannot list: \(error.description)")
                return ([:], error.description)
            }
        }
        let report = await controller.tick()
        if let e = report.observationError {
            problems.append("machines: cannot list: \(e)")
            return ([:], e)
        }
        var counts: [String: Int] = [:]
        for m in report.plan?.machines ?? [] { counts[m.machineClass.rawValue, default: 0] += 1 }
        return (counts, nil)
    }
}
