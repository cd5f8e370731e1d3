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

/// SHA-256 and HMAC-SHA256 against their standards' own vectors (FIPS 180-4 examples, NIST's
/// long message, RFC 4231 cases 1, 2, 6 and 7).
struct SHA256Tests {
    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
    static func bytes(_ hex: String) -> [UInt8] {
        stride(from: 0, to: hex.count, by: 2).map { UInt8(hex.dropFirst($0).prefix(2), radix: 16)! }
    }

    @Test func digestsAreNISTs() {
        #expect(Self.hex(SHA256.hash(Array("".utf8))) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Self.hex(SHA256.hash(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            Self.hex(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(
            Self.hex(SHA256.hash([UInt8](repeating: 0x61, count: 1_000_000)))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        // Lengths around the padding boundary (55, 56, 64 bytes) against known digests.
        #expect(
            Self.hex(SHA256.hash([UInt8](repeating: 0x61, count: 64)))
                == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb")
    }

    @Test func hmacsAreRFC4231s() {
        #expect(
            Self.hex(SHA256.hmac(key: [UInt8](repeating: 0x0b, count: 20), message: Array("Hi There".utf8)))
                == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(
            Self.hex(SHA256.hmac(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8)))
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        let longKey = [UInt8](repeating: 0xaa, count: 131)
        #expect(
            Self.hex(SHA256.hmac(key: longKey, message: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)))
                == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        let text =
            "This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm."
        #expect(
            Self.hex(SHA256.hmac(key: longKey, message: Array(text.utf8)))
                == "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2")
    }
}
