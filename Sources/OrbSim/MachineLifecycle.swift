import Foundation

/// A machine's lifecycle as a value: its state, when its current transition ends, and what
/// each request makes happen. Time is passed in and nothing is done here: the emulator
/// carries out the returned actions (lease, stop processes, wait). Transitions end lazily,
/// at `transitionAt`, with no daemon: `starting` becomes `running`, `stopping` `stopped`.
/// States are OrbStack's; there is no `error` state (a failed start falls back to `stopped`).
struct MachineLifecycle: Equatable {
    enum State: String, Equatable {
        case creating, starting, running, stopping, stopped, deleting
    }

    enum Action: Equatable {
        /// Lease an address (fails the request when the pool is exhausted).
        case leaseAddress
        /// Give the address back at once (a graceful stop).
        case releaseAddress
        /// Keep the address leased until it expires (a machine killed while running).
        case abandonAddress
        /// End the machine's processes: SIGTERM, then after `grace` seconds its init.
        case endProcesses(grace: TimeInterval)
        /// The request returns after this many seconds (a boot, a graceful stop).
        case wait(TimeInterval)
    }

    var stored: State
    var transitionAt: Date?

    func state(at now: Date) -> State {
        if let end = transitionAt, now >= end {
            switch stored {
            case .creating, .starting: return .running
            case .stopping: return .stopped
            default: break
            }
        }
        return stored
    }

    /// `start`: a no-op when running; waits out a boot in progress; else a boot.
    mutating func start(at now: Date, boot: TimeInterval) -> [Action] {
        switch state(at: now) {
        case .running: return []
        case .starting, .creating: return [.wait(max(0, (transitionAt ?? now).timeIntervalSince(now)))]
        default:
            stored = .starting
            transitionAt = now.addingTimeInterval(boot)
            return [.leaseAddress, .wait(boot)]
        }
    }

    /// `stop`: a no-op when stopped or stopping; else a graceful stop.
    mutating func stop(at now: Date, grace: TimeInterval) -> [Action] {
        switch state(at: now) {
        case .stopped, .stopping, .deleting: return []
        default:
            stored = .stopping
            transitionAt = now.addingTimeInterval(grace)
            return [.releaseAddress, .endProcesses(grace: grace), .wait(grace)]
        }
    }

    /// How long a clone keeps its source and copy busy at most, when its caller is killed midway.
    static let cloneTime: TimeInterval = 60

    /// How long a machine may stay `deleting` before the next call finishes the delete (its
    /// caller was killed midway).
    static let deleteTime: TimeInterval = 30

    /// `delete`: a running machine is killed (its address stays leased); a stopped one is not.
    mutating func delete(at now: Date) -> [Action] {
        let running = state(at: now) != .stopped
        stored = .deleting
        transitionAt = now.addingTimeInterval(MachineLifecycle.deleteTime)
        return running ? [.abandonAddress, .endProcesses(grace: 0)] : [.releaseAddress]
    }
}

extension SimMachine {
    /// The lifecycle, as one value over the stored fields.
    var lifecycle: MachineLifecycle {
        get { MachineLifecycle(stored: MachineLifecycle.State(rawValue: storedState) ?? .stopped, transitionAt: transitionAt) }
        set {
            storedState = newValue.stored.rawValue
            transitionAt = newValue.transitionAt
        }
    }
}
