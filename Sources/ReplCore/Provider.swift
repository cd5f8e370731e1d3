import Foundation

/// What the controller asks of a machine provider. The planner and controller
/// see only this, never orbctl specifics, so other providers can be added.
public protocol Provider: Sendable {
    var capabilities: ProviderCapabilities { get }
    /// Every machine. Throws rather than ever returning an empty list on failure.
    func list() async throws(ProviderError) -> [ObservedMachine]
    /// A machine's state asked of it by name, nil when there is no such machine (to confirm
    /// what a list left out, or showed stopped under a running command).
    func state(name: MachineName) async throws(ProviderError) -> MachineState?
    /// Creates a machine with OrbStack's own options and waits until it runs. A machine of that
    /// name that already exists is adopted (create is idempotent by name).
    func create(name: MachineName, spec: MachineSpec, options: MachineOptions) async throws(ProviderError)
    /// Clones a stopped snapshot machine into a new machine and starts it.
    func clone(snapshot: MachineName, name: MachineName) async throws(ProviderError)
    func start(name: MachineName) async throws(ProviderError)
    /// Stops gracefully (so the address is returned), then deletes. Idempotent.
    func delete(name: MachineName) async throws(ProviderError)
    /// A stopped clone of `source` named `name`.
    func snapshot(source: MachineName, name: MachineName) async throws(ProviderError)
    /// Stops a machine (never without a name).
    func stop(name: MachineName) async throws(ProviderError)
    /// Launches the run wrapper inside the machine, detached.
    func startRun(name: MachineName, payload: RunPayload) async throws(ProviderError)
    /// Reads the run's status file.
    func probe(name: MachineName) async throws(ProviderError) -> ProbeResult
    /// The run's output (`run.log`) or the bootstrap log, from byte `offset` to its end, whole.
    func logs(name: MachineName, bootstrap: Bool, from offset: Int) async throws(ProviderError) -> Data
    /// The machine's address, through the provider's discovery chain.
    func address(name: MachineName) async throws(ProviderError) -> String?
    /// Unpacks a tar archive into `directory` in the machine (made when missing), as root.
    func pushArchive(name: MachineName, archive: Data, to directory: String) async throws(ProviderError)
    /// Writes `data` to the file `path` in the machine (its directory made when missing), as root.
    func pushFile(name: MachineName, data: Data, to path: String) async throws(ProviderError)
    /// A tar archive of what the absolute globs match in the machine (paths without their
    /// leading `/`), and the globs that matched nothing.
    func pullArchive(name: MachineName, globs: [String]) async throws(ProviderError) -> (archive: Data, unmatched: [String])
    /// The manifest copy the launch wrote into a running machine (for `repl recover`), or nil
    /// when the machine has none.
    func manifestCopy(name: MachineName) async throws(ProviderError) -> String?
    /// Whether the machine was made isolated (nil when the provider cannot say).
    func isolation(name: MachineName) async throws(ProviderError) -> Bool?
    /// For a provider whose machines write their status channel elsewhere (EC2's, to S3): what
    /// changed there since the host's copy was marked, read in one listing, only the changed
    /// objects fetched; nil for a provider whose machines write the host's channel themselves.
    func fetchChannel(_ marks: [MachineName: ChannelMark]) async throws(ProviderError) -> [MachineName: ChannelUpdate]?
    /// This provider with every call to its engine run under `limits`, applied where it meets
    /// the engine (for OrbStack, each orbctl process), so the limits count real calls.
    func limited(by limits: CallLimits) -> any Provider
}

extension Provider {
    public func pushArchive(name: MachineName, archive: Data, to directory: String) async throws(ProviderError) {
        throw ProviderError(.failed, "\(capabilities.name) cannot copy files into machines")
    }
    public func pushFile(name: MachineName, data: Data, to path: String) async throws(ProviderError) {
        throw ProviderError(.failed, "\(capabilities.name) cannot copy files into machines")
    }
    public func pullArchive(name: MachineName, globs: [String]) async throws(ProviderError) -> (archive: Data, unmatched: [String]) {
        throw ProviderError(.failed, "\(capabilities.name) cannot copy files out of machines")
    }

    public func isolation(name: MachineName) async throws(ProviderError) -> Bool? { nil }

    public func fetchChannel(_ marks: [MachineName: ChannelMark]) async throws(ProviderError) -> [MachineName: ChannelUpdate]? { nil }

    /// Whether a machine exists, asked of it by name.
    public func exists(name: MachineName) async throws(ProviderError) -> Bool { try await state(name: name) != nil }

    /// A machine with no options of its own.
    public func create(name: MachineName, spec: MachineSpec) async throws(ProviderError) {
        try await create(name: name, spec: spec, options: .none)
    }

    /// An OrbStack machine of `spec`, with no options of its own unless given.
    public func create(name: MachineName, spec: Spec, options: MachineOptions = .none) async throws(ProviderError) {
        try await create(name: name, spec: .orbstack(spec), options: options)
    }
}

/// Everything the in-machine wrapper needs to run an instance.
public struct RunPayload: Sendable, Equatable {
    public var command: String?
    public var bootstrap: String?
    public var env: [String: String]
    /// Seconds the run may take from its launch (maxDuration); `nil` for no deadline.
    public var remaining: TimeInterval?
    /// How long the machine is kept after the command (for the dead man's switch).
    public var hold: TimeInterval
    /// A copy of the manifest written to `/etc/repl/manifest.yaml`, for recovery.
    public var manifestYAML: String
    /// The machine powers itself off this long after its deadline (the controller
    /// normally deletes it first).
    public var deadlineMargin: TimeInterval
    /// …and this long after the run ended plus `hold`, when no controller deleted it.
    public var abandonedAfter: TimeInterval
    /// The host status channel's directory for this machine, as the host names it (the
    /// wrapper reaches it at `/mnt/mac` + this path); `nil` for none.
    public var channel: String?
    /// The machine was created with user data: the bootstrap waits until cloud-init has finished.
    public var waitForCloudInit = false

    public init(
        command: String?, bootstrap: String?, env: [String: String], remaining: TimeInterval?, hold: TimeInterval,
        manifestYAML: String, deadlineMargin: TimeInterval = 15, abandonedAfter: TimeInterval = 600, channel: String? = nil
    ) {
        self.command = command
        self.bootstrap = bootstrap
        self.env = env
        self.remaining = remaining
        self.hold = hold
        self.manifestYAML = manifestYAML
        self.deadlineMargin = deadlineMargin
        self.abandonedAfter = abandonedAfter
        self.channel = channel
    }
}

/// The limits a running wrapper obeys, as `key=value` lines: `maxDuration` (seconds from the
/// launch, or `none`) and `hold` (seconds). The wrapper keeps a copy from its launch; the
/// controller rewrites the host channel's copy when either changes in place.
public enum RunLimits {
    public static func text(maxDuration: TimeInterval?, hold: TimeInterval) -> String {
        "maxDuration=\(maxDuration.map { String(Int(max(1, $0).rounded(.up))) } ?? "none")\nhold=\(Int(max(0, hold).rounded(.up)))\n"
    }
}

/// A failed provider call, with what a caller needs to decide: its kind, whether a
/// retry may help, and a message a person can act on.
public struct ProviderError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        case notFound, alreadyExists, addressExhausted, unavailable, timedOut, malformedOutput, failed
        /// The cloud has no capacity, or the account no quota, for the machine: the breaker, as
        /// an exhausted address pool.
        case capacity
        /// The engine asked us to slow down (or failed on its side) more often than the call
        /// absorbed: back off.
        case throttled
        /// Credentials missing, wrong or expired: nothing works until a person fixes them.
        case denied
        /// The request itself is wrong (an image that does not exist): the instance fails with it.
        case invalid
        /// Not attempted: held back by the controller (the circuit breaker opened meanwhile).
        case heldBack
    }
    public var kind: Kind
    public var message: String
    /// The argv of the failed call, when there was one.
    public var arguments: [String]
    public var exitStatus: Int32?

    public init(_ kind: Kind, _ message: String, arguments: [String] = [], exitStatus: Int32? = nil) {
        self.kind = kind
        self.message = message
        self.arguments = arguments
        self.exitStatus = exitStatus
    }

    /// Whether trying again later may succeed. Exhaustion is retried only through
    /// the circuit breaker; an unusable orbctl needs a person.
    public var isRetryable: Bool {
        switch kind {
        case .timedOut, .failed, .malformedOutput, .alreadyExists, .notFound, .throttled: return true
        case .addressExhausted, .unavailable, .heldBack, .capacity, .denied, .invalid: return false
        }
    }

    /// No capacity for new machines (OrbStack's address pool, a cloud's capacity or quota):
    /// retried only through the circuit breaker.
    public var isExhaustion: Bool { kind == .addressExhausted || kind == .capacity }

    public static let resetAdvice =
        "run `bash scaffold/scripts/orbstack-reset-networking.sh` on the macOS host (not inside a machine), then try again"
    public static let installAdvice = "install or relaunch OrbStack from https://orbstack.dev (launching it once puts orbctl on PATH)"

    public var description: String {
        switch kind {
        case .addressExhausted:
            return "OrbStack ran out of machine addresses (\(message)); \(ProviderError.resetAdvice)"
        case .unavailable:
            return "orbctl is not usable: \(message); \(ProviderError.installAdvice)"
        default:
            return message
        }
    }
}

/// What the host's copy of a machine's status channel holds, for a provider that mirrors it:
/// the tag of the status it has (nil: none yet) and the size of each log.
public struct ChannelMark: Sendable, Equatable {
    public var statusTag: String?
    public var output: Int
    public var bootstrap: Int

    public init(statusTag: String?, output: Int, bootstrap: Int) {
        self.statusTag = statusTag
        self.output = output
        self.bootstrap = bootstrap
    }
}

/// What changed in a machine's mirrored channel: a new status (with its tag), and each log's
/// bytes from an offset (the host's size: appended; 0: the whole log, replacing the host's).
public struct ChannelUpdate: Sendable, Equatable {
    public var status: Data?
    public var statusTag: String?
    public var output: Piece?
    public var bootstrap: Piece?

    public struct Piece: Sendable, Equatable {
        public var offset: Int
        public var data: Data

        public init(offset: Int, data: Data) {
            self.offset = offset
            self.data = data
        }
    }

    public init(status: Data? = nil, statusTag: String? = nil, output: Piece? = nil, bootstrap: Piece? = nil) {
        self.status = status
        self.statusTag = statusTag
        self.output = output
        self.bootstrap = bootstrap
    }
}
