import Foundation

/// Where one instance of a run is in its lifecycle.
public enum InstancePhase: String, Sendable, Codable, CaseIterable, Comparable {
    /// Wanted, no machine requested yet.
    case pending = "Pending"
    /// Machine requested (created or cloned), command not yet started.
    case provisioning = "Provisioning"
    /// Wrapper launched; bootstrap script running.
    case bootstrapping = "Bootstrapping"
    /// Command running (or, without a command, machine up).
    case running = "Running"
    case succeeded = "Succeeded"
    case failed = "Failed"
    case timedOut = "TimedOut"
    case cancelled = "Cancelled"

    public var isTerminal: Bool {
        switch self {
        case .succeeded, .failed, .timedOut, .cancelled: return true
        default: return false
        }
    }

    var order: Int { InstancePhase.allCases.firstIndex(of: self)! }
    public static func < (a: InstancePhase, b: InstancePhase) -> Bool { a.order < b.order }
}

/// One instance as the store records it.
public struct InstanceState: Hashable, Sendable, Codable {
    public var id: InstanceID
    public var generation: Int
    public var phase: InstancePhase
    /// No longer wanted (scaled down); its machine is deleted and it stays as history.
    public var retired: Bool
    /// When its machine was first requested.
    public var createdAt: Date?
    /// When the run was launched in its running machine; `maxDuration` counts from here.
    public var startedAt: Date?
    /// When it reached a terminal phase; `hold` counts from here.
    public var finishedAt: Date?
    public var exitCode: Int?
    /// Whether its run log has been copied to the state directory.
    public var logsCollected: Bool
    /// Why it is in its phase, when that needs saying (an error, a timeout).
    public var reason: String?

    public init(
        id: InstanceID, generation: Int, phase: InstancePhase = .pending, retired: Bool = false,
        createdAt: Date? = nil, startedAt: Date? = nil, finishedAt: Date? = nil, exitCode: Int? = nil,
        logsCollected: Bool = false, reason: String? = nil
    ) {
        self.id = id
        self.generation = generation
        self.phase = phase
        self.retired = retired
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.exitCode = exitCode
        self.logsCollected = logsCollected
        self.reason = reason
    }
}

/// A run as the controller wants it: its manifest, generation and instances.
public struct DesiredRun: Hashable, Sendable {
    public var id: RunID
    public var manifest: RunManifest
    /// Bumped whenever source, bootstrap, command or env change.
    public var generation: Int
    /// Cancelled (or deleted) runs want no machines.
    public var cancelled: Bool
    /// Every instance ever made for this run, history included, by ascending id.
    public var instances: [InstanceState]
    /// The store's revision of the run when it was read: an archive decided on this read
    /// applies only if nobody changed the run since.
    public var revision: Int

    public init(
        id: RunID, manifest: RunManifest, generation: Int = 1, cancelled: Bool = false, instances: [InstanceState] = [],
        revision: Int = 0
    ) {
        self.id = id
        self.manifest = manifest
        self.generation = generation
        self.cancelled = cancelled
        self.instances = instances
        self.revision = revision
    }

    /// An instance's number as users see it: 1, 2, … in the order its generation's instances
    /// were made (the machine's name keeps the global id). Stable: a later scale-up numbers on.
    public func number(of id: InstanceID) -> Int? {
        guard let instance = instances.first(where: { $0.id == id }) else { return nil }
        return instances.filter { $0.generation == instance.generation && $0.id <= id }.count
    }

    /// The instance numbered `number` in the current generation (`RUN/N`).
    public func instance(numbered number: Int) -> InstanceState? {
        instances.first { $0.generation == generation && self.number(of: $0.id) == number }
    }

    /// `NAME/N`, as users see an instance.
    public func label(_ id: InstanceID) -> String { "\(manifest.name)/\(number(of: id).map(String.init) ?? Base36.encode(id))" }

    /// Whether an instance is still wanted: current generation, not retired, run not cancelled.
    public func wants(_ instance: InstanceState) -> Bool {
        !cancelled && !instance.retired && instance.generation == generation
    }

    /// The run's phase, derived from its wanted instances (or all, once none is wanted).
    public var phase: InstancePhase {
        let ofGeneration = instances.filter { $0.generation == generation }
        let current = ofGeneration.filter { !$0.retired }
        // An instance that had ended before replicas were reduced keeps its result: scaling
        // down a finished run does not rewrite how it ended (one cut short is Cancelled).
        let judged = current + ofGeneration.filter { $0.retired && $0.phase.isTerminal && $0.phase != .cancelled }
        // Cancelled (or deleted) after it had finished whole, a run keeps its result: only one
        // cut short is Cancelled.
        let finishedWhole = current.count >= manifest.replicas && judged.allSatisfy { $0.phase.isTerminal && $0.phase != .cancelled }
        if cancelled && instances.allSatisfy({ $0.phase.isTerminal }) && !finishedWhole { return .cancelled }
        guard !judged.isEmpty else {
            if cancelled { return .cancelled }
            guard manifest.replicas == 0 else { return .pending }
            // Scaled to nothing before anything ran: a command that never ran never succeeds.
            return manifest.command == nil ? .succeeded : .cancelled
        }
        if let active = current.filter({ !$0.phase.isTerminal }).map(\.phase).min() { return active }
        if judged.contains(where: { $0.phase == .failed }) { return .failed }
        if judged.contains(where: { $0.phase == .timedOut }) { return .timedOut }
        if judged.contains(where: { $0.phase == .cancelled }) { return .cancelled }
        return .succeeded
    }
}

/// A snapshot as the controller wants it.
public struct DesiredSnapshot: Hashable, Sendable {
    public var id: SnapshotID
    public var name: String
    /// The run whose first wanted instance is cloned.
    public var fromRun: String
    /// The instance id of the snapshot's machine (from the shared sequence).
    public var instanceID: InstanceID
    /// Marked for deletion: its machine is deleted and then the row dropped.
    public var deleted: Bool
    /// The run is ready to clone from once the snapshot's machine was made.
    public var createdAt: Date?

    public init(id: SnapshotID, name: String, fromRun: String, instanceID: InstanceID, deleted: Bool = false, createdAt: Date? = nil) {
        self.id = id
        self.name = name
        self.fromRun = fromRun
        self.instanceID = instanceID
        self.deleted = deleted
        self.createdAt = createdAt
    }
}

/// Everything the controller wants to exist, read fresh from the store every tick.
public struct DesiredState: Hashable, Sendable {
    public var runs: [DesiredRun]
    public var snapshots: [DesiredSnapshot]
    /// The next free id of the shared instance/snapshot sequence.
    public var nextInstanceID: InstanceID

    public init(runs: [DesiredRun] = [], snapshots: [DesiredSnapshot] = [], nextInstanceID: InstanceID = 1) {
        self.runs = runs
        self.snapshots = snapshots
        self.nextInstanceID = nextInstanceID
    }
}

/// A machine's state as `orbctl list` reports it.
public enum MachineState: Hashable, Sendable, Codable, CustomStringConvertible {
    case creating, starting, running, stopping, stopped, deleting
    case other(String)

    public init(_ text: String) {
        switch text {
        case "creating": self = .creating
        case "starting": self = .starting
        case "running": self = .running
        case "stopping": self = .stopping
        case "stopped": self = .stopped
        case "deleting": self = .deleting
        default: self = .other(text)
        }
    }

    public var description: String {
        switch self {
        case .creating: return "creating"
        case .starting: return "starting"
        case .running: return "running"
        case .stopping: return "stopping"
        case .stopped: return "stopped"
        case .deleting: return "deleting"
        case .other(let s): return s
        }
    }

    public init(from decoder: Decoder) throws { self.init(try decoder.singleValueContainer().decode(String.self)) }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// One machine as observed in `orbctl list`.
public struct ObservedMachine: Hashable, Sendable {
    /// OrbStack's ULID id (its first characters carry the creation time).
    public var id: String
    public var name: String
    public var state: MachineState
    public var distro: String
    public var version: String
    public var arch: String

    public init(id: String, name: String, state: MachineState, distro: String = "ubuntu", version: String = "noble", arch: String = Spec.hostArch) {
        self.id = id
        self.name = name
        self.state = state
        self.distro = distro
        self.version = version
        self.arch = arch
    }

    /// When the engine says it launched the machine, where its id does not carry it (EC2's
    /// `LaunchTime`).
    public var launchedAt: Date?

    /// Creation time: as the engine reports it, else from the ULID id; `nil` when neither says.
    public var createdAt: Date? { launchedAt ?? ULID.timestamp(of: id) }
}

/// What a read of `/var/lib/repl/status` inside a machine said.
public enum ProbeResult: Hashable, Sendable {
    case bootstrapping
    case running
    case exited(Int)
    case timedOut
    /// The status could not be read (the machine is busy, the file is missing).
    case unreadable(String)
    /// The status says the command runs, but its wrapper is gone (the machine restarted: its
    /// heartbeat stopped): it will never end by itself.
    case gone(String)

    public static let wrapperGone = "the machine restarted and its run's wrapper is gone (its heartbeat stopped); the command ended with it"

    /// The command has ended (or was ended at its deadline): nothing will change it.
    public var isFinal: Bool {
        switch self {
        case .exited, .timedOut: return true
        default: return false
        }
    }
}
