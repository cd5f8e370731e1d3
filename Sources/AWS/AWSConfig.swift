import Foundation
import ReplCore
import ReplPlatform

/// Where a command's AWS credentials, region and endpoint come from, in the order the AWS CLI
/// and SDKs use: the environment, then the profile (`AWS_PROFILE`, else `default`) in
/// `~/.aws/credentials` and `~/.aws/config`, whose `credential_process` is run when it has no
/// keys. The manifest's `region` and `endpoint` win over all of these.
public struct AWSConfig: Sendable {
    public var environment: [String: String]
    public var home: String

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, home: String = NSHomeDirectory()) {
        self.environment = environment
        self.home = home
    }

    public var profile: String { nonEmpty(environment["AWS_PROFILE"]) ?? nonEmpty(environment["AWS_DEFAULT_PROFILE"]) ?? "default" }
    var credentialsFile: String { nonEmpty(environment["AWS_SHARED_CREDENTIALS_FILE"]) ?? "\(home)/.aws/credentials" }
    var configFile: String { nonEmpty(environment["AWS_CONFIG_FILE"]) ?? "\(home)/.aws/config" }

    /// The region: the manifest's, `AWS_REGION`, `AWS_DEFAULT_REGION`, then the profile's.
    public func region(manifest: String?) throws(AWSConfigError) -> String {
        if let region = nonEmpty(manifest) ?? nonEmpty(environment["AWS_REGION"]) ?? nonEmpty(environment["AWS_DEFAULT_REGION"]) {
            return region
        }
        if let region = try profileValues(in: configFile, config: true)?["region"].flatMap(nonEmpty) { return region }
        throw AWSConfigError(
            "no AWS region: set region: in the manifest's spec, AWS_REGION, or region in \(configFile) for profile \(profile)")
    }

    /// The EC2 endpoint: the manifest's, `AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL` (moto:
    /// `http://127.0.0.1:5000`), else AWS's own for the region.
    public func endpoint(manifest: String?, region: String, service: String = "ec2") throws(AWSConfigError) -> URL {
        let named =
            nonEmpty(manifest) ?? nonEmpty(environment["AWS_ENDPOINT_URL_\(service.uppercased())"]) ?? nonEmpty(environment["AWS_ENDPOINT_URL"])
        let text = named ?? "https://\(service).\(region).amazonaws.com"
        guard let url = URL(string: text), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host?.isEmpty == false else {
            throw AWSConfigError("endpoint \"\(text)\" is not an http(s) URL")
        }
        return url
    }

    /// The credentials: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and
    /// `AWS_SESSION_TOKEN`), else the profile's keys, else its `credential_process`.
    public func credentials() async throws(AWSConfigError) -> AWSCredentials {
        let id = nonEmpty(environment["AWS_ACCESS_KEY_ID"]), secret = nonEmpty(environment["AWS_SECRET_ACCESS_KEY"])
        if let id, let secret {
            return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: nonEmpty(environment["AWS_SESSION_TOKEN"]))
        }
        if (id == nil) != (secret == nil) {
            let (set, missing) = id == nil ? ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID") : ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            throw AWSConfigError("\(set) is set without \(missing)")
        }
        for (file, config) in [(credentialsFile, false), (configFile, true)] {
            guard let values = try profileValues(in: file, config: config) else { continue }
            let id = nonEmpty(values["aws_access_key_id"]), secret = nonEmpty(values["aws_secret_access_key"])
            if let id, let secret {
                return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: nonEmpty(values["aws_session_token"]))
            }
            if (id == nil) != (secret == nil) {
                throw AWSConfigError(
                    "\(file): profile \(profile) has \(id == nil ? "aws_secret_access_key without aws_access_key_id" : "aws_access_key_id without aws_secret_access_key")"
                )
            }
            if let command = nonEmpty(values["credential_process"]) { return try await run(command, from: file) }
        }
        throw AWSConfigError(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or keys or credential_process for profile \(profile) in \(credentialsFile) or \(configFile)"
        )
    }

    /// The profile's keys in `file`, or nil when the file or the profile is not there. In the
    /// config file a profile other than `default` is headed `[profile NAME]`.
    func profileValues(in file: String, config: Bool) throws(AWSConfigError) -> [String: String]? {
        guard let data = FileManager.default.contents(atPath: file) else { return nil }
        guard let text = String(data: data, encoding: .utf8) else { throw AWSConfigError("\(file): not UTF-8 text") }
        let wanted = config && profile != "default" ? ["profile \(profile)"] : [profile]
        var section: String?
        var values: [String: String]?
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if raw.first == " " || raw.first == "\t" { continue }  // a nested value (`s3 =` and its lines)
            if line.hasPrefix("[") {
                guard line.hasSuffix("]") else { throw AWSConfigError("\(file):\(number + 1): a section header without its ]") }
                let name = line.dropFirst().dropLast().split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
                section = name
                if wanted.contains(name) && values == nil { values = [:] }
                continue
            }
            guard let equals = line.firstIndex(of: "=") else {
                throw AWSConfigError("\(file):\(number + 1): expected key = value, found \"\(line.prefix(60))\"")
            }
            guard let section, wanted.contains(section) else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            values?[key] = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        }
        return values
    }

    /// Runs a `credential_process` (split into words as the AWS CLI splits it, no shell) and
    /// reads its JSON: `Version` 1, `AccessKeyId`, `SecretAccessKey`, optional `SessionToken`.
    func run(_ command: String, from file: String) async throws(AWSConfigError) -> AWSCredentials {
        let words = Self.words(command)
        guard let first = words.first, let executable = resolve(first) else {
            throw AWSConfigError("\(file): credential_process \"\(command)\": \(words.first ?? "") not found")
        }
        let result: ProcessResult
        do {
            result = try await SystemProcessRunner.run(
                executable, Array(words.dropFirst()), input: nil, timeout: 60, environment: environment, limit: 1 << 20)
        } catch {
            throw AWSConfigError("\(file): credential_process \"\(command)\" could not run: \(error)")
        }
        if result.timedOut {
            throw AWSConfigError("\(file): credential_process \"\(command)\" did not finish within 60 s (it was ended)")
        }
        guard result.status == 0 else {
            let said = result.stderrText.trimmingCharacters(in: .whitespacesAndNewlines).prefix(300)
            throw AWSConfigError("\(file): credential_process \"\(command)\" exited \(result.status)\(said.isEmpty ? "" : ": \(said)")")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: result.stdout)) as? [String: Any],
            (object["Version"] as? Int) == 1,
            let id = object["AccessKeyId"] as? String, !id.isEmpty,
            let secret = object["SecretAccessKey"] as? String, !secret.isEmpty
        else {
            throw AWSConfigError(
                "\(file): credential_process \"\(command)\" did not print {\"Version\": 1, \"AccessKeyId\": …, \"SecretAccessKey\": …}")
        }
        // Credentials that have expired are refused here, with the time, not by EC2 later.
        if let text = object["Expiration"] as? String {
            guard let expires = DateFormats.parse(text) else {
                throw AWSConfigError("\(file): credential_process \"\(command)\" gave an Expiration that is not a time: \(text.prefix(60))")
            }
            if expires <= Date() {
                throw AWSConfigError(
                    "\(file): credential_process \"\(command)\" gave credentials that expired at \(text.prefix(60)); renew them (aws sso login?)")
            }
        }
        return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: object["SessionToken"] as? String)
    }

    private func resolve(_ word: String) -> String? {
        if word.contains("/") {
            let path = word.hasPrefix("~/") ? home + word.dropFirst() : word
            return FileManager.default.isExecutableFile(atPath: path) ? path : nil
        }
        let path = environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(word)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// POSIX shell words: spaces separate, quotes group, a backslash escapes (outside single
    /// quotes); nothing is expanded.
    static func words(_ text: String) -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote: Character?
        var escaped = false
        for c in text {
            if escaped {
                current.append(c)
                escaped = false
            } else if c == "\\" && quote != "'" {
                escaped = true
                inWord = true
            } else if let q = quote {
                if c == q { quote = nil } else { current.append(c) }
            } else if c == "'" || c == "\"" {
                quote = c
                inWord = true
            } else if c == " " || c == "\t" {
                if inWord { words.append(current) }
                current = ""
                inWord = false
            } else {
                current.append(c)
                inWord = true
            }
        }
        if inWord { words.append(current) }
        return words
    }

    private func nonEmpty(_ text: String?) -> String? {
        guard let text = text?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
        return text
    }
}

/// What is missing or wrong in the AWS set-up, said so that the user can fix it.
public struct AWSConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
