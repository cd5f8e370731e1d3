import Testing

@testable import ReplCore

/// Every invalid manifest with the exact text a user sees.
struct ManifestErrorTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let yaml: String
        let errors: [String]
        var testDescription: String { errors.first ?? "?" }
    }

    static let cases: [Case] = [
        Case(
            yaml: "kind: Run\nname: a\ncomand: echo hi\n",
            errors: ["run.yaml:3:1: comand: unknown key; did you mean command?"]),
        Case(
            yaml: "kind: Run\nname: a\nmaxDuraton: 5m\n",
            errors: ["run.yaml:3:1: maxDuraton: unknown key; did you mean maxDuration?"]),
        Case(
            yaml: "kind: Run\nname: a\nfoo: 1\n",
            errors: [
                "run.yaml:3:1: foo: unknown key (known keys: name, provider, spec, from, command, maxDuration, bootstrap, replicas, hold, env, labels, resources, isolated, user, userData, files, artifacts)"
            ]),
        Case(
            yaml: "kind: Run\nname: a\nenv:\n  BIG: \(String(repeating: "x", count: 200_000))\n",
            errors: [
                "run.yaml:4:8: env.BIG: is 195 KiB; one environment variable holds at most 128 KiB on Linux (put large data in a file, with bootstrap or userData)"
            ]),
        // Found by attacking: a NUL made the script a "binary file" the shell would not run (exit
        // 126 at run time), and a megabyte of env took the wrapper 20 s to set.
        Case(
            yaml: "kind: Run\nname: a\ncommand: \"printf x\\0; echo after\"\nbootstrap: \"a\\0b\"\n",
            errors: [
                "run.yaml:3:10: command: contains a NUL byte, which a shell script cannot hold",
                "run.yaml:4:12: bootstrap: contains a NUL byte, which a shell script cannot hold",
            ]),
        Case(
            yaml: "kind: Run\nname: a\nenv:\n"
                + (1...3).map { "  V\($0): \(String(repeating: "x", count: 100_000))\n" }.joined(),
            errors: ["run.yaml:3:1: env: holds 292 KiB in all; at most 256 KiB (put large data in a file, with files or bootstrap)"]),
        // Files in and artifacts out (#17).
        Case(
            yaml: "kind: Run\nname: a\nfiles: ./src\n",
            errors: ["run.yaml:3:8: files: expected a list such as [{from: ./src, to: /srv/app}], got the text \"./src\""]),
        Case(
            yaml: "kind: Run\nname: a\nfiles:\n  - {from: /etc, too: /srv}\n  - /etc\n  - {to: /srv}\n",
            errors: [
                "run.yaml:4:5: files[0].to: missing; where it goes in the machine (an absolute path)",
                "run.yaml:4:18: files[0].too: unknown key; did you mean to?",
                "run.yaml:5:5: files[1]: expected {from: PATH, to: PATH}, got the text \"/etc\"",
                "run.yaml:6:5: files[2].from: missing; the file or directory to copy",
            ]),
        Case(
            yaml: "kind: Run\nname: a\nfiles: [{from: /etc, to: /srv/../etc, exclude: .git}]\n",
            errors: ["run.yaml:3:26: files[0].to: \"/srv/../etc\" is not an absolute path in the machine (as /srv/app)"]),
        Case(
            yaml: "kind: Run\nname: a\nfiles: [{from: /etc, to: /srv, exclude: .git}]\n",
            errors: ["run.yaml:3:41: files[0].exclude: expected a list of patterns such as [\".git\", \"*.o\"], got the text \".git\""]),
        Case(
            yaml: "kind: Run\nname: a\nartifacts: /srv/out\n",
            errors: ["run.yaml:3:12: artifacts: expected a list of paths or globs such as [\"/srv/out/*.json\"], got the text \"/srv/out\""]),
        Case(
            yaml: "kind: Run\nname: a\nartifacts: [/srv/../etc/shadow]\n",
            errors: ["run.yaml:3:13: artifacts[0]: \"/srv/../etc/shadow\" is not an absolute path or glob in the machine (as /srv/out/*.json)"]),
        // A loop of clones that could never start (found by attacking).
        Case(
            yaml: "kind: Run\nname: a\nfrom: s2\ncommand: echo\n---\nkind: Snapshot\nname: s2\nfrom: a\n",
            errors: [
                "run.yaml:8:7: from: Snapshot \"s2\" is taken from a run that clones it (s2 → a → s2); it could never be taken: start the loop from a spec"
            ]),
        // OrbStack's own machine options (#17).
        Case(
            yaml: "kind: Run\nname: a\nresources: {cpus: 0, memory: 4, disk: 64X}\n",
            errors: [
                "run.yaml:3:19: resources.cpus: 0 is out of range (1–256)",
                "run.yaml:3:30: resources.memory: \"4\" is not a size (it has no unit); use 4G, 512M or 1T",
                "run.yaml:3:39: resources.disk: \"64X\" is not a size; use 64G, 512M or 1T",
            ]),
        Case(
            yaml: "kind: Run\nname: a\nresources:\n  cpu: 2\n  memory: 100M\n  disk: 512M\n",
            errors: [
                "run.yaml:4:3: resources.cpu: unknown key; did you mean cpus?",
                "run.yaml:5:11: resources.memory: 100M is too small; at least 512M",
                "run.yaml:6:9: resources.disk: 512M is too small; at least 1G",
            ]),
        Case(
            yaml: "kind: Run\nname: a\nresources: 4\n",
            errors: ["run.yaml:3:12: resources: expected a mapping such as {cpus: 2, memory: 4G, disk: 64G}, got a number (4)"]),
        Case(
            yaml: "kind: Run\nname: a\ncpus: 2\n",
            errors: ["run.yaml:3:1: cpus: belongs under resources: (resources: {cpus: 2, memory: 4G, disk: 64G})"]),
        Case(
            yaml: "kind: Run\nname: a\ninstanceType: m5.large\n",
            errors: [
                "run.yaml:3:1: instanceType: not supported: OrbStack has no instance types; give resources: {cpus: 2, memory: 4G, disk: 64G}; remove this key"
            ]),
        Case(
            yaml: "kind: Run\nname: a\nisolated: maybe\n",
            errors: ["run.yaml:3:11: isolated: expected true or false, got the text \"maybe\""]),
        Case(
            yaml: "kind: Run\nname: a\nuser: Root\n",
            errors: [
                "run.yaml:3:7: user: \"Root\" is not a Linux user name (lowercase letters, digits, _ and -, at most 32, not starting with a digit or -)"
            ]),
        Case(
            yaml: "kind: Run\nname: a\nuserData: |\n  write_files: []\n",
            errors: ["run.yaml:3:11: userData: must start with #cloud-config (a cloud-init document) or #! (a script)"]),
        Case(
            yaml: "kind: Run\nname: a\nuserData: |\n  #cloud-config\n  runcmd: [a\n",
            errors: [
                "run.yaml:3:11: userData: is not valid YAML (line 3 of the document): did not find expected ',' or ']' while parsing a flow sequence"
            ]),
        Case(
            yaml: "kind: Run\nname: a\nuserData: |\n  #cloud-config\n  - a\n",
            errors: ["run.yaml:3:11: userData: the #cloud-config document must be a mapping (write_files:, runcmd:, …)"]),
        Case(
            yaml: "kind: Run\nname: a\nmaxDuration: 5 minutes\n",
            errors: ["run.yaml:3:14: maxDuration: \"5 minutes\" is not a duration (use 300s, 5m or 300000)"]),
        Case(
            yaml: "kind: Run\nname: a\nmaxDuration: 0\n",
            errors: ["run.yaml:3:14: maxDuration: must be longer than 0 (remove the key for no deadline)"]),
        Case(
            yaml: "kind: Run\nname: a\nmaxDuration: -5s\n",
            errors: ["run.yaml:3:14: maxDuration: \"-5s\" is not a duration (use 300s, 5m or 300000)"]),
        Case(
            yaml: "kind: Run\nname: a\nhold: 10y\n",
            errors: ["run.yaml:3:7: hold: \"10y\" is not a duration (use 300s, 5m or 300000)"]),
        Case(
            yaml: "kind: Run\nname: a\nmaxDuration: 400d\n",
            errors: ["run.yaml:3:14: maxDuration: \"400d\" is longer than the maximum of 365d"]),
        Case(
            yaml: "kind: Run\nname: a\nmaxDuration: [1]\n",
            errors: ["run.yaml:3:14: maxDuration: expected a duration, got a list (use 300s, 5m or 300000)"]),
        Case(
            yaml: "kind: Run\nname: Hello\n",
            errors: ["run.yaml:2:7: name: \"Hello\" has uppercase letters; use \"hello\""]),
        Case(
            yaml: "kind: Run\nname: my_run\n",
            errors: ["run.yaml:2:7: name: \"my_run\" may only contain lowercase letters, digits and '-'"]),
        Case(
            yaml: "kind: Run\nname: \"\"\n",
            errors: ["run.yaml:2:7: name: \"\" is empty; use lowercase letters, digits and '-'"]),
        Case(
            yaml: "kind: Run\nname: \(String(repeating: "a", count: 41))\n",
            errors: ["run.yaml:2:7: name: \"\(String(repeating: "a", count: 41))\" is 41 characters long; use at most 40"]),
        Case(
            yaml: "kind: Run\nname: -lead\n",
            errors: ["run.yaml:2:7: name: \"-lead\" must start with a letter or digit"]),
        Case(
            yaml: "kind: Run\nname: 42\n",
            errors: ["run.yaml:2:7: name: expected text, got a number (42); quote it: name: \"42\""]),
        Case(
            yaml: "kind: Run\ncommand: echo\n",
            errors: ["run.yaml:1:1: name: missing; add a name of lowercase letters, digits and '-'"]),
        Case(
            yaml: "name: a\n",
            errors: ["run.yaml:1:1: kind: missing; add `kind: Run` or `kind: Snapshot`"]),
        Case(
            yaml: "kind: run\nname: a\n",
            errors: ["run.yaml:1:7: kind: unknown kind \"run\"; did you mean Run?"]),
        Case(
            yaml: "kind: Job\nname: a\n",
            errors: ["run.yaml:1:7: kind: unknown kind \"Job\"; use Run or Snapshot"]),
        Case(
            yaml: "- kind: Run\n",
            errors: ["run.yaml:1:1: a manifest must be a mapping of keys (kind, name, …), not a list"]),
        Case(
            yaml: "kind: Run\nname: a\nreplicas: three\n",
            errors: ["run.yaml:3:11: replicas: expected a whole number, got the text \"three\""]),
        Case(
            yaml: "kind: Run\nname: a\nreplicas: \"3\"\n",
            errors: ["run.yaml:3:11: replicas: expected a whole number, got the text \"3\""]),
        Case(
            yaml: "kind: Run\nname: a\nreplicas: -1\n",
            errors: ["run.yaml:3:11: replicas: -1 is out of range (0–1000)"]),
        Case(
            yaml: "kind: Run\nname: a\nreplicas: 5000\n",
            errors: ["run.yaml:3:11: replicas: 5000 is out of range (0–1000)"]),
        Case(
            yaml: "kind: Run\nname: a\nspec: redhat:9\n",
            errors: [
                "run.yaml:3:7: spec: distro \"redhat\" is not one OrbStack offers (it offers: alma, alpine, arch, centos, debian, devuan, fedora, gentoo, kali, nixos, openeuler, opensuse, oracle, rocky, ubuntu, void)"
            ]),
        Case(
            yaml: "kind: Run\nname: a\nspec: ubuntu:focal\n",
            errors: [
                "run.yaml:3:7: spec: version \"focal\" of ubuntu is not one OrbStack offers (it offers: jammy (22.04), noble (24.04), oracular (24.10), plucky (25.04))"
            ]),
        Case(
            yaml: "kind: Run\nname: a\nspec: debian:10\n",
            errors: [
                "run.yaml:3:7: spec: version \"10\" of debian is not one OrbStack offers (it offers: bullseye (11), bookworm (12), trixie (13), forky (14))"
            ]),
        Case(
            yaml: "kind: Run\nname: a\nspec: nixos::amd64\n",
            errors: ["run.yaml:3:7: spec: arch \"amd64\": nixos runs only as arm64 on this Mac (NixOS does not work under Rosetta)"]),
        Case(
            yaml: "kind: Run\nname: a\nspec: arch\nuserData: \"#!/bin/sh\\n\"\n",
            errors: [
                "run.yaml:4:11: userData: arch has no cloud-init image in OrbStack (nor have gentoo, nixos and void); provision with bootstrap instead"
            ]),
        Case(
            yaml: "kind: Run\nname: a\nspec: ubuntu:noble:riscv64\n",
            errors: ["run.yaml:3:7: spec: arch \"riscv64\" is not supported on OrbStack (supported: arm64, amd64)"]),
        Case(
            yaml: "kind: Run\nname: a\nspec: ubuntu:noble:arm64:extra\n",
            errors: ["run.yaml:3:7: spec: spec \"ubuntu:noble:arm64:extra\" has 4 parts; use distro:version:arch, e.g. ubuntu:noble:\(Spec.hostArch)"]
        ),
        Case(
            yaml: "kind: Run\nname: a\nspot: true\n",
            errors: ["run.yaml:3:1: spot: not supported: OrbStack has no spot instances; remove this key"]),
        Case(
            yaml: "kind: Run\nname: a\nregion: us-east-1\n",
            errors: ["run.yaml:3:1: region: not supported: OrbStack has no regions: it runs only on this Mac; remove this key"]),
        Case(
            yaml: "kind: Run\nname: a\nvolumes: [data]\n",
            errors: ["run.yaml:3:1: volumes: not supported: OrbStack has no persistent volumes: each machine is independent; remove this key"]),
        Case(
            yaml: "kind: Run\nname: a\ngpu: 1\n",
            errors: ["run.yaml:3:1: gpu: not supported: OrbStack machines have no GPUs; remove this key"]),
        Case(
            yaml: "kind: Run\nname: a\nprovider: azure\n",
            errors: ["run.yaml:3:11: provider: unknown provider \"azure\" (supported: orbstack, aws)"]),
        Case(
            yaml: "kind: Run\nname: a\ncommand: true\n",
            errors: ["run.yaml:3:10: command: expected text, got a boolean (true); quote it: command: \"true\""]),
        Case(
            yaml: "kind: Run\nname: a\ncommand: \"  \"\n",
            errors: ["run.yaml:3:10: command: is empty; give a command or remove the key to keep the machine up"]),
        Case(
            yaml: "kind: Run\nname: a\nenv: [A]\n",
            errors: ["run.yaml:3:6: env: expected a mapping such as {NAME: value}, got a list"]),
        Case(
            yaml: "kind: Run\nname: a\nenv:\n  1BAD: x\n",
            errors: ["run.yaml:4:3: env: \"1BAD\" is not a valid variable name (letters, digits and _, not starting with a digit)"]),
        Case(
            yaml: "kind: Run\nname: a\nenv:\n  A: {b: c}\n",
            errors: ["run.yaml:4:6: env.A: expected a value such as text or a number, got a mapping"]),
        Case(
            yaml: "kind: Run\nname: a\nspec: ubuntu\nfrom: snap\n---\nkind: Snapshot\nname: snap\nfrom: a\n",
            errors: ["run.yaml:4:1: from: cannot be combined with spec (line 3); a clone takes its spec from the snapshot, so remove one of them"]),
        Case(
            yaml: "kind: Run\nname: a\nfrom: nowhere\n",
            errors: ["run.yaml:3:7: from: no Snapshot named \"nowhere\""]),
        Case(
            yaml: "kind: Run\nname: a\n---\nkind: Run\nname: b\nfrom: a\n",
            errors: ["run.yaml:6:7: from: no Snapshot named \"a\" (\"a\" is a Run; make a Snapshot of it first)"]),
        Case(
            yaml: "kind: Run\nname: base\n---\nkind: Snapshot\nname: snap\nfrom: bsae\n",
            errors: ["run.yaml:6:7: from: no Run named \"bsae\" (did you mean \"base\"?)"]),
        Case(
            yaml: "kind: Snapshot\nname: snap\n",
            errors: ["run.yaml:1:1: from: missing; a Snapshot needs the name of the Run to clone"]),
        Case(
            yaml: "kind: Run\nname: a\n---\nkind: Snapshot\nname: s\nfrom: a\ncommand: x\n",
            errors: ["run.yaml:7:1: command: not a Snapshot key (a Snapshot has only name, from, labels)"]),
        Case(
            yaml: "kind: Run\nname: a\n---\nkind: Run\nname: a\n",
            errors: ["run.yaml:5:7: name: Run \"a\" is already defined at run.yaml:2:7; names are unique per kind"]),
        Case(
            yaml: "kind: Run\nname: a\nname: b\n",
            errors: ["run.yaml:2:1: name: key appears more than once in the same document; keep one"]),
        Case(
            yaml: "kind: Run\nname: a\ncommand: \"unterminated\n",
            errors: ["run.yaml:4:1: invalid YAML: found unexpected end of stream while scanning a quoted scalar"]),
        Case(
            yaml: "kind: Run\n  name: a\n",
            errors: ["run.yaml:2:7: invalid YAML: mapping values are not allowed in this context"]),
        // Every error of a document is reported, not only the first, in line order.
        Case(
            yaml: "kind: Run\nname: A_B\ncomand: x\nreplicas: many\nmaxDuration: soon\n",
            errors: [
                "run.yaml:2:7: name: \"A_B\" may only contain lowercase letters, digits and '-'",
                "run.yaml:3:1: comand: unknown key; did you mean command?",
                "run.yaml:4:11: replicas: expected a whole number, got the text \"many\"",
                "run.yaml:5:14: maxDuration: \"soon\" is not a duration (use 300s, 5m or 300000)",
            ]),
        // And every document's errors, across documents.
        Case(
            yaml: "kind: Run\nname: ok\n---\nkind: Run\nname: x\nspot: 1\n---\nkind: Run\nname: y\nhold: nope\n",
            errors: [
                "run.yaml:6:1: spot: not supported: OrbStack has no spot instances; remove this key",
                "run.yaml:10:7: hold: \"nope\" is not a duration (use 300s, 5m or 300000)",
            ]),
    ]

    @Test(arguments: cases)
    func invalidManifestIsRejectedWithExactText(_ c: Case) {
        #expect(throws: ManifestError(c.errors.map { Self.diagnostic($0) })) {
            try ManifestParser().parse(c.yaml, file: "run.yaml")
        }
        do {
            _ = try ManifestParser().parse(c.yaml, file: "run.yaml")
        } catch {
            #expect(error.diagnostics.map(\.description) == c.errors)
        }
    }

    @Test func atLeastThirtyInvalidManifestsAreCovered() {
        #expect(Self.cases.count >= 30)
    }

    /// An invalid document anywhere means nothing is returned at all.
    @Test func oneBadDocumentRejectsTheWholeSet() {
        let yaml = "kind: Run\nname: good\ncommand: echo\n---\nkind: Run\nname: bad\nreplicas: x\n"
        #expect(throws: ManifestError.self) { try ManifestParser().parse(yaml, file: "a.yaml") }
    }

    @Test func errorsInSeveralFilesAreAllReported() {
        let sources = [
            ManifestSource(name: "a.yaml", text: "kind: Run\nname: a\nspot: true\n"),
            ManifestSource(name: "b.yaml", text: "kind: Run\nname: b\nreplicas: x\n"),
        ]
        do {
            _ = try ManifestParser().parse(sources)
            Issue.record("expected errors")
        } catch {
            #expect(error.diagnostics.map(\.location.file) == ["a.yaml", "b.yaml"])
        }
    }

    @Test func emptyInputSaysSo() {
        #expect(throws: ManifestError([Self.diagnostic("e.yaml:1:1: no manifests found (expected documents with kind: Run or kind: Snapshot)")])) {
            try ManifestParser().parse("# nothing here\n", file: "e.yaml")
        }
    }

    static func diagnostic(_ text: String) -> ManifestDiagnostic {
        let parts = text.split(separator: ":", maxSplits: 3)
        return ManifestDiagnostic(
            SourceLocation(file: String(parts[0]), line: Int(parts[1])!, column: Int(parts[2])!),
            String(parts[3].dropFirst()))
    }
}

/// Errors read in file and line order, however validation found them (#18).
struct DiagnosticOrderTests {
    @Test func errorsAreSortedByFileLineAndColumn() {
        let e = ManifestError([
            ManifestDiagnostic(SourceLocation(file: "b.yaml", line: 2, column: 1), "b2"),
            ManifestDiagnostic(SourceLocation(file: "a.yaml", line: 6, column: 3), "a6"),
            ManifestDiagnostic(SourceLocation(file: "b.yaml", line: 1, column: 1), "b1"),
            ManifestDiagnostic(SourceLocation(file: "a.yaml", line: 3, column: 1), "a3"),
            ManifestDiagnostic(SourceLocation(file: "a.yaml", line: 5, column: 1), "a5"),
        ])
        #expect(e.diagnostics.map(\.message) == ["b1", "b2", "a3", "a5", "a6"])
    }

    @Test func aRealManifestReportsInLineOrder() throws {
        let yaml = "kind: Run\nname: ok\nreplicas: -1\ncommand: x\nmaxDuration: forever\nhold: nope\n"
        do {
            _ = try ManifestParser().parse(yaml, file: "m.yaml")
            Issue.record("accepted")
        } catch {
            let lines = error.diagnostics.map(\.location.line)
            #expect(lines == lines.sorted() && lines.count >= 3, "\(error.description)")
        }
    }
}
