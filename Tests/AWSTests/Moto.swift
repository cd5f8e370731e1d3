import AWS
import Foundation
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// moto (`moto[server]` from PyPI), the AWS API emulator, on loopback: one server per test,
/// so that tests running at once share nothing. `.ci/run` installs it; where it is missing
/// the tests that need it are skipped and say so.
/// Every test that starts moto, one at a time: a moto server is a Python process of its own,
/// and several beside the rest of the suite on two cores answered past the client's timeout.
@Suite(.serialized, .enabled(if: Moto.available, "needs moto_server (pip install 'moto[server]'); .ci/run installs it"))
enum MotoTests {}

/// The end-to-end scenarios over moto (the controller, the CLI), one at a time too, beside
/// ``MotoTests``: two moto servers at most run at once.
@Suite(.serialized, .enabled(if: Moto.available, "needs moto_server (pip install 'moto[server]'); .ci/run installs it"))
enum MotoScenarios {}

final class Moto: @unchecked Sendable {
    static let executable: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        return path.split(separator: ":").map { "\($0)/moto_server" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()
    /// Where moto is missing the tests are skipped, but not where `REPL_REQUIRE_MOTO=1` (CI).
    static var available: Bool { executable != nil || ProcessInfo.processInfo.environment["REPL_REQUIRE_MOTO"] == "1" }

    let process: Process
    let endpoint: URL
    let log: URL

    init() async throws {
        guard let executable = Self.executable else { throw MotoError("moto_server is not on PATH (pip install 'moto[server]')") }
        var lastError = "no port tried"
        for _ in 0..<5 {
            let port = Int.random(in: 20000..<60000)
            let log = FileManager.default.temporaryDirectory.appendingPathComponent("moto-\(port)-\(UUID().uuidString).log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = ["-H", "127.0.0.1", "-p", String(port)]
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            try process.run()
            let endpoint = URL(string: "http://127.0.0.1:\(port)")!
            for _ in 0..<200 {
                if !process.isRunning { break }
                if await Self.ready(endpoint) {
                    self.process = process
                    self.endpoint = endpoint
                    self.log = log
                    return
                }
                try await Task.sleep(nanoseconds: 50_000_000)
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            lastError = (try? String(contentsOf: log, encoding: .utf8)) ?? "moto did not start"
            try? FileManager.default.removeItem(at: log)
        }
        throw MotoError("moto_server did not start: \(lastError.suffix(500))")
    }

    deinit {
        // moto's server ends on SIGKILL only (it outlives SIGTERM); its state is in its memory.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: log)
    }

    static func ready(_ endpoint: URL) async -> Bool {
        var request = URLRequest(url: endpoint.appendingPathComponent("moto-api/"))
        request.timeoutInterval = 2
        guard let (_, response) = try? await URLSession.shared.data(for: request) else { return false }
        return (response as? HTTPURLResponse)?.statusCode == 200
    }

    /// moto's own control API (`/moto-api/...`), unsigned.
    @discardableResult
    func control(_ path: String, body: String = "") async throws -> String {
        var request = URLRequest(url: endpoint.appendingPathComponent("moto-api/\(path)"))
        request.httpMethod = "POST"
        // Not a form: moto would read a form's body as its fields and see no value.
        request.setValue("text/plain", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(body.utf8)
        let (data, _) = try await URLSession.shared.data(for: request)
        return String(decoding: data, as: UTF8.self)
    }

    /// Any credentials do while signature checking is off (moto's default).
    static let credentials = AWSCredentials(accessKeyID: "AKIDMOTOTEST", secretAccessKey: "moto-test-secret")

    func ec2(transport: any AWSTransport = URLSessionTransport(), credentials: AWSCredentials = Moto.credentials) -> EC2Client {
        EC2Client(endpoint: endpoint, region: "us-east-1", credentials: credentials, transport: transport)
    }

    func s3(transport: any AWSTransport = URLSessionTransport(), credentials: AWSCredentials = Moto.credentials) -> S3Client {
        S3Client(endpoint: endpoint, region: "us-east-1", credentials: credentials, transport: transport)
    }

    /// Turns signature checking on and returns credentials moto knows (an IAM user allowed
    /// everything), made by the three unauthenticated calls moto is told to allow first.
    func checkSignatures() async throws -> AWSCredentials {
        let answer = try await control("reset-auth", body: "3")
        guard answer.contains("\"status\": \"ok\"") else { throw MotoError("reset-auth: \(answer)") }
        let iam = QueryAPI(
            endpoint: endpoint, region: "us-east-1", service: "iam", version: "2010-05-08", credentials: Self.credentials)
        _ = try await iam.call("CreateUser", [("UserName", "repl-test")])
        let key = try await iam.call("CreateAccessKey", [("UserName", "repl-test")])
        let policy = #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#
        _ = try await iam.call("PutUserPolicy", [("UserName", "repl-test"), ("PolicyName", "all"), ("PolicyDocument", policy)])
        guard let result = key.child("CreateAccessKeyResult")?.child("AccessKey") else { throw MotoError("no access key in \(key)") }
        return AWSCredentials(accessKeyID: result.text("AccessKeyId") ?? "", secretAccessKey: result.text("SecretAccessKey") ?? "")
    }
}

struct MotoError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// What moto lacks, in front of it: per-action failures, and a record of the actions asked.
final class FaultTransport: AWSTransport, @unchecked Sendable {
    let inner: any AWSTransport
    private let lock = NSLock()
    private var failures: [String: [AWSFailure]] = [:]
    private(set) var actions: [String] = []

    struct AWSFailure {
        var status: Int
        var code: String
        var message: String
        /// An answer of its own, in place of an error's.
        var body: String?
    }

    /// The next `times` calls of `action` answer `body` with `status` (a lying endpoint).
    func answer(_ action: String, times: Int = 1, status: Int = 200, body: String) {
        lock.withLock {
            failures[action, default: []] += Array(repeating: AWSFailure(status: status, code: "", message: "", body: body), count: times)
        }
    }

    init(_ inner: any AWSTransport = URLSessionTransport()) { self.inner = inner }

    /// The next `times` calls of `action` answer `status` with AWS's error `code`.
    func fail(_ action: String, times: Int = 1, status: Int = 503, code: String = "ServiceUnavailable", message: String = "injected") {
        lock.withLock { failures[action, default: []] += Array(repeating: AWSFailure(status: status, code: code, message: message), count: times) }
    }

    /// No failure is injected any more.
    func clear() { lock.withLock { failures = [:] } }

    func count(_ action: String) -> Int { lock.withLock { actions.filter { $0 == action }.count } }

    /// S3's action of a request (S3 names none in it): path-style, `/bucket` or `/bucket/key`.
    static func s3Action(_ request: HTTPRequest) -> String {
        let query = request.url.query ?? ""
        let isObject = request.url.path.split(separator: "/").count > 1
        switch request.method {
        case "GET" where query.contains("list-type=2"): return "ListObjectsV2"
        case "GET": return isObject ? "GetObject" : "GetBucket"
        case "PUT" where query.contains("lifecycle"): return "PutBucketLifecycleConfiguration"
        case "PUT": return isObject ? "PutObject" : "CreateBucket"
        default: return request.method
        }
    }

    func send(_ request: HTTPRequest, timeout: TimeInterval) async throws(AWSError) -> HTTPResponse {
        let form = String(decoding: request.body, as: UTF8.self)
        let action =
            form.split(separator: "&").first { $0.hasPrefix("Action=") }.map { String($0.dropFirst("Action=".count)) } ?? Self.s3Action(request)
        let failure: AWSFailure? = lock.withLock {
            actions.append(action)
            guard var queue = failures[action], !queue.isEmpty else { return nil }
            let first = queue.removeFirst()
            failures[action] = queue
            return first
        }
        if let failure, let body = failure.body { return HTTPResponse(status: failure.status, body: Data(body.utf8)) }
        if let failure {
            let body =
                "<?xml version=\"1.0\"?><Response><Errors><Error><Code>\(failure.code)</Code><Message>\(failure.message)</Message></Error></Errors></Response>"
            return HTTPResponse(status: failure.status, body: Data(body.utf8))
        }
        return try await inner.send(request, timeout: timeout)
    }
}
