import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// One HTTP exchange, as the AWS clients make it: already signed.
public struct HTTPRequest: Sendable {
    public var url: URL
    public var method: String
    public var headers: [(name: String, value: String)]
    public var body: Data

    public init(url: URL, method: String, headers: [(name: String, value: String)], body: Data) {
        self.url = url
        self.method = method
        self.headers = headers
        self.body = body
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var body: Data

    public init(status: Int, body: Data) {
        self.status = status
        self.body = body
    }
}

/// Where requests go: URLSession for AWS and moto; the tests put a fault layer in front.
public protocol AWSTransport: Sendable {
    func send(_ request: HTTPRequest, timeout: TimeInterval) async throws(AWSError) -> HTTPResponse
}

/// HTTP through URLSession (Foundation on macOS, FoundationNetworking on Linux).
public struct URLSessionTransport: AWSTransport {
    private let session: URLSession

    public init() {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpCookieStorage = nil
        configuration.urlCache = nil
        session = URLSession(configuration: configuration)
    }

    public func send(_ request: HTTPRequest, timeout: TimeInterval) async throws(AWSError) -> HTTPResponse {
        var r = URLRequest(url: request.url, cachePolicy: .reloadIgnoringLocalAndRemoteCacheData, timeoutInterval: timeout)
        r.httpMethod = request.method
        for header in request.headers where header.name.lowercased() != "host" {
            r.setValue(header.value, forHTTPHeaderField: header.name)
        }
        r.httpBody = request.body
        do {
            let (data, response) = try await session.data(for: r)
            return HTTPResponse(status: (response as? HTTPURLResponse)?.statusCode ?? 0, body: data)
        } catch {
            throw AWSError.transport("\(request.url.host ?? "?"): \(error.localizedDescription)")
        }
    }
}
