import AWS
import Foundation

/// What EC2 does and moto does not, in front of moto (#19): `ClientToken` idempotency (a
/// repeated token gives the first launch's instance back, in its state now; the same token
/// with other parameters is `IdempotentParameterMismatch`), instances `pending` for a while after
/// launch, and a list that does not show an instance yet right after its launch (eventual
/// consistency). Each is on unless turned off, so the provider's tests face the stricter EC2.
final class EC2Semantics: AWSTransport, @unchecked Sendable {
    let inner: any AWSTransport
    private let lock = NSLock()
    /// Token → (the launch's form without its token, the instance id).
    private var tokens: [String: (form: String, id: String)] = [:]
    private var launched: [String: Date] = [:]
    /// How long an instance shows `pending` after its launch.
    var pendingFor: TimeInterval
    /// How long a filtered `DescribeInstances` leaves a new instance out.
    var invisibleFor: TimeInterval
    /// Called with each new instance and its user data (``InstanceRunner`` runs it).
    var onLaunch: (@Sendable (String, Data?) -> Void)?
    /// Called with the instances a terminate named.
    var onTerminate: (@Sendable ([String]) -> Void)?
    /// Instance types EC2 has no capacity for: their launches fail `InsufficientInstanceCapacity`.
    var noCapacityFor: Set<String> {
        get { lock.withLock { short } }
        set { lock.withLock { short = newValue } }
    }
    private var short: Set<String> = []

    init(_ inner: any AWSTransport = URLSessionTransport(), pendingFor: TimeInterval = 2, invisibleFor: TimeInterval = 2) {
        self.inner = inner
        self.pendingFor = pendingFor
        self.invisibleFor = invisibleFor
    }

    /// Instances launched through this layer, by id.
    var launchedIDs: [String] { lock.withLock { Array(launched.keys) } }

    func send(_ request: HTTPRequest, timeout: TimeInterval) async throws(AWSError) -> HTTPResponse {
        let form = Self.form(request.body)
        switch form.first(where: { $0.0 == "Action" })?.1 {
        case "RunInstances": return try await runInstances(request, form: form, timeout: timeout)
        case "DescribeInstances": return try await describeInstances(request, form: form, timeout: timeout)
        case "TerminateInstances":
            let response = try await inner.send(request, timeout: timeout)
            if response.status == 200 { onTerminate?(form.filter { $0.0.hasPrefix("InstanceId.") }.map(\.1)) }
            return response
        default: return try await inner.send(request, timeout: timeout)
        }
    }

    func runInstances(_ request: HTTPRequest, form: [(String, String)], timeout: TimeInterval) async throws(AWSError) -> HTTPResponse {
        if let type = form.first(where: { $0.0 == "InstanceType" })?.1, noCapacityFor.contains(type) {
            return Self.error(
                500, "InsufficientInstanceCapacity", "We currently do not have sufficient \(type) capacity in the Availability Zone you requested")
        }
        let token = form.first { $0.0 == "ClientToken" }?.1
        let rest = form.filter { $0.0 != "ClientToken" }.map { "\($0.0)=\($0.1)" }.sorted().joined(separator: "&")
        if let token, let earlier = lock.withLock({ tokens[token] }) {
            guard earlier.form == rest else {
                return Self.error(400, "IdempotentParameterMismatch", "the client token \(token) was used with other parameters")
            }
            // The first launch's instance, as it is now (terminated too).
            let described = try await inner.send(
                Self.request(like: request, ["Action": "DescribeInstances", "Version": "2016-11-15", "InstanceId.1": earlier.id]), timeout: timeout)
            guard described.status == 200, let tree = XMLTree.parse(described.body),
                let instances = tree.child("reservationSet")?.child("item")?.child("instancesSet")
            else { return described }
            let answer = XMLTree(
                name: "RunInstancesResponse", text: "", children: [XMLTree(name: "requestId", text: "replayed", children: []), instances])
            return HTTPResponse(status: 200, body: Data(rewriteStates(answer).xml.utf8))
        }
        let response = try await inner.send(request, timeout: timeout)
        guard response.status == 200, let tree = XMLTree.parse(response.body) else { return response }
        let ids = tree.items("instancesSet").compactMap { $0.text("instanceId") }
        lock.withLock {
            for id in ids { launched[id] = Date() }
            if let token, let id = ids.first { tokens[token] = (rest, id) }
        }
        let userData = form.first { $0.0 == "UserData" }.flatMap { Data(base64Encoded: $0.1) }
        for id in ids { onLaunch?(id, userData) }
        return HTTPResponse(status: 200, body: Data(rewriteStates(tree).xml.utf8))
    }

    func describeInstances(_ request: HTTPRequest, form: [(String, String)], timeout: TimeInterval) async throws(AWSError) -> HTTPResponse {
        let response = try await inner.send(request, timeout: timeout)
        guard response.status == 200, var tree = XMLTree.parse(response.body) else { return response }
        // Asked by id, an instance is found at once; a filtered list lags behind its launch.
        if !form.contains(where: { $0.0.hasPrefix("InstanceId.") }), let index = tree.children.firstIndex(where: { $0.name == "reservationSet" }) {
            let now = Date()
            let young = lock.withLock { Set(launched.filter { now.timeIntervalSince($0.value) < invisibleFor }.keys) }
            tree.children[index].children.removeAll { reservation in
                reservation.items("instancesSet").contains { young.contains($0.text("instanceId") ?? "") }
            }
        }
        return HTTPResponse(status: 200, body: Data(rewriteStates(tree).xml.utf8))
    }

    /// Instances younger than `pendingFor` that moto calls running are pending.
    func rewriteStates(_ tree: XMLTree) -> XMLTree {
        let now = Date()
        let young = lock.withLock { Set(launched.filter { now.timeIntervalSince($0.value) < pendingFor }.keys) }
        func walk(_ node: XMLTree) -> XMLTree {
            var node = node
            if node.name == "item", let id = node.text("instanceId"), young.contains(id), node.text("instanceState", "name") == "running",
                let i = node.children.firstIndex(where: { $0.name == "instanceState" })
            {
                node.children[i] = XMLTree(
                    name: "instanceState", text: "",
                    children: [XMLTree(name: "code", text: "0", children: []), XMLTree(name: "name", text: "pending", children: [])])
                return node
            }
            node.children = node.children.map(walk)
            return node
        }
        return walk(tree)
    }

    static func form(_ body: Data) -> [(String, String)] {
        String(decoding: body, as: UTF8.self).split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
            return (parts[0], parts.count > 1 ? parts[1] : "")
        }
    }

    /// A request of this layer's own to moto (which checks no signature here), with the
    /// original's headers so that moto reads the same region.
    static func request(like original: HTTPRequest, _ fields: [String: String]) -> HTTPRequest {
        let body = fields.sorted { $0.key < $1.key }.map { "\(SigV4.encode($0.key))=\(SigV4.encode($0.value))" }.joined(separator: "&")
        return HTTPRequest(url: original.url, method: "POST", headers: original.headers, body: Data(body.utf8))
    }

    static func error(_ status: Int, _ code: String, _ message: String) -> HTTPResponse {
        HTTPResponse(
            status: status,
            body: Data(
                "<?xml version=\"1.0\"?><Response><Errors><Error><Code>\(code)</Code><Message>\(message)</Message></Error></Errors></Response>".utf8))
    }
}

extension XMLTree {
    /// The tree as XML again (names and text; what ``XMLTree/parse(_:)`` reads back the same).
    var xml: String {
        let escaped = text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(
            of: ">", with: "&gt;")
        return "<\(name)>\(escaped)\(children.map(\.xml).joined())</\(name)>"
    }
}
