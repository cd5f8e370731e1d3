import Foundation

/// Keys that sign a request: an access key and its secret, and a session token for temporary
/// credentials (SSO, an assumed role, `credential_process`).
public struct AWSCredentials: Sendable, Equatable {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }
}

/// An HTTP request as Signature Version 4 sees it: the path and query decoded (the signer
/// encodes them as AWS specifies), the headers as sent, and the body.
public struct SignableRequest: Sendable, Equatable {
    public var method: String
    public var path: String
    public var query: [(name: String, value: String)]
    public var headers: [(name: String, value: String)]
    public var body: Data

    public init(method: String, path: String = "/", query: [(String, String)] = [], headers: [(String, String)] = [], body: Data = Data()) {
        self.method = method
        self.path = path
        self.query = query.map { (name: $0.0, value: $0.1) }
        self.headers = headers.map { (name: $0.0, value: $0.1) }
        self.body = body
    }

    public static func == (a: SignableRequest, b: SignableRequest) -> Bool {
        a.method == b.method && a.path == b.path && a.body == b.body
            && a.query.map { [$0.name, $0.value] } == b.query.map { [$0.name, $0.value] }
            && a.headers.map { [$0.name, $0.value] } == b.headers.map { [$0.name, $0.value] }
    }

    /// The first value of a header, by its name in any case.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// The path and query as they go on the wire: each encoded once.
    public var target: String {
        let path = SigV4.encodePath(path)
        guard !query.isEmpty else { return path }
        return path + "?" + query.map { SigV4.encode($0.name) + "=" + SigV4.encode($0.value) }.joined(separator: "&")
    }
}

/// AWS Signature Version 4 (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html),
/// written for this project and checked against AWS's published test suite: in a header
/// (`Authorization`) for API calls, and in the query for presigned S3 URLs.
public struct SigV4: Sendable {
    public let credentials: AWSCredentials
    public let region: String
    public let service: String

    public init(credentials: AWSCredentials, region: String, service: String) {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// What signing produced, each step kept so that a test can compare it with AWS's.
    public struct Signature: Sendable {
        public var canonicalRequest: String
        public var stringToSign: String
        public var signature: String
        public var authorization: String
    }

    /// Signs `request` at `date`: adds `X-Amz-Date` (and `X-Amz-Security-Token` for temporary
    /// credentials) unless present, then `Authorization`. S3 also gets `x-amz-content-sha256`.
    @discardableResult
    public func sign(_ request: inout SignableRequest, at date: Date) -> Signature {
        let stamp = Self.timestamp(date)
        if request.header("x-amz-date") == nil { request.headers.append((name: "X-Amz-Date", value: stamp.full)) }
        if let token = credentials.sessionToken, request.header("x-amz-security-token") == nil {
            request.headers.append((name: "X-Amz-Security-Token", value: token))
        }
        let payload = Self.hex(SHA256.hash(request.body))
        if service == "s3", request.header("x-amz-content-sha256") == nil {
            request.headers.append((name: "x-amz-content-sha256", value: payload))
        }
        let headers = Self.canonicalHeaders(request.headers)
        let canonical = [
            request.method, canonicalURI(request.path), Self.canonicalQuery(request.query), headers.block, headers.signed, payload,
        ].joined(separator: "\n")
        let result = finish(canonical, stamp: stamp)
        let authorization =
            "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope(stamp.day)), SignedHeaders=\(headers.signed), Signature=\(result.signature)"
        request.headers.append((name: "Authorization", value: authorization))
        return Signature(canonicalRequest: canonical, stringToSign: result.stringToSign, signature: result.signature, authorization: authorization)
    }

    /// A presigned URL (query authentication, unsigned payload): whoever holds it may make
    /// this one request until it expires, without credentials. Used for S3 objects.
    public func presign(_ request: SignableRequest, host: String, scheme: String, at date: Date, expires: Int) -> URL? {
        let stamp = Self.timestamp(date)
        var request = request
        request.headers = [(name: "host", value: host)]
        request.query += [
            (name: "X-Amz-Algorithm", value: "AWS4-HMAC-SHA256"),
            (name: "X-Amz-Credential", value: "\(credentials.accessKeyID)/\(scope(stamp.day))"),
            (name: "X-Amz-Date", value: stamp.full),
            (name: "X-Amz-Expires", value: String(expires)),
            (name: "X-Amz-SignedHeaders", value: "host"),
        ]
        if let token = credentials.sessionToken { request.query.append((name: "X-Amz-Security-Token", value: token)) }
        let canonical = [
            request.method, canonicalURI(request.path), Self.canonicalQuery(request.query), "host:\(host)\n", "host", "UNSIGNED-PAYLOAD",
        ].joined(separator: "\n")
        request.query.append((name: "X-Amz-Signature", value: finish(canonical, stamp: stamp).signature))
        return URL(string: "\(scheme)://\(host)\(request.target)")
    }

    private func finish(_ canonical: String, stamp: (day: String, full: String)) -> (stringToSign: String, signature: String) {
        let stringToSign = ["AWS4-HMAC-SHA256", stamp.full, scope(stamp.day), Self.hex(SHA256.hash(Array(canonical.utf8)))]
            .joined(separator: "\n")
        var key = Array("AWS4\(credentials.secretAccessKey)".utf8)
        for part in [stamp.day, region, service, "aws4_request"] {
            key = SHA256.hmac(key: key, message: Array(part.utf8))
        }
        let signature = Self.hex(SHA256.hmac(key: key, message: Array(stringToSign.utf8)))
        return (stringToSign, signature)
    }

    private func scope(_ day: String) -> String { "\(day)/\(region)/\(service)/aws4_request" }

    /// The path each segment encoded once; for every service but S3, first normalised
    /// (`.`, `..` and empty segments removed), as AWS specifies.
    func canonicalURI(_ path: String) -> String {
        guard service != "s3" else { return Self.encodePath(path) }
        var segments: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch segment {
            case ".": continue
            case "..": _ = segments.popLast()
            default: segments.append(segment)
            }
        }
        let trailing = path.hasSuffix("/") && !segments.isEmpty
        return Self.encodePath("/" + segments.joined(separator: "/") + (trailing ? "/" : ""))
    }

    static func canonicalQuery(_ query: [(name: String, value: String)]) -> String {
        query.map { (encode($0.name), encode($0.value)) }
            .sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            .map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// Lower-case names, sorted; values trimmed with inner runs of spaces folded to one; a
    /// repeated header's values joined by commas in their order.
    static func canonicalHeaders(_ headers: [(name: String, value: String)]) -> (block: String, signed: String) {
        var values: [String: [String]] = [:]
        for header in headers {
            let value = header.value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            values[header.name.lowercased(), default: []].append(value)
        }
        let names = values.keys.sorted()
        let block = names.map { "\($0):\(values[$0]!.joined(separator: ","))\n" }.joined()
        return (block, names.joined(separator: ";"))
    }

    private static let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~".utf8)

    /// RFC 3986 percent-encoding of everything but the unreserved characters, as AWS signs it.
    public static func encode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            if unreserved.contains(byte) {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    static func encodePath(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { encode(String($0)) }.joined(separator: "/")
    }

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        digest.map { String(format: "%02x", $0) }.joined()
    }

    /// `20150830` and `20150830T123600Z`, in UTC, by arithmetic (no formatter, no locale).
    static func timestamp(_ date: Date) -> (day: String, full: String) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        let day = String(format: "%04d%02d%02d", c.year!, c.month!, c.day!)
        return (day, day + String(format: "T%02d%02d%02dZ", c.hour!, c.minute!, c.second!))
    }
}
