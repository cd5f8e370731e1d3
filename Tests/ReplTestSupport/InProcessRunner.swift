import Foundation
import OrbSim
import ReplPlatform

/// Routes orbctl calls into the emulator model in this process: the twin of the binary at the
/// process seam (no process per call; what a machine runs still runs in it).
public struct InProcessRunner: ProcessRunner {
    let home: URL
    let environment: [String: String]

    public init(home: URL, environment: [String: String]) {
        self.home = home
        self.environment = environment
    }

    public func run(_ executable: String, _ arguments: [String], input: Data?, timeout: TimeInterval) async throws -> ProcessResult {
        let home = self.home, environment = self.environment
        return await withCheckedContinuation { continuation in
            let once = Once()
            Thread.detachNewThread {
                let dir = FileManager.default.temporaryDirectory
                let id = UUID().uuidString
                let paths = ["in", "out", "err"].map { dir.appendingPathComponent("inproc-\($0)-\(id)").path }
                FileManager.default.createFile(atPath: paths[0], contents: input ?? Data())
                FileManager.default.createFile(atPath: paths[1], contents: nil)
                FileManager.default.createFile(atPath: paths[2], contents: nil)
                let io = SimIO(
                    stdin: FileHandle(forReadingAtPath: paths[0])!, stdout: FileHandle(forWritingAtPath: paths[1])!,
                    stderr: FileHandle(forWritingAtPath: paths[2])!)
                let sim = OrbSim(home: home, executable: BuildProducts.orbctlSim, environment: environment)
                let code = sim.main(arguments, io: io)
                let out = FileManager.default.contents(atPath: paths[1]) ?? Data()
                let err = FileManager.default.contents(atPath: paths[2]) ?? Data()
                for p in paths { unlink(p) }
                if once.claim() { continuation.resume(returning: ProcessResult(status: code, stdout: out, stderr: err)) }
            }
            Thread.detachNewThread {
                Thread.sleep(forTimeInterval: timeout)
                // A hung in-process call cannot be killed; it is abandoned and reported as timed out.
                if once.claim() { continuation.resume(returning: ProcessResult(status: 137, stdout: Data(), stderr: Data(), timedOut: true)) }
            }
        }
    }
}

final class Once: @unchecked Sendable {
    private var done = false
    private let lock = NSLock()
    func claim() -> Bool { lock.lock(); defer { lock.unlock() }; if done { return false }; done = true; return true }
}
