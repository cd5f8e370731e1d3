import AWS
import Foundation
import ReplController
import ReplCore
import ReplPlatform
import ReplStore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The AWS provider against moto on loopback (`moto_server` from PyPI, started here), each EC2
/// call delayed as EC2 answers from far away.
final class MotoBench: @unchecked Sendable {
    let process: Process
    let endpoint: URL

    /// nil where `moto_server` is not on PATH.
    static func start() async throws -> MotoBench? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        guard let exe = path.split(separator: ":").map({ "\($0)/moto_server" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else { return nil }
        let port = Int.random(in: 20000..<60000)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: exe)
        process.arguments = ["-H", "127.0.0.1", "-p", String(port)]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let endpoint = URL(string: "http://127.0.0.1:\(port)")!
        for _ in 0..<400 {
            var request = URLRequest(url: endpoint.appendingPathComponent("moto-api/"))
            request.timeoutInterval = 2
            if let (_, response) = try? await URLSession.shared.data(for: request), (response as? HTTPURLResponse)?.statusCode == 200 {
                return MotoBench(process: process, endpoint: endpoint)
            }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        kill(process.processIdentifier, SIGKILL)
        return nil
    }

    init(process: Process, endpoint: URL) {
        self.process = process
        self.endpoint = endpoint
    }

    deinit {
        kill(process.processIdentifier, SIGKILL)  // moto outlives SIGTERM
        process.waitUntilExit()
    }
}

/// Each call waits `delay` before it goes, and is counted.
final class DelayedTransport: AWSTransport, @unchecked Sendable {
    let inner = URLSessionTransport()
    let delay: TimeInterval
    private let lock = NSLock()
    private var count = 0
    private(set) var log: [String] = []
    var calls: Int { lock.withLock { count } }

    init(delay: TimeInterval) { self.delay = delay }

    func send(_ request: HTTPRequest, timeout: TimeInterval) async throws(AWSError) -> HTTPResponse {
        let form = String(decoding: request.body, as: UTF8.self)
        let action = form.split(separator: "&").first { $0.hasPrefix("Action=") }.map(String.init) ?? "\(request.method) \(request.url.path)"
        lock.withLock {
            count += 1
            log.append(action)
        }
        try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
        return try await inner.send(request, timeout: timeout)
    }
}

/// An image moto ships.
struct MotoImage: ImageLookup {
    func ami(for image: AWSSpec.Image, arch: String, ec2: EC2Client) async throws(AWSError) -> String { "ami-12c6146b" }
}

/// Convergence of `runs` one-instance runs (each a create and a launch put in S3) and the calls
/// of the idle tick after it; returns (seconds, calls per idle tick, the ideal seconds).
func awsConvergence(runs: Int, delay: TimeInterval, concurrency: Int) async throws -> (Double, Double, Double)? {
    guard let moto = try await MotoBench.start() else { return nil }
    let transport = DelayedTransport(delay: delay)
    let credentials = AWSCredentials(accessKeyID: "AKIDBENCH", secretAccessKey: "bench")
    let provider = AWSProvider(
        ec2: EC2Client(endpoint: moto.endpoint, region: "us-east-1", credentials: credentials, transport: transport),
        channel: .init(
            s3: S3Client(endpoint: moto.endpoint, region: "us-east-1", credentials: credentials, transport: transport),
            bucket: "repl-bench-us-east-1"),
        images: MotoImage())
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("repl-bench-aws-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: dir) }
    let store = try Store(inMemory: ())
    try store.bind(provider: "aws", settings: ["region": "us-east-1"])
    _ = try store.apply(
        try ManifestParser().parse(
            (0..<runs).map { "kind: Run\nname: r\($0)\nprovider: aws\nspec: {image: ami-12c6146b}\n" }.joined(separator: "---\n"),
            file: "bench.yaml"))
    var settings = ControllerSettings(logsDirectory: dir.appendingPathComponent("logs"))
    settings.concurrency = concurrency
    settings.probeInterval = 3600
    let controller = Controller(store: store, provider: provider, settings: settings)
    let time = try await seconds {
        while true {
            _ = await controller.tick()
            if try store.runs().allSatisfy({ $0.run.instances.count == 1 && $0.run.instances.allSatisfy { $0.phase >= .bootstrapping } }) {
                break
            }
        }
    }
    // Each instance's first probe (its status object; none yet) comes in the ticks after its
    // launch; the idle ticks measured come after them.
    for _ in 0..<2 { _ = await controller.tick() }
    let before = transport.calls
    for _ in 0..<5 { _ = await controller.tick() }
    // Each instance: its adoption check, the launch, the run's put (and the bucket, once).
    let ideal = Double(runs) * 3 * delay / Double(concurrency)
    return (time, Double(transport.calls - before) / 5, ideal)
}
