import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
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
    /// Runs `executable` with `arguments`, feeding `input` on stdin (closed when nil),
    /// killing it when `timeout` expires.
    func run(_ executable: String, _ arguments: [String], input: Data?, timeout: TimeInterval) async throws -> ProcessResult
}

/// The real runner: posix_spawn, output captured to private temporary files with a
/// size limit, HOME always set, and a SIGKILL when the timeout expires.
public struct SystemProcessRunner: ProcessRunner {
    public var environment: [String: String]
    /// At most this many bytes of each stream are kept.
    public var outputLimit: Int

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, outputLimit: Int = 64 << 20) {
        var env = environment
        // orbctl panics without HOME.
        if env["HOME"] == nil || env["HOME"]!.isEmpty { env["HOME"] = NSHomeDirectory() }
        self.environment = env
        self.outputLimit = outputLimit
    }

    public func run(_ executable: String, _ arguments: [String], input: Data?, timeout: TimeInterval) async throws -> ProcessResult {
        let env = environment
        let limit = outputLimit
        return try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try SystemProcessRunner.runBlocking(executable, arguments, input: input, timeout: timeout, environment: env, limit: limit) })
            }
        }
    }

    /// The same, synchronously, on the calling thread (tests, benchmarks, scripts).
    public static func runBlocking(_ executable: String, _ arguments: [String], input: Data?, timeout: TimeInterval,
                            environment: [String: String], limit: Int) throws -> ProcessResult {
        let dir = FileManager.default.temporaryDirectory.path
        func tempFile(_ tag: String) throws -> (Int32, String) {
            var template = Array("\(dir)/repl-\(tag)-XXXXXX".utf8CString)
            let fd = mkstemp(&template)
            guard fd >= 0 else { throw RunnerError("cannot create a temporary file: \(String(cString: strerror(errno)))") }
            let path = String(cString: template)
            unlink(path)  // private: only the descriptor remains
            return (fd, path)
        }
        let (outFD, _) = try tempFile("out")
        let (errFD, _) = try tempFile("err")
        var inFD: Int32 = -1
        defer {
            close(outFD)
            close(errFD)
            if inFD >= 0 { close(inFD) }
        }
        if let input {
            let (fd, _) = try tempFile("in")
            inFD = fd
            _ = input.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            lseek(fd, 0, SEEK_SET)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if inFD >= 0 {
            posix_spawn_file_actions_adddup2(&actions, inFD, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, outFD, 1)
        posix_spawn_file_actions_adddup2(&actions, errFD, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group, so a timeout can kill the child and anything it started.
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid = pid_t()
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw RunnerError("cannot run \(executable): \(String(cString: strerror(rc)))", notFound: rc == ENOENT) }
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(timeout)
        var killed = false
        var sleep: UInt32 = 200
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { break }
            if !killed && Date() >= deadline {
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
                killed = true
            }
            usleep(sleep)
            sleep = min(sleep * 2, 10_000)
        }
        var truncated = false
        func readBack(_ fd: Int32) -> Data {
            let size = Int(lseek(fd, 0, SEEK_END))
            if size > limit { truncated = true }
            lseek(fd, 0, SEEK_SET)
            var data = Data(count: min(size, limit))
            let n = data.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            return data.prefix(max(0, n))
        }
        let out = readBack(outFD)
        let err = readBack(errFD)
        let signal = status & 0x7f
        let code: Int32 = killed ? 137 : (signal == 0 ? (status >> 8) & 0xff : 128 + signal)
        return ProcessResult(status: code, stdout: out, stderr: err, timedOut: killed, truncated: truncated)
    }
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
}

/// Finds a program on PATH.
public func findExecutable(_ name: String, path: String? = ProcessInfo.processInfo.environment["PATH"]) -> String? {
    if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
    for dir in (path ?? "/usr/bin:/bin").split(separator: ":") {
        let candidate = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}
