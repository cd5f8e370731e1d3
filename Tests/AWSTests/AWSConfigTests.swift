import Foundation
import Testing

@testable import AWS

/// Credentials, region and endpoint found where the AWS CLI finds them, each failure said with
/// the file (and line) to fix.
struct AWSConfigTests {
    final class Home: @unchecked Sendable {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("repl-aws-\(UUID().uuidString)")
        init() { try? FileManager.default.createDirectory(at: dir.appendingPathComponent(".aws"), withIntermediateDirectories: true) }
        deinit { try? FileManager.default.removeItem(at: dir) }
        func write(_ name: String, _ text: String, executable: Bool = false) throws {
            let path = dir.appendingPathComponent(name).path
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            if executable { try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: path) }
        }
        func config(_ env: [String: String] = [:]) -> AWSConfig {
            AWSConfig(environment: ["PATH": "/usr/bin:/bin"].merging(env) { $1 }, home: dir.path)
        }
    }

    @Test func theEnvironmentComesFirst() async throws {
        let home = Home()
        try home.write(".aws/credentials", "[default]\naws_access_key_id = FROMFILE\naws_secret_access_key = s\n")
        let env = ["AWS_ACCESS_KEY_ID": "FROMENV", "AWS_SECRET_ACCESS_KEY": "e", "AWS_SESSION_TOKEN": "t"]
        #expect(try await home.config(env).credentials() == AWSCredentials(accessKeyID: "FROMENV", secretAccessKey: "e", sessionToken: "t"))
        #expect(try await home.config().credentials() == AWSCredentials(accessKeyID: "FROMFILE", secretAccessKey: "s"))
        await #expect(throws: AWSConfigError("AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY")) {
            try await home.config(["AWS_ACCESS_KEY_ID": "half"]).credentials()
        }
    }

    @Test func aNamedProfileIsReadFromBothFiles() async throws {
        let home = Home()
        try home.write(
            ".aws/credentials",
            "# keys\n[default]\naws_access_key_id = D\naws_secret_access_key = d\n\n[work]\naws_access_key_id = W\naws_secret_access_key = w\n")
        try home.write(".aws/config", "[default]\nregion = eu-west-1\n[profile work]\nregion = us-west-2\ns3 =\n  max_concurrent_requests = 4\n")
        let work = home.config(["AWS_PROFILE": "work"])
        #expect(try await work.credentials().accessKeyID == "W")
        #expect(try work.region(manifest: nil) == "us-west-2")
        #expect(try home.config().region(manifest: nil) == "eu-west-1")
        #expect(try work.region(manifest: "ap-south-1") == "ap-south-1")
        #expect(try home.config(["AWS_REGION": "sa-east-1"]).region(manifest: nil) == "sa-east-1")
        #expect(throws: AWSConfigError.self) { try home.config(["AWS_PROFILE": "none"]).region(manifest: nil) }
    }

    @Test func aCredentialProcessIsRunWithoutAShell() async throws {
        let home = Home()
        let script = home.dir.appendingPathComponent("creds.sh").path
        try home.write(
            "creds.sh",
            "#!/bin/sh\nprintf '{\"Version\": 1, \"AccessKeyId\": \"%s\", \"SecretAccessKey\": \"p\", \"SessionToken\": \"tok\"}' \"$1\"\n",
            executable: true)
        try home.write(".aws/config", "[profile sso]\ncredential_process = \(script) 'two words'\n")
        let creds = try await home.config(["AWS_PROFILE": "sso"]).credentials()
        #expect(creds == AWSCredentials(accessKeyID: "two words", secretAccessKey: "p", sessionToken: "tok"))
        // One that leaves a child running (a token cache's refresher) is done when it exits: its
        // output is a file, not a pipe the child holds open.
        let pidFile = home.dir.appendingPathComponent("child.pid").path
        try home.write(
            "creds.sh",
            "#!/bin/sh\nsleep 30 &\necho $! > \(pidFile)\necho '{\"Version\": 1, \"AccessKeyId\": \"K\", \"SecretAccessKey\": \"S\"}'\n",
            executable: true)
        let started = Date()
        #expect(try await home.config(["AWS_PROFILE": "sso"]).credentials().accessKeyID == "K")
        #expect(Date().timeIntervalSince(started) < 10)
        if let pid = Int32((try? String(contentsOfFile: pidFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") {
            kill(pid, SIGKILL)
        }
        // Credentials that expired are refused with the time (found by attacking: used, and refused by EC2 later).
        try home.write(
            "creds.sh",
            "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"K\", \"SecretAccessKey\": \"S\", \"Expiration\": \"2000-01-01T00:00:00Z\"}'\n",
            executable: true)
        await #expect(throws: AWSConfigError.self) { try await home.config(["AWS_PROFILE": "sso"]).credentials() }
        try home.write("creds.sh", "#!/bin/sh\necho 'token expired, run aws sso login' >&2\nexit 1\n", executable: true)
        do {
            _ = try await home.config(["AWS_PROFILE": "sso"]).credentials()
            Issue.record("a failed credential_process gave credentials")
        } catch {
            #expect(error.description.contains("exited 1: token expired, run aws sso login"), "\(error)")
            #expect(error.description.contains(".aws/config"), "\(error)")
        }
    }

    @Test func brokenFilesAreNamedWithTheirLine() async throws {
        let home = Home()
        try home.write(".aws/credentials", "[default\naws_access_key_id = X\n")
        await #expect(throws: AWSConfigError("\(home.dir.path)/.aws/credentials:1: a section header without its ]")) {
            try await home.config().credentials()
        }
        try home.write(".aws/credentials", "[default]\naws_access_key_id = X\n")
        do {
            _ = try await home.config().credentials()
            Issue.record("half a key pair gave credentials")
        } catch {
            #expect(error.description.contains("profile default has aws_access_key_id without aws_secret_access_key"), "\(error)")
        }
        try home.write(".aws/credentials", "")
        do {
            _ = try await home.config().credentials()
            Issue.record("no credentials gave credentials")
        } catch {
            #expect(error.description.hasPrefix("no AWS credentials: set AWS_ACCESS_KEY_ID"), "\(error)")
        }
    }

    @Test func theEndpointIsTheManifestsTheEnvironmentsOrAWSs() throws {
        let home = Home()
        #expect(try home.config().endpoint(manifest: nil, region: "eu-west-1").absoluteString == "https://ec2.eu-west-1.amazonaws.com")
        let moto = home.config(["AWS_ENDPOINT_URL": "http://127.0.0.1:5000"])
        #expect(try moto.endpoint(manifest: nil, region: "eu-west-1").absoluteString == "http://127.0.0.1:5000")
        #expect(try moto.endpoint(manifest: "http://127.0.0.1:6000", region: "x").port == 6000)
        #expect(throws: AWSConfigError.self) { try home.config().endpoint(manifest: "ftp://x", region: "r") }
    }

    @Test func wordsAreSplitAsTheAWSCLISplitsThem() {
        #expect(AWSConfig.words(#"a 'b c' "d \"e\"" f\ g  "#) == ["a", "b c", #"d "e""#, "f g"])
        #expect(AWSConfig.words("") == [])
    }
}
