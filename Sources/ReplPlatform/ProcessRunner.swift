import Foundation
import Subprocess

#if canImport(System)
    import System
#else
    import SystemPackage
#endif

/// What one finished (or killed) child process produced.
public struct ProcessResult: Sendable, Equatable {
    public var status: Int32
    public var stdout: Data
    public var stderr: Data
    /// The timeout expired and the child was killed.
    public var timedOut: Bool
    /// Output beyond the capture limit was dropped.
    public var truncated: Bool

    public init(status: Int32, stdout: Data, stderr: Data, timedOut: Bool = false, truncated: Bool = false) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
        self.timedOut = timedOut
        self.truncated = truncated
    }

    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
}

/// Runs one external program. Every orbctl call goes through this seam; tests
/// substitute an in-memory twin.
public protocol ProcessRunner: Sendable {
    /// Runs `executable` with `arguments`, feeding `input` on stdin (`/dev/null` when nil),
    /// killing it and everything it started when `timeout` expires.
    func run(_ executable: String, _ arguments: [String], input: Data?, timeout: TimeInterval) async throws -> ProcessResult
}

/// The real runner, on swift-subprocess (the same code on Linux and macOS).
///
/// - The child gets its own process group, so a timeout kills it and everything it
///   started (`teardownSequence`: SIGKILL to the group), as `timeout(1)` would.
/// - Its output goes to private temporary files, not pipes: the runner waits for the
///   child alone, never for a detached grandchild (`setsid … &`) that inherited a
///   pipe, and no output is lost between the child's exit and a final read.
/// - At most `outputLimit` bytes of each stream are kept; the rest is reported as truncated.
/// - `HOME` is always set (orbctl panics without it).
public struct SystemProcessRunner: ProcessRunner {
    public var environment: [String: String]
    /// At most this many bytes of each stream are kept.
    public var outputLimit: Int

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, outputLimit: Int = 64 << 20) {
        var env = environment
        if env["HOME"] == nil || env["HOME"]!.isEmpty { env["HOME"] = NSHomeDirectory() }
        self.environment = env
        self.outputLimit = outputLimit
    }

    public func run(_ executable: String, _ arguments: [String], input: Data?, timeout: TimeInterval) async throws -> ProcessResult {
        let stdin = try input.map { try PrivateFile(tag: "in", contents: $0) } ?? PrivateFile(openingNullDevice: ())
        let stdout = try PrivateFile(tag: "out")
        let stderr = try PrivateFile(tag: "err")
        defer {
            stdin.release()
            stdout.release()
            stderr.release()
        }
        var options = PlatformOptions()
        options.processGroupID = 0
        options.teardownSequence = [.send(signal: .kill, toProcessGroup: true, allowedDurationToNextStep: .zero)]
        let configuration = Configuration(
            executable: .path(FilePath(executable)), arguments: Arguments(arguments),
            environment: .custom(Self.keys(environment)), platformOptions: options)
        let outcome = try await Self.run(
            configuration, stdin: stdin.descriptor, stdout: stdout.descriptor,
            stderr: stderr.descriptor, timeout: timeout)
        var truncated = false
        let out = stdout.readBack(limit: outputLimit, truncated: &truncated)
        let err = stderr.readBack(limit: outputLimit, truncated: &truncated)
        switch outcome {
        case .timedOut: return ProcessResult(status: 137, stdout: out, stderr: err, timedOut: true, truncated: truncated)
        case .finished(let status): return ProcessResult(status: status, stdout: out, stderr: err, truncated: truncated)
        }
    }

    /// The same, as one call with exactly this environment (`HOME` is not filled in) and output limit.
    public static func run(
        _ executable: String, _ arguments: [String], input: Data?, timeout: TimeInterval,
        environment: [String: String], limit: Int
    ) async throws -> ProcessResult {
        var runner = SystemProcessRunner(environment: environment, outputLimit: limit)
        runner.environment = environment
        return try await runner.run(executable, arguments, input: input, timeout: timeout)
    }

    enum Outcome: Sendable {
        case finished(Int32)
        case timedOut
    }

    /// Runs `configuration` with the given standard streams, racing it against `timeout`
    /// (nil: none). A timeout cancels the run, whose teardown sequence kills the child.
    /// `spawned` is told the child's pid as soon as it exists.
    static func run(
        _ configuration: Configuration, stdin: Int32, stdout: Int32, stderr: Int32,
        timeout: TimeInterval?, spawned onSpawn: (@Sendable (Int32) -> Void)? = nil
    ) async throws -> Outcome {
        let ownGroup = configuration.platformOptions.processGroupID == 0
        return try await withThrowingTaskGroup(of: Outcome.self) { group in
            group.addTask {
                // The child's group is known from its spawn until it has been reaped, whether
                // the run returns or throws (a timeout cancels it).
                let registration = ChildProcessGroups.Registration()
                defer { registration.end() }
                let result = try await Subprocess.run(
                    configuration,
                    input: .fileDescriptor(FileDescriptor(rawValue: stdin), closeAfterSpawningProcess: false),
                    output: .fileDescriptor(FileDescriptor(rawValue: stdout), closeAfterSpawningProcess: false),
                    error: .fileDescriptor(FileDescriptor(rawValue: stderr), closeAfterSpawningProcess: false)
                ) { execution in
                    if ownGroup { registration.begin(execution.processIdentifier.value) }
                    onSpawn?(execution.processIdentifier.value)
                }
                return .finished(exitCode(result.terminationStatus))
            }
            if let timeout {
                group.addTask {
                    try await Task.sleep(nanoseconds: UInt64(max(0, timeout) * 1e9))
                    return .timedOut
                }
            }
            do {
                let first = try await group.next()!
                group.cancelAll()
                // After a timeout, the cancelled run tears the child down; wait for that.
                while (try? await group.next()) != nil {}
                return first
            } catch let error as SubprocessError {
                throw RunnerError(error, executable: configuration.executable.description)
            }
        }
    }

    /// The shell's convention: the exit code, or 128 + the signal that ended the process.
    static func exitCode(_ status: TerminationStatus) -> Int32 {
        switch status {
        case .exited(let code): return Int32(code)
        case .signaled(let signal): return 128 + Int32(signal)
        }
    }

    static func keys(_ environment: [String: String]) -> [Environment.Key: String] {
        var keyed: [Environment.Key: String] = [:]
        for (key, value) in environment {
            if let k = Environment.Key(rawValue: key) { keyed[k] = value }
        }
        return keyed
    }

    /// Runs a program with this process's own standard streams (or the given ones) and
    /// waits for it alone, as a shell does for a foreground command; what it leaves
    /// running (`setsid … &`) is neither waited for nor killed.
    /// Returns its exit code, or 128 + the signal that ended it.
    public static func runAttached(
        _ executable: String, _ arguments: [String], environment: [String: String],
        stdin: Int32 = 0, stdout: Int32 = 1, stderr: Int32 = 2,
        workingDirectory: String? = nil, timeout: TimeInterval? = nil,
        spawned: (@Sendable (Int32) -> Void)? = nil
    ) async throws -> Int32 {
        // No user or group switch here: the library does that with fork(2) in a threaded
        // process, and its child can hang on a lock taken before the fork (seen under load).
        var options = PlatformOptions()
        if timeout != nil {
            // A timeout ends the child's whole group: it gets one of its own.
            options.processGroupID = 0
            options.teardownSequence = [.send(signal: .kill, toProcessGroup: true, allowedDurationToNextStep: .zero)]
        }
        let configuration = Configuration(
            executable: .path(FilePath(executable)), arguments: Arguments(arguments),
            environment: .custom(keys(environment)),
            workingDirectory: workingDirectory.map { FilePath($0) }, platformOptions: options)
        switch try await run(configuration, stdin: stdin, stdout: stdout, stderr: stderr, timeout: timeout, spawned: spawned) {
        case .finished(let code): return code
        case .timedOut: return 137
        }
    }
}

/// The process groups of the children running now (each runs in its own group, so a
/// terminal's Ctrl-C reaches only repl): when repl is stopped by a signal, it ends them too
/// rather than leave an orbctl call running without its caller.
public enum ChildProcessGroups {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var groups: Set<Int32> = []
    nonisolated(unsafe) private static var closing = false

    /// One child's group, from its spawn to its end.
    final class Registration: @unchecked Sendable {
        private var group: Int32?

        /// A child started after `killAll` (spawned just as the signal came) is ended at once.
        func begin(_ group: Int32) {
            self.group = group
            let late = ChildProcessGroups.lock.withLock { () -> Bool in
                if !closing { groups.insert(group) }
                return closing
            }
            if late { kill(-group, SIGKILL) }
        }

        func end() {
            if let group { _ = ChildProcessGroups.lock.withLock { groups.remove(group) } }
        }
    }

    /// Sends SIGKILL to every group, and to every one registered from now on: repl is being
    /// stopped, and no orbctl call may outlive it.
    public static func killAll() {
        let all = lock.withLock { () -> Set<Int32> in
            closing = true
            defer { groups.removeAll() }
            return groups
        }
        for group in all where group > 1 { kill(-group, SIGKILL) }  // never 0 (our group) or 1 (everything)
    }
}

/// A child started in the background (tests: `repl watch` beside other commands).
public final class BackgroundProcess: Sendable {
    /// Its process id, once started.
    public let pid: Int32
    private let ended: Task<Int32, any Error>

    private init(pid: Int32, ended: Task<Int32, any Error>) {
        self.pid = pid
        self.ended = ended
    }

    /// Starts `executable` with its standard output and error appended to `outputPath`.
    public static func start(
        _ executable: String, _ arguments: [String], environment: [String: String],
        outputPath: String
    ) async throws -> BackgroundProcess {
        let log = try PrivateFile(appendingTo: outputPath)
        let null = try PrivateFile(openingNullDevice: ())
        let configuration = Configuration(
            executable: .path(FilePath(executable)), arguments: Arguments(arguments),
            environment: .custom(SystemProcessRunner.keys(environment)))
        let (started, continuation) = AsyncStream.makeStream(of: Int32.self)
        let ended = Task<Int32, any Error> {
            defer {
                log.release()
                null.release()
            }
            let outcome = try await SystemProcessRunner.run(
                configuration, stdin: null.descriptor, stdout: log.descriptor,
                stderr: log.descriptor, timeout: nil
            ) { pid in
                continuation.yield(pid)
                continuation.finish()
            }
            guard case .finished(let code) = outcome else { return 137 }
            return code
        }
        var iterator = started.makeAsyncIterator()
        guard let pid = await iterator.next() else {
            _ = try await ended.value
            throw RunnerError("cannot start \(executable)")
        }
        return BackgroundProcess(pid: pid, ended: ended)
    }

    /// Sends `signal` to it (nothing once it has been waited for).
    public func signal(_ signal: Int32) {
        kill(pid, signal)
    }

    /// Waits for it to end: its exit code, or 128 + the signal that ended it.
    public func wait() async throws -> Int32 { try await ended.value }
}

/// A child could not be started at all.
public struct RunnerError: Error, CustomStringConvertible {
    public let description: String
    /// The executable does not exist.
    public let notFound: Bool

    init(_ description: String, notFound: Bool = false) {
        self.description = description
        self.notFound = notFound
    }

    init(_ error: SubprocessError, executable: String) {
        let notFound =
            error.code == .init(.executableNotFound)
            || error.underlyingError.map { $0.rawValue == ENOENT } == true
        self.init("cannot run \(executable): \(error.underlyingError.map { "\($0)" } ?? "\(error.code)")", notFound: notFound)
    }
}

/// A descriptor of a temporary file that has no name once opened, or of `/dev/null`.
struct PrivateFile: Sendable {
    let descriptor: Int32

    init(tag: String, contents: Data? = nil) throws {
        var template = Array("\(FileManager.default.temporaryDirectory.path)/repl-\(tag)-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw RunnerError("cannot create a temporary file: \(String(cString: strerror(errno)))") }
        unlink(String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        descriptor = fd
        if let contents {
            var offset = 0
            while offset < contents.count {
                let n = contents.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw RunnerError("cannot write a temporary file: \(String(cString: strerror(errno)))") }
                offset += n
            }
            lseek(fd, 0, SEEK_SET)
        }
    }

    init(openingNullDevice: Void) throws {
        descriptor = open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw RunnerError("cannot open /dev/null: \(String(cString: strerror(errno)))") }
    }

    init(appendingTo path: String) throws {
        descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw RunnerError("cannot open \(path): \(String(cString: strerror(errno)))") }
    }

    func release() {
        close(descriptor)
    }

    /// Everything written to it, up to `limit` bytes; `truncated` is set when there was more.
    func readBack(limit: Int, truncated: inout Bool) -> Data {
        let size = Int(lseek(descriptor, 0, SEEK_END))
        if size > limit { truncated = true }
        lseek(descriptor, 0, SEEK_SET)
        var data = Data(count: min(max(size, 0), limit))
        var filled = 0
        while filled < data.count {
            let n = data.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            filled += n
        }
        return data.prefix(filled)
    }
}

/// Finds a program on PATH.
public func findExecutable(_ name: String, path: String? = ProcessInfo.processInfo.environment["PATH"]) -> String? {
    // Only an executable that is not a directory counts (a directory's x bit means "searchable").
    func isProgram(_ candidate: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory) && !isDirectory.boolValue
            && FileManager.default.isExecutableFile(atPath: candidate)
    }
    guard !name.isEmpty else { return nil }
    if name.contains("/") { return isProgram(name) ? name : nil }
    for dir in (path ?? "/usr/bin:/bin").split(separator: ":") {
        let candidate = "\(dir)/\(name)"
        if isProgram(candidate) { return candidate }
    }
    return nil
}

/// Waits for async work from synchronous code that is not on a Swift concurrency thread
/// (the emulator's `main`, a thread of its own). Never call it from a task: blocking one
/// of the pool's few threads while the work needs them can deadlock.
public func waitForAsync<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let done = DispatchSemaphore(value: 0)
    let box = ResultBox<T>()
    Task.detached {
        box.set(await Result(catching: body))
        done.signal()
    }
    done.wait()
    return try box.get()
}

private final class ResultBox<T: Sendable>: @unchecked Sendable {
    private var result: Result<T, any Error>?
    private let lock = NSLock()
    func set(_ value: Result<T, any Error>) { lock.withLock { result = value } }
    func get() throws -> T { try lock.withLock { result! }.get() }
}

extension Result where Failure == any Error {
    /// The outcome of async work, as a value (to act after it whether it threw or not).
    public init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
