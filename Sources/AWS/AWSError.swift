import Foundation

/// A failed AWS call: AWS's error code and message, or a transport failure; `kind` is what
/// the controller does about it.
public struct AWSError: Error, Sendable, Equatable, CustomStringConvertible {
    /// AWS's error code (`InsufficientInstanceCapacity`), or `Transport` when no answer came.
    public var code: String
    public var message: String
    /// The HTTP status, when an answer came.
    public var status: Int?
    public var action: String?

    public init(code: String, message: String, status: Int? = nil, action: String? = nil) {
        self.code = code
        self.message = message
        self.status = status
        self.action = action
    }

    static func transport(_ message: String) -> AWSError { AWSError(code: "Transport", message: message) }

    public enum Kind: Sendable, Equatable {
        /// No capacity for this instance type in this zone now: the breaker.
        case capacity
        /// An account limit (vCPUs, instances): the breaker, with quota advice.
        case quota
        /// Throttled, or AWS failed (5xx), or no answer: back off and try again.
        case throttled
        /// The thing named does not exist (a delete of it is done).
        case notFound
        /// Credentials missing, wrong or expired: stop and say what to fix.
        case auth
        /// The request itself is wrong (an AMI that does not exist, a bad parameter): the run fails.
        case invalid
    }

    public var kind: Kind {
        switch code {
        case "InsufficientInstanceCapacity", "InsufficientHostCapacity", "InsufficientReservedInstanceCapacity",
            "InsufficientCapacity":
            return .capacity
        case "VcpuLimitExceeded", "InstanceLimitExceeded", "MaxSpotInstanceCountExceeded", "ResourceLimitExceeded":
            return .quota
        case "RequestLimitExceeded", "Throttling", "ThrottlingException", "SlowDown", "RequestThrottled", "ServiceUnavailable",
            "InternalError", "InternalFailure", "Unavailable", "Transport":
            return .throttled
        case "AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken",
            "RequestExpired", "OptInRequired", "MissingAuthenticationToken", "IncompleteSignature", "AccessDenied",
            "InvalidAccessKeyId", "ExpiredTokenException", "UnrecognizedClientException":
            return .auth
        default:
            if code.hasSuffix(".NotFound") || code == "NoSuchKey" || code == "NoSuchBucket" { return .notFound }
            if let status, status >= 500 { return .throttled }
            return .invalid
        }
    }

    public var description: String {
        let what = action.map { "\($0): " } ?? ""
        return code == "Transport" ? "\(what)no answer: \(message)" : "\(what)\(code): \(message)"
    }

    /// The error an answer carries (EC2's `<Response><Errors><Error>` or S3's `<Error>`), or
    /// one named by its status when the body says nothing readable.
    static func from(_ response: HTTPResponse, action: String) -> AWSError {
        let tree = XMLTree.parse(response.body)
        let error = tree?.child("Errors")?.child("Error") ?? (tree?.name == "Error" ? tree : nil)
        if let code = error?.text("Code"), !code.isEmpty {
            return AWSError(code: code, message: error?.text("Message") ?? "", status: response.status, action: action)
        }
        let code = response.status == 503 ? "ServiceUnavailable" : response.status >= 500 ? "InternalError" : "HTTP\(response.status)"
        let body = String(decoding: response.body.prefix(200), as: UTF8.self)
        return AWSError(code: code, message: "HTTP \(response.status) \(body)", status: response.status, action: action)
    }
}
