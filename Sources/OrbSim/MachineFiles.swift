import Foundation
import ReplPlatform

/// `orbctl push` and `pull`: files into and out of a machine. Guest paths are the machine's
/// own (`/etc/x.conf` is the machine's `/etc`); relative ones are under the default user's
/// home [S]. The copy runs inside the machine, as root, so every path means exactly what it
/// means there. **uncertain**: a file pushed into the default user's home is owned by that
/// user, elsewhere by root; a missing parent directory is an error (not created).
struct MachineFiles {
    let sim: OrbSim

    func push(_ args: [String]) throws -> Int32 {
        let (machine, sources, dest) = try arguments(args, verb: "push")
        for source in sources {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: source, isDirectory: &isDirectory) else {
                throw SimExit(code: 1, stderr: "stat \(source): no such file or directory\n")
            }
            let target = guestPath(machine, dest ?? ".")
            let owner = target.hasPrefix("/home/\(machine.defaultUsername)") ? machine.defaultUsername : ""
            let name = URL(fileURLWithPath: source).lastPathComponent
            if isDirectory.boolValue {
                let archive = try TemporaryFile(), archivePath = archive.path
                let parent = URL(fileURLWithPath: source).deletingLastPathComponent().path
                let tar = try waitForAsync {
                    try await SystemProcessRunner.run(
                        "/bin/tar", ["-C", parent, "-cf", archivePath, name],
                        input: nil, timeout: 300, environment: ["PATH": "/usr/bin:/bin"], limit: 1 << 16)
                }
                guard tar.status == 0 else { throw SimExit(code: 1, stderr: "copy \(name): \(tar.stderrText)") }
                let script = """
                    t="$1"; if [ -d "$t" ]; then t="$t/$2"; fi
                    mkdir "$t" && tar -xf - -C "$t" --strip-components=1 && { [ -z "$3" ] || chown -R "$3:" "$t"; }
                    """
                try inside(machine, ["/bin/sh", "-c", script, "sh", target, name, owner], stdin: archive.path, what: name)
            } else {
                let script = """
                    t="$1"; if [ -d "$t" ]; then t="$t/$2"; fi
                    cat > "$t" && { [ -z "$3" ] || chown "$3:" "$t"; }
                    """
                try inside(machine, ["/bin/sh", "-c", script, "sh", target, name, owner], stdin: source, what: name)
            }
        }
        return 0
    }

    func pull(_ args: [String]) throws -> Int32 {
        let (machine, sources, dest) = try arguments(args, verb: "pull")
        let destination = dest ?? FileManager.default.currentDirectoryPath
        for source in sources {
            let path = guestPath(machine, source)
            let name = URL(fileURLWithPath: path).lastPathComponent
            let kind = try inside(
                machine, ["/bin/sh", "-c", "if [ -d \"$1\" ]; then echo d; elif [ -e \"$1\" ]; then echo f; fi", "sh", path],
                what: name)
            var isDirectory: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: destination, isDirectory: &isDirectory)
            let target = exists && isDirectory.boolValue ? destination + "/" + name : destination
            switch kind.trimmingCharacters(in: .whitespacesAndNewlines) {
            case "f":
                let copy = try TemporaryFile()
                _ = try inside(machine, ["/bin/cat", path], stdout: copy.path, what: name)
                try? FileManager.default.removeItem(atPath: target)
                guard (try? FileManager.default.copyItem(atPath: copy.path, toPath: target)) != nil else {
                    throw SimExit(code: 1, stderr: "open \(target): no such file or directory\n")
                }
            case "d":
                let archive = try TemporaryFile(), archivePath = archive.path
                _ = try inside(
                    machine, ["/bin/tar", "-C", URL(fileURLWithPath: path).deletingLastPathComponent().path, "-cf", "-", name],
                    stdout: archive.path, what: name)
                try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
                let tar = try waitForAsync {
                    try await SystemProcessRunner.run(
                        "/bin/tar", ["-xf", archivePath, "-C", target, "--strip-components=1"],
                        input: nil, timeout: 300, environment: ["PATH": "/usr/bin:/bin"], limit: 1 << 16)
                }
                guard tar.status == 0 else { throw SimExit(code: 1, stderr: "copy \(name): \(tar.stderrText)") }
            default:
                throw SimExit(code: 1, stderr: "stat \(source): no such file or directory\n")
            }
        }
        return 0
    }

    /// The machine's absolute path for a guest path: relative ones are under the default user's home.
    func guestPath(_ machine: SimMachine, _ path: String) -> String {
        if path.hasPrefix("/") { return path }
        let home = machine.defaultUsername == "root" ? "/root" : "/home/\(machine.defaultUsername)"
        return path == "." ? home : home + "/" + path
    }

    func arguments(_ args: [String], verb: String) throws -> (SimMachine, [String], String?) {
        let usage = "\(verb) [flags] SOURCE... [DEST]"
        let flags = try FlagParser(usage: usage, values: ["m": "machine"]).parse(args)
        guard !flags.positional.isEmpty else { throw SimExit.usage("requires at least 1 arg(s), only received 0", usage) }
        let machine = try sim.bootedMachine(flags.values["machine"])
        let sources = flags.positional.count > 1 ? Array(flags.positional.dropLast()) : flags.positional
        let dest = flags.positional.count > 1 ? flags.positional.last : nil
        return (machine, sources, dest)
    }

    /// Runs `command` as root in the machine; its stdout is returned (or written to
    /// `stdout`), and a failure is the command's stderr.
    @discardableResult
    func inside(_ machine: SimMachine, _ command: [String], stdin: String? = nil, stdout: String? = nil, what: String) throws -> String {
        let record = try MachineBoot(sim: sim).ensureInit(machine)
        let input = try stdin.map { try FileHandle(forReadingFrom: URL(fileURLWithPath: $0)) } ?? FileHandle(forReadingAtPath: "/dev/null")!
        let captured = try TemporaryFile(), err = try TemporaryFile()
        let out = try stdout.map { try FileHandle(forWritingTo: URL(fileURLWithPath: $0)) } ?? captured.handle
        let code = try MachineExec(sim: sim).enter(
            machine, record: record, user: "root", workdir: "/", command: command,
            streams: (input.fileDescriptor, out.fileDescriptor, err.handle.fileDescriptor))
        guard code == 0 else {
            let message = String(decoding: err.contents(), as: UTF8.self).split(separator: "\n").last.map(String.init) ?? "exit \(code)"
            throw SimExit(code: 1, stderr: "copy \(what): \(message)\n")
        }
        return String(decoding: captured.contents(), as: UTF8.self)
    }
}

/// A file under the temporary directory, removed when the value is released.
final class TemporaryFile {
    let path: String
    let handle: FileHandle

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("orbsim-\(UUID().uuidString)").path
        FileManager.default.createFile(atPath: path, contents: nil)
        handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
    }

    func contents() -> Data {
        try? handle.seek(toOffset: 0)
        return (try? handle.readToEnd()) ?? Data()
    }

    deinit {
        try? handle.close()
        unlink(path)
    }
}
