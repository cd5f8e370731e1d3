import Foundation

/// S3 spoken natively, for the status channel of instances: one bucket, objects put and read
/// whole, a listing by prefix, and presigned URLs an instance uses without credentials.
/// Addressed path-style (`endpoint/bucket/key`) at a custom endpoint (moto), virtual-hosted
/// (`bucket.s3.REGION.amazonaws.com`) at AWS's own.
public struct S3Client: Sendable {
    public let endpoint: URL
    public let region: String
    public let signer: SigV4
    public let transport: any AWSTransport
    public var timeout: TimeInterval = 30
    let now: @Sendable () -> Date

    public init(
        endpoint: URL, region: String, credentials: AWSCredentials, transport: any AWSTransport = URLSessionTransport(),
        now: @escaping @Sendable () -> Date = Date.init
    ) {
        self.endpoint = endpoint
        self.region = region
        self.signer = SigV4(credentials: credentials, region: region, service: "s3")
        self.transport = transport
        self.now = now
    }

    /// AWS's own S3 endpoint for a region.
    public static func awsEndpoint(region: String) -> URL { URL(string: "https://s3.\(region).amazonaws.com")! }

    var pathStyle: Bool { !(endpoint.host ?? "").hasSuffix(".amazonaws.com") }

    /// The scheme, host and path of an object (`key` nil: the bucket).
    func location(bucket: String, key: String?) -> (scheme: String, host: String, path: String) {
        let host = QueryAPI.hostHeader(endpoint)
        let base = endpoint.path.hasSuffix("/") ? String(endpoint.path.dropLast()) : endpoint.path
        let object = key.map { "/" + $0 } ?? "/"
        if pathStyle { return (endpoint.scheme ?? "https", host, base + "/" + bucket + (key == nil ? "" : object)) }
        return (endpoint.scheme ?? "https", "\(bucket).\(host)", base + object)
    }

    /// One signed request; the answer, or the error S3 gave.
    func send(
        _ method: String, bucket: String, key: String? = nil, query: [(String, String)] = [], body: Data = Data(),
        headers extra: [(String, String)] = [], action: String
    ) async throws(AWSError) -> HTTPResponse {
        let (scheme, host, path) = location(bucket: bucket, key: key)
        var request = SignableRequest(method: method, path: path, query: query, headers: [("Host", host)] + extra, body: body)
        signer.sign(&request, at: now())
        var components = URLComponents()
        components.scheme = scheme
        components.percentEncodedHost = host.split(separator: ":").first.map(String.init)
        if let port = endpoint.port { components.port = port }
        components.percentEncodedPath = SigV4.encodePath(path)
        if !query.isEmpty { components.percentEncodedQuery = query.map { "\(SigV4.encode($0.0))=\(SigV4.encode($0.1))" }.joined(separator: "&") }
        guard let url = components.url else { throw AWSError(code: "InvalidURI", message: "cannot address \(path)", action: action) }
        let response = try await transport.send(HTTPRequest(url: url, method: method, headers: request.headers, body: body), timeout: timeout)
        guard (200..<300).contains(response.status) else { throw AWSError.from(response, action: action) }
        return response
    }

    /// Makes the bucket (in the client's region); one this account already owns is fine.
    public func createBucket(_ bucket: String) async throws(AWSError) {
        let body =
            region == "us-east-1"
            ? Data()
            : Data(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>\(region)</LocationConstraint></CreateBucketConfiguration>"
                    .utf8)
        do {
            _ = try await send("PUT", bucket: bucket, body: body, action: "CreateBucket")
        } catch  where error.code == "BucketAlreadyOwnedByYou" {
            return
        }
    }

    /// Objects under `prefix` expire `days` after they were written (the channel of machines
    /// long gone is not kept for ever).
    public func expire(_ bucket: String, prefix: String, days: Int) async throws(AWSError) {
        let body = Data(
            """
            <LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule><ID>repl-expire</ID><Filter><Prefix>\(prefix)</Prefix></Filter><Status>Enabled</Status><Expiration><Days>\(days)</Days></Expiration></Rule></LifecycleConfiguration>
            """.utf8)
        // The body's checksum is required: S3 takes a SHA-256 one where it once took only MD5
        // (its "flexible checksums"), so no MD5 is written here.
        let checksum = Data(SHA256.hash(body)).base64EncodedString()
        _ = try await send(
            "PUT", bucket: bucket, query: [("lifecycle", "")], body: body,
            headers: [("x-amz-checksum-sha256", checksum), ("x-amz-sdk-checksum-algorithm", "SHA256"), ("Content-Type", "application/xml")],
            action: "PutBucketLifecycleConfiguration")
    }

    /// Whether the bucket is there and this account's to use: returns when it is, throws what
    /// S3 said otherwise (status 404: there is none).
    public func headBucket(_ bucket: String) async throws(AWSError) {
        _ = try await send("HEAD", bucket: bucket, action: "HeadBucket")
    }

    public func putObject(_ bucket: String, _ key: String, _ data: Data) async throws(AWSError) {
        _ = try await send(
            "PUT", bucket: bucket, key: key, body: data, headers: [("Content-Type", "application/octet-stream")], action: "PutObject")
    }

    /// The object's bytes (from byte `offset` on: none when it has no more), or nil when there
    /// is no such object.
    public func getObject(_ bucket: String, _ key: String, from offset: Int = 0) async throws(AWSError) -> Data? {
        do {
            let response = try await send(
                "GET", bucket: bucket, key: key, headers: offset > 0 ? [("Range", "bytes=\(offset)-")] : [], action: "GetObject")
            // A server that ignores the range answers the whole object (200, not 206).
            if offset > 0, response.status == 200 {
                return response.body.count > offset ? response.body.subdata(in: offset..<response.body.count) : Data()
            }
            return response.body
        } catch  where error.code == "NoSuchKey" || error.status == 404 && error.code != "NoSuchBucket" {
            return nil
        } catch  where error.status == 416 {
            return Data()
        }
    }

    /// An object as a listing shows it: its key, size and entity tag (which changes with its bytes).
    public struct Listed: Sendable, Equatable {
        public var key: String
        public var size: Int
        public var etag: String
    }

    /// Every key under `prefix` with its size and tag, following continuation tokens to the
    /// end (a failed page fails the listing).
    public func listObjects(_ bucket: String, prefix: String) async throws(AWSError) -> [Listed] {
        var out: [Listed] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix)]
            if let token { query.append(("continuation-token", token)) }
            let response = try await send("GET", bucket: bucket, query: query, action: "ListObjectsV2")
            guard let tree = XMLTree.parse(response.body), tree.name == "ListBucketResult" else {
                throw AWSError(code: "MalformedResponse", message: "the listing is not S3's", action: "ListObjectsV2")
            }
            for item in tree.all("Contents") {
                if let key = item.text("Key") {
                    out.append(Listed(key: key, size: Int(item.text("Size") ?? "") ?? 0, etag: item.text("ETag") ?? ""))
                }
            }
            token = tree.text("IsTruncated") == "true" ? tree.text("NextContinuationToken") : nil
        } while token != nil
        return out
    }

    /// A URL that lets its holder (an instance, without credentials) `method` one object until
    /// `expires` seconds from now (at most 7 days, SigV4's limit).
    public func presignedURL(_ method: String, bucket: String, key: String, expires: Int) -> URL? {
        let (scheme, host, path) = location(bucket: bucket, key: key)
        return signer.presign(
            SignableRequest(method: method, path: path, headers: [("Host", host)]), host: host, scheme: scheme, at: now(),
            expires: min(expires, 604_800))
    }
}
