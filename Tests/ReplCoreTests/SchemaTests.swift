import Foundation
import Testing
import Yams

@testable import ReplCore

/// The JSON Schemas in `manifests/` and the parser must agree: every example is
/// valid to both, and what the schema can see as invalid, the parser rejects too.
struct SchemaTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let examples: [String] = {
        let dir = root.appendingPathComponent("examples")
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? [])
            .filter { $0.hasSuffix(".yaml") }.sorted().map { dir.appendingPathComponent($0).path }
    }()

    @Test func theRequiredExamplesExist() {
        let names = Set(Self.examples.map { ($0 as NSString).lastPathComponent })
        for required in ["hello.yaml", "replicas.yaml", "bootstrap.yaml", "snapshot-then-clone.yaml", "long-lived.yaml"] {
            #expect(names.contains(required), "examples/\(required) is missing")
        }
    }

    @Test(arguments: examples)
    func exampleValidatesAgainstSchemaAndParses(_ path: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let validator = try SchemaValidator(directory: Self.root.appendingPathComponent("manifests"))
        for document in try Yams.load_all(yaml: text) where !(document is NSNull) {
            let problems = validator.validate(document, against: "repl.schema.json")
            #expect(problems.isEmpty, "\(path): \(problems)")
        }
        let set = try ManifestParser().parse(text, file: path)
        #expect(!set.documents.isEmpty)
    }

    /// Errors the schema cannot express: they need other documents, the store or
    /// trimming whitespace. Every other invalid manifest must fail the schema too.
    static let semanticOnly: Set<String> = [
        "from: no Snapshot", "from: no Run", "is already defined", "command: is empty",
        "is longer than the maximum", "userData: is not valid YAML",
        "the #cloud-config document must be a mapping",
        "does not work under Rosetta", "has no cloud-init image", "it could never be taken",
        "in all; at most",  // env's total size: a sum over its values
    ]

    /// Every document, or `nil` when the YAML itself is invalid.
    static func loadAll(_ yaml: String) -> [Any]? {
        guard let parser = try? Parser(yaml: yaml) else { return nil }
        var documents: [Any] = []
        do {
            while let node = try parser.nextRoot() { documents.append(node.any) }
        } catch { return nil }
        return documents
    }

    @Test func schemaRejectsWhatTheParserRejects() throws {
        let validator = try SchemaValidator(directory: Self.root.appendingPathComponent("manifests"))
        var checked = 0
        for c in ManifestErrorTests.cases {
            guard let documents = Self.loadAll(c.yaml) else { continue }  // YAML syntax errors: no documents to check
            let schemaRejects = documents.contains { doc in !validator.validate(doc, against: "repl.schema.json").isEmpty }
            let semantic = c.errors.allSatisfy { e in Self.semanticOnly.contains { e.contains($0) } }
            #expect(schemaRejects || semantic, "the schema accepts a manifest the parser rejects: \(c.errors)")
            checked += 1
        }
        #expect(checked >= 30)
    }

    @Test func schemaAcceptsWhatTheParserAccepts() throws {
        let validator = try SchemaValidator(directory: Self.root.appendingPathComponent("manifests"))
        let valid = [
            "kind: Run\nname: a\n", "kind: Run\nname: a\nmaxDuration: 60000\nhold: 0\n",
            "kind: Run\nname: a\nspec: ubuntu:24.04:arm64\nreplicas: 0\n", "kind: Run\nname: a\nspec: \"::amd64\"\n",
            "kind: Run\nname: a\nmaxDuration: 1h30m\nenv: {A_1: 3, B: x}\n",
            "kind: Run\nname: a\nresources: {cpus: 2, memory: 4G, disk: 64GiB}\nisolated: true\nuser: dev\nuserData: \"#cloud-config\\nruncmd: [ls]\\n\"\n",
        ]
        for yaml in valid {
            _ = try ManifestParser().parse(yaml, file: "v.yaml")
            let doc = try #require(try Yams.load(yaml: yaml))
            #expect(validator.validate(doc, against: "repl.schema.json").isEmpty, "\(yaml)")
        }
    }
}

/// A JSON Schema validator for the keywords our schemas use (type, const, enum,
/// pattern, min/maxLength, minimum/maximum, required, properties,
/// additionalProperties, propertyNames, items, oneOf, not, $ref to $defs and sibling files).
struct SchemaValidator {
    let schemas: [String: [String: Any]]

    init(directory: URL) throws {
        var schemas: [String: [String: Any]] = [:]
        for file in try FileManager.default.contentsOfDirectory(atPath: directory.path) where file.hasSuffix(".json") {
            let data = try Data(contentsOf: directory.appendingPathComponent(file))
            schemas[file] = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        }
        self.schemas = schemas
    }

    func validate(_ value: Any, against file: String) -> [String] {
        guard let schema = schemas[file] else { return ["no schema \(file)"] }
        return check(value, schema, file: file, path: "$")
    }

    private func resolve(_ ref: String, file: String) -> ([String: Any], String)? {
        if ref.hasPrefix("#/$defs/") {
            let name = String(ref.dropFirst(8))
            guard let defs = schemas[file]?["$defs"] as? [String: Any], let s = defs[name] as? [String: Any] else { return nil }
            return (s, file)
        }
        return schemas[ref].map { ($0, ref) }
    }

    private func typeName(_ v: Any) -> String {
        switch v {
        case is String: return "string"
        case is Bool: return "boolean"
        case is Int: return "integer"
        case is Double: return "number"
        case is [Any]: return "array"
        case is [String: Any], is [AnyHashable: Any]: return "object"
        default: return "null"
        }
    }

    private func check(_ value: Any, _ schema: [String: Any], file: String, path: String) -> [String] {
        var problems: [String] = []
        if let ref = schema["$ref"] as? String {
            guard let (target, targetFile) = resolve(ref, file: file) else { return ["\(path): unresolved \(ref)"] }
            problems += check(value, target, file: targetFile, path: path)
        }
        let actual = typeName(value)
        if let t = schema["type"] {
            let allowed = (t as? [String]) ?? [t as! String]
            let ok = allowed.contains(actual) || (actual == "integer" && allowed.contains("number"))
            if !ok { problems.append("\(path): \(actual) is not \(allowed)") }
        }
        if let c = schema["const"] as? String, (value as? String) != c { problems.append("\(path): not \(c)") }
        if let e = schema["enum"] as? [String], !(value is String && e.contains(value as! String)) { problems.append("\(path): not in \(e)") }
        if let s = value as? String {
            if let p = schema["pattern"] as? String, s.range(of: p, options: .regularExpression) == nil {
                problems.append("\(path): does not match \(p)")
            }
            if let n = schema["minLength"] as? Int, s.count < n { problems.append("\(path): shorter than \(n)") }
            if let n = schema["maxLength"] as? Int, s.count > n { problems.append("\(path): longer than \(n)") }
        }
        if let i = value as? Int, !(value is Bool) {
            if let n = schema["minimum"] as? Int, i < n { problems.append("\(path): below \(n)") }
            if let n = schema["maximum"] as? Int, i > n { problems.append("\(path): above \(n)") }
        }
        if let object = (value as? [String: Any])
            ?? (value as? [AnyHashable: Any]).map({ Dictionary(uniqueKeysWithValues: $0.map { ("\($0.key)", $0.value) }) })
        {
            for r in schema["required"] as? [String] ?? [] where object[r] == nil { problems.append("\(path): missing \(r)") }
            let properties = schema["properties"] as? [String: Any] ?? [:]
            for (k, v) in object {
                if let names = schema["propertyNames"] as? [String: Any] { problems += check(k, names, file: file, path: "\(path).\(k)") }
                if let p = properties[k] as? [String: Any] {
                    problems += check(v, p, file: file, path: "\(path).\(k)")
                } else if let extra = schema["additionalProperties"] {
                    if let allowed = extra as? Bool, !allowed { problems.append("\(path): unknown property \(k)") }
                    if let s = extra as? [String: Any] { problems += check(v, s, file: file, path: "\(path).\(k)") }
                }
            }
        }
        if let array = value as? [Any], let items = schema["items"] as? [String: Any] {
            for (i, item) in array.enumerated() { problems += check(item, items, file: file, path: "\(path)[\(i)]") }
        }
        if let options = schema["oneOf"] as? [[String: Any]] {
            let matches = options.filter { check(value, $0, file: file, path: path).isEmpty }.count
            if matches != 1 { problems.append("\(path): matches \(matches) of oneOf") }
        }
        if let not = schema["not"] as? [String: Any], check(value, not, file: file, path: path).isEmpty {
            problems.append("\(path): matches a forbidden combination")
        }
        return problems
    }
}
