import Foundation
import ReplPlatform

/// One emulated machine, as the emulator stores it.
public struct SimMachine: Codable, Equatable, Sendable {
    public var id: String
    public var name: String
    public var distro: String
    public var version: String
    public var arch: String
    public var variant: String
    public var defaultUsername: String
    /// The stored state; `starting` and `stopping` become `running`/`stopped` at `transitionAt`.
    public var storedState: String
    public var transitionAt: Date?
    public var ip4: String?
    public var createdAt: Date
    /// An operation in progress on this machine (e.g. `clone`) and when it ends.
    public var busyOperation: String?
    public var busyUntil: Date?
    /// Per-machine settings (`machine.NAME.cpu`, …).
    public var settings: [String: String]

    /// What names the machine's directories and processes: the random part of its ULID,
    /// which `admin clock advance` (rewriting the time part) and `rename` leave alone.
    public var key: String { String(id.dropFirst(10)) }

    /// Created with `--isolated`: no `/mnt/mac`, nothing of the host's own directories.
    public var isolated: Bool { settings["isolated"] == "true" }

    /// The state at time `now` (see `MachineLifecycle`).
    public func state(at now: Date) -> String { lifecycle.state(at: now).rawValue }

    public func busy(at now: Date) -> String? {
        guard let op = busyOperation, let until = busyUntil, now < until else { return nil }
        return op
    }

    /// The fake IPv6 address that goes with the IPv4 one.
    public var ip6: String? {
        guard let ip4 else { return nil }
        let last = ip4.split(separator: ".").last.map(String.init) ?? "0"
        return "fd07:b51a:cc66:0:a617:db5e:ab7:\(String(Int(last) ?? 0, radix: 16))"
    }

    /// The emulated disk size in bytes (one figure for every machine).
    public var diskSize: Int64 { 1_427_472_384 }
}

/// One address lease of the DHCP-like pool.
public struct SimLease: Codable, Equatable, Sendable {
    public var machineID: String
    /// `nil` while the machine runs; set when released without a graceful stop.
    public var expiresAt: Date?
}

/// The emulator's whole state, persisted as JSON under `$ORBSIM_HOME`.
public struct SimState: Codable, Equatable, Sendable {
    public var machines: [SimMachine] = []
    public var leases: [String: SimLease] = [:]
    /// Milliseconds each verb takes; `create`/`clone` latencies are boot/copy times.
    public var latencies: [String: Int] = SimState.defaultLatencies
    /// Verb → (calls left to fail, message).
    public var failures: [String: SimFault] = [:]
    /// Verb → calls left that hang forever.
    public var hangs: [String: Int] = [:]
    public var subnet4: String = "192.168.138.0/23"
    public var poolSize: Int = 238
    public var leaseSeconds: Double = 86_400
    /// Seconds added to the real clock (`admin clock advance`).
    public var clockOffset: Double = 0
    public var config: [String: String] = [:]
    /// The OrbStack version emulated (`admin version`); nil for ``OrbSim/version``.
    public var version: String?

    public static let defaultLatencies: [String: Int] = [
        "create": 1500, "clone": 150, "start": 400, "stop": 300, "restart": 700, "delete": 150,
        "list": 15, "info": 10, "run": 20, "rename": 20, "push": 20, "pull": 20, "version": 5,
        "status": 5, "config": 10,
        // From a create's return to the start of its user data (cloud-init's earlier stages).
        "cloud-init": 1000,
    ]

    /// Latencies for tests: a few milliseconds everywhere but cloud-init's start, which stays
    /// late so that a client that does not wait for it still finds its files missing.
    public static let fastLatencies: [String: Int] = defaultLatencies.mapValues { min($0, 5) }
        .merging(["cloud-init": 1000]) { $1 }

    public init() {}
}

public struct SimFault: Codable, Equatable, Sendable {
    public var remaining: Int
    public var message: String?
}

/// Exclusive access to the state file across processes, with `flock(2)`.
public final class SimStore: @unchecked Sendable {
    public let home: URL
    /// The state of a new emulator home (default or fast latencies).
    public let initial: SimState

    public init(home: URL, initial: SimState = SimState()) {
        self.home = home
        self.initial = initial
    }

    var stateURL: URL { home.appendingPathComponent("state.json") }
    var lockURL: URL { home.appendingPathComponent("lock") }
    public var callLogURL: URL { home.appendingPathComponent("calls.jsonl") }
    public var machinesDirectory: URL { home.appendingPathComponent("machines") }
    public var shimsDirectory: URL { home.appendingPathComponent("shims") }

    /// Runs `body` with the state loaded under an exclusive lock, saving it
    /// afterwards when `body` changed it.
    @discardableResult
    public func withState<T>(_ body: (inout SimState) throws -> T) throws -> T {
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        let fd = open(lockURL.path, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SimStoreError("cannot open \(lockURL.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            if errno != EINTR { throw SimStoreError("cannot lock \(lockURL.path): \(String(cString: strerror(errno)))") }
        }
        defer { flock(fd, LOCK_UN) }
        var state = try load()
        let before = state
        let result = try body(&state)
        if state != before { try save(state) }
        return result
    }

    /// Reads the state without taking the lock (it is replaced atomically).
    public func read() throws -> SimState { try load() }

    private func load() throws -> SimState {
        guard let data = FileManager.default.contents(atPath: stateURL.path), !data.isEmpty else { return initial }
        do {
            let state = try SimStore.decoder.decode(SimState.self, from: data)
            // Ids name directories: anything but a ULID is a damaged (or forged) state.
            if let bad = state.machines.first(where: { !ULIDText.isValid($0.id) }) {
                throw SimStoreError("machine id \(bad.id.debugDescription) is not a ULID")
            }
            return state
        } catch {
            throw SimStoreError("emulator state \(stateURL.path) is unreadable (\(error)); run `orbctl-sim admin reset`")
        }
    }

    private func save(_ state: SimState) throws {
        let data = try SimStore.encoder.encode(state)
        let tmp = home.appendingPathComponent("state.json.tmp-\(getpid())")
        try data.write(to: tmp)
        guard rename(tmp.path, stateURL.path) == 0 else {
            throw SimStoreError("cannot replace \(stateURL.path): \(String(cString: strerror(errno)))")
        }
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .millisecondsSince1970
        e.outputFormatting = [.sortedKeys]
        return e
    }()
    static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .millisecondsSince1970
        return d
    }()

    /// Appends one record to the call log (one JSON object per line).
    public func logCall(argv: [String], exitCode: Int32, milliseconds: Int, at date: Date) {
        let record: [String: Any] = [
            "argv": argv, "exit": Int(exitCode), "ms": milliseconds,
            "at": Int64(date.timeIntervalSince1970 * 1000),
        ]
        guard var data = try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]) else { return }
        data.append(0x0A)
        try? FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        let fd = open(callLogURL.path, O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }  // one write: atomic for O_APPEND
    }

    /// Every logged call: argv, exit code and duration.
    public func calls() -> [SimCall] {
        guard let text = try? String(contentsOf: callLogURL, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let argv = obj["argv"] as? [String]
            else { return nil }
            return SimCall(argv: argv, exitCode: obj["exit"] as? Int ?? -1, milliseconds: obj["ms"] as? Int ?? 0)
        }
    }
}

/// The text form of a ULID: 26 characters of Crockford's base 32.
enum ULIDText {
    static let alphabet = Set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    static func isValid(_ text: String) -> Bool { text.count == 26 && text.allSatisfy(alphabet.contains) }
}

/// One logged invocation.
public struct SimCall: Equatable, Sendable {
    public var argv: [String]
    public var exitCode: Int
    public var milliseconds: Int
    /// The verb (first non-flag word), with aliases resolved.
    public var verb: String { OrbSim.verb(of: argv) ?? "(none)" }
}

public struct SimStoreError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

extension SimStore {
    /// Removes a machine's disk (or the machines' directory) whole. A machine can make a tree
    /// deeper than `PATH_MAX`, which `FileManager` leaves behind; `rm` walks it by descriptor.
    func removeTree(_ url: URL) {
        try? FileManager.default.removeItem(at: url)
        guard FileManager.default.fileExists(atPath: url.path) || (try? FileManager.default.destinationOfSymbolicLink(atPath: url.path)) != nil
        else { return }
        let path = url.path
        _ = try? waitForAsync {
            try await SystemProcessRunner.run(
                "/bin/rm", ["-rf", "--", path], input: nil, timeout: 600,
                environment: ["PATH": "/usr/bin:/bin"], limit: 1 << 16)
        }
    }
}
