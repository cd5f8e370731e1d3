import Foundation
import Testing

@testable import AWS

/// The signer against AWS's published Signature Version 4 test suite (Fixtures/sigv4, Apache
/// 2.0, see its NOTICE): for each request, the canonical request, the string to sign and the
/// Authorization header must be AWS's to the byte. Left out are the suite's cases that do not
/// follow its own specification (a multi-line header value, a space in the path, a body whose
/// length is signed in one file and not in the next) and a token added after signing.
struct SigV4Tests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/sigv4")
    static let cases: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: fixtures.path)) ?? []
        return names.filter { !["LICENSE", "NOTICE"].contains($0) }.sorted()
    }()
    static let signer = SigV4(
        credentials: AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        region: "us-east-1", service: "service")
    static let date = Date(timeIntervalSince1970: 1_440_938_160)  // 2015-08-30T12:36:00Z

    @Test func theSuiteIsHere() {
        #expect(Self.cases.count >= 25, "\(Self.cases)")
    }

    @Test(arguments: cases)
    func aRequestIsSignedAsAWSSignsIt(_ name: String) throws {
        let dir = Self.fixtures.appendingPathComponent(name)
        func file(_ ext: String) throws -> String { try String(contentsOf: dir.appendingPathComponent("\(name).\(ext)"), encoding: .utf8) }
        var request = try Self.parse(try file("req"))
        let signature = Self.signer.sign(&request, at: Self.date)
        #expect(signature.canonicalRequest == (try file("creq")))
        #expect(signature.stringToSign == (try file("sts")))
        #expect(signature.authorization == (try file("authz")))
    }

    /// The suite's `.req`: a request line, `Name:value` headers, a blank line and the body.
    static func parse(_ text: String) throws -> SignableRequest {
        let parts = text.components(separatedBy: "\n\n")
        var lines = parts[0].split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let requestLine = lines.removeFirst()
        let words = requestLine.split(separator: " ")
        let target = words[1...].dropLast().joined(separator: " ")
        let pathAndQuery = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let query: [(String, String)] =
            pathAndQuery.count > 1
            ? pathAndQuery[1].split(separator: "&").map { pair in
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                return (String(kv[0]).removingPercentEncoding ?? String(kv[0]), kv.count > 1 ? String(kv[1]).removingPercentEncoding ?? "" : "")
            } : []
        let headers = lines.map { line -> (String, String) in
            let colon = line.firstIndex(of: ":")!
            return (String(line[..<colon]), String(line[line.index(after: colon)...]))
        }
        return SignableRequest(
            method: String(words[0]), path: String(pathAndQuery[0]), query: query, headers: headers,
            body: Data((parts.count > 1 ? parts[1...].joined(separator: "\n\n") : "").utf8))
    }

    /// AWS's own presigned-URL example (S3 documentation, "Authenticating Requests: Using
    /// Query Parameters"): GET examplebucket/test.txt for 86400 s from 2013-05-24T00:00:00Z.
    @Test func aPresignedURLIsAWSExample() throws {
        let s3 = SigV4(
            credentials: AWSCredentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            region: "us-east-1", service: "s3")
        let url = try #require(
            s3.presign(
                SignableRequest(method: "GET", path: "/test.txt"), host: "examplebucket.s3.amazonaws.com", scheme: "https",
                at: Date(timeIntervalSince1970: 1_369_353_600), expires: 86400))
        #expect(url.query?.hasSuffix("X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404") == true, "\(url)")
    }
}
