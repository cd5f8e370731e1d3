import Foundation
import ReplCore
import Testing

/// Admission as a pure policy (#21): which machine actions go now, and what a failure leads to.
struct AdmissionTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let spec = Spec(distro: "ubuntu", version: "noble", arch: "arm64")

    func create(_ machine: MachineName) -> [Action] { [.create(run: 1, instance: 1, machine: machine, spec: .orbstack(spec))] }
    func delete(_ machine: MachineName) -> [Action] { [.delete(machine: machine, reason: .orphan)] }

    @Test func backoffDoublesFromTwoSecondsToFiveMinutes() {
        var b: Backoff?
        var delays: [TimeInterval] = []
        for _ in 0..<10 {
            b = Admission.backoff(after: b, error: "boom", now: now)
            delays.append(b!.nextAttempt.timeIntervalSince(now))
        }
        #expect(delays == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300])
        #expect(b?.attempts == 10 && b?.lastError == "boom")
    }

    @Test func theBreakerCoolsDownLongerWithEachTripToTenMinutes() {
        var breaker = Breaker.closed
        var cooldowns: [TimeInterval] = []
        for _ in 0..<6 {
            breaker = Admission.trip(breaker, message: "missing IP address", now: now)
            cooldowns.append(breaker.openUntil!.timeIntervalSince(now))
        }
        #expect(cooldowns == [30, 60, 120, 240, 480, 600])
        #expect(breaker.trippedAt == now && breaker.failures == 6)
    }

    @Test func aMachineBackingOffWaitsAndOthersGo() {
        let backoff = Backoff(attempts: 1, nextAttempt: now.addingTimeInterval(2), lastError: "boom")
        let admission = Admission(backoffs: ["repl-ab12cd-1-a": backoff], breaker: .closed)
        #expect(
            admission.admit([create("repl-ab12cd-1-a"), create("repl-ab12cd-1-b"), delete("repl-ab12cd-1-a")], now: now)
                == [.defer("retrying after 3 s: boom"), .run, .defer("retrying after 3 s: boom")])
        // Once its time has come, it goes.
        #expect(admission.admit([create("repl-ab12cd-1-a")], now: now.addingTimeInterval(2)) == [.run])
    }

    @Test func anOpenBreakerHoldsBackOnlyWhatTakesAnAddress() {
        let admission = Admission(backoffs: [:], breaker: Admission.trip(.closed, message: "x", now: now))
        let verdicts = admission.admit(
            [create("repl-ab12cd-1-a"), delete("repl-ab12cd-1-b"), [.start(machine: "repl-ab12cd-1-c")], [.stop(machine: "repl-ab12cd-1-d")]],
            now: now)
        #expect(verdicts.map { $0 == .run } == [false, true, false, true])
        if case .defer(let why) = verdicts[0] { #expect(why.hasPrefix("circuit breaker open")) } else { Issue.record("not deferred") }
    }

    /// EC2's capacity is short per instance type and zone: each has its breaker, and
    /// OrbStack's address pool its own.
    @Test func eachCapacityScopeHasItsOwnBreaker() {
        let short = AWSSpec(instanceType: "m5.large", image: .ami("ami-12345678"), zone: "us-east-1a")
        let elsewhere = AWSSpec(instanceType: "m5.large", image: .ami("ami-12345678"), zone: "us-east-1b")
        let other = AWSSpec(instanceType: "t3.micro", image: .ami("ami-12345678"), zone: "us-east-1a")
        func launch(_ m: MachineName, _ s: AWSSpec) -> [Action] { [.create(run: 1, instance: 1, machine: m, spec: .aws(s))] }
        #expect(short.capacityScope == "m5.large in us-east-1a")
        let admission = Admission(backoffs: [:], breakers: [short.capacityScope: Admission.trip(.closed, message: "x", now: now)])
        let verdicts = admission.admit(
            [launch("repl-ab12cd-1-a", short), launch("repl-ab12cd-1-b", other), launch("repl-ab12cd-1-c", elsewhere), create("repl-ab12cd-1-d")],
            now: now)
        #expect(verdicts.map { $0 == .run } == [false, true, true, true])
        if case .defer(let why) = verdicts[0] { #expect(why.hasPrefix("circuit breaker (m5.large in us-east-1a) open")) }
        // OrbStack's pool exhausted holds back no EC2 launch.
        let pool = Admission(backoffs: [:], breaker: Admission.trip(.closed, message: "x", now: now))
        #expect(pool.admit([launch("repl-ab12cd-1-a", short), create("repl-ab12cd-1-d")], now: now).map { $0 == .run } == [true, false])
    }

    /// Half-open: the first address-taking group goes, the rest wait; a group deferred by its
    /// backoff does not use the one try.
    @Test func aHalfOpenBreakerLetsOneCreateThrough() {
        let breaker = Admission.trip(.closed, message: "x", now: now.addingTimeInterval(-31))
        let backoff = Backoff(attempts: 1, nextAttempt: now.addingTimeInterval(2), lastError: "boom")
        let admission = Admission(backoffs: ["repl-ab12cd-1-a": backoff], breaker: breaker)
        #expect(
            admission.admit([create("repl-ab12cd-1-a"), delete("repl-ab12cd-1-x"), create("repl-ab12cd-1-b"), create("repl-ab12cd-1-c")], now: now)
                == [.defer("retrying after 3 s: boom"), .run, .run, .defer("circuit breaker half-open: one create at a time")])
        #expect(Admission(backoffs: [:], breaker: .closed).admit([create("repl-ab12cd-1-b"), create("repl-ab12cd-1-c")], now: now) == [.run, .run])
    }

    /// `isRetryable` decides between a backoff and ending the tick; exhaustion is the breaker's.
    @Test func aFailureBacksOffEndsTheTickOrTripsTheBreaker() {
        let admission = Admission(backoffs: ["repl-ab12cd-1-m": Backoff(attempts: 2, nextAttempt: now, lastError: "old")], breaker: .closed)
        for kind in [ProviderError.Kind.timedOut, .failed, .malformedOutput, .alreadyExists, .notFound] {
            #expect(
                admission.reaction(to: ProviderError(kind, "boom"), machine: "repl-ab12cd-1-m", now: now)
                    == .backOff(Backoff(attempts: 3, nextAttempt: now.addingTimeInterval(8), lastError: ProviderError(kind, "boom").description)))
        }
        #expect(
            admission.reaction(to: ProviderError(.unavailable, "gone"), machine: "repl-ab12cd-1-m", now: now)
                == .endTick(ProviderError(.unavailable, "gone").description))
        #expect(admission.reaction(to: ProviderError(.addressExhausted, "missing IP address"), machine: "repl-ab12cd-1-m", now: now) == .exhaustion)
        #expect(admission.reaction(to: ProviderError(.heldBack, "later"), machine: "repl-ab12cd-1-m", now: now) == .none)
    }
}
