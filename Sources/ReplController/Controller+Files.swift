import Foundation
import OrbStack
import ReplCore
import ReplPlatform
import ReplStore

/// Files into and out of machines: copies before a bootstrap, artifacts and logs after a command.
extension Controller {
    /// `files:` into the machine: a directory's contents through one tar archive (without what
    /// `exclude` names), a file as it is. A copy that fails fails the launch, which says why on
    /// the run (its last error) and is tried again.
    func copyFiles(_ files: [FileCopy], into machine: MachineName) async throws {
        for (index, copy) in files.enumerated() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: copy.from, isDirectory: &isDirectory) else {
                throw ProviderError(.failed, "files[\(index)]: \(copy.from) does not exist (any more)")
            }
            if isDirectory.boolValue {
                let archive = try await Self.tar(directory: copy.from, exclude: copy.exclude)
                try await provider.pushArchive(name: machine, archive: archive, to: copy.to)
            } else {
                guard let data = FileManager.default.contents(atPath: copy.from) else {
                    throw ProviderError(.failed, "files[\(index)]: cannot read \(copy.from)")
                }
                try await provider.pushFile(name: machine, data: data, to: copy.to)
            }
        }
    }

    /// The host's tar (GNU on Linux, bsdtar on macOS: both read `-C`, `--exclude` and `-f -`).
    static var hostTar: String { ["/usr/bin/tar", "/bin/tar"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "tar" }

    /// A tar archive of a directory's contents. `COPYFILE_DISABLE`: no `._` AppleDouble files
    /// for macOS's extended attributes.
    /// Its entries, not `.`: an archive's `.` would give the target directory in the machine the
    /// source's mode and owner (found by attacking: `/tmp` lost its sticky bit). Empty when the
    /// directory is (the target is only made).
    static func tar(directory: String, exclude: [String]) async throws -> Data {
        var env = ProcessInfo.processInfo.environment
        env["COPYFILE_DISABLE"] = "1"
        let entries = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted().map { "./" + $0 }
        guard !entries.isEmpty else { return Data() }
        let arguments = ["-c", "-f", "-", "-C", directory] + exclude.map { "--exclude=\($0)" } + entries
        let result = try await SystemProcessRunner.run(hostTar, arguments, input: nil, timeout: 600, environment: env, limit: maxFilesArchive)
        if result.truncated {
            throw ProviderError(
                .failed,
                "cannot copy \(directory): it is more than \(maxFilesArchive >> 30) GiB; copy data that large another way (a shared path, or download it in the bootstrap)"
            )
        }
        guard result.status == 0 else { throw ProviderError(.failed, "cannot pack \(directory): \(OrbctlClient.oneLine(result.stderrText))") }
        return result.stdout
    }

    /// The largest `files` directory, as an archive held in memory on its way in.
    static let maxFilesArchive = 1 << 30

    /// `artifacts:` out of a finished instance's machine, before it goes, into
    /// `$REPL_HOME/artifacts/RUN/N/` (paths kept under it). A glob that matches nothing is a
    /// note on the run, as is a machine that cannot be read; neither fails the run.
    func collectArtifacts(run: DesiredRun, instance: InstanceID, machine: MachineName, state: MachineState?) async {
        let number = run.number(of: instance) ?? 0
        let directory = settings.logsDirectory.deletingLastPathComponent().appendingPathComponent("artifacts")
            .appendingPathComponent(run.manifest.name).appendingPathComponent(String(number))
        // What an earlier run of this name, or an earlier generation, left here goes first.
        try? FileManager.default.removeItem(at: directory)
        guard state == .running else {
            store.event(
                "artifacts-left", machine: machine.description, run: run.id,
                "\(run.label(instance)): its machine \(state.map { "is \($0)" } ?? "is gone"), so its artifacts were not copied")
            return
        }
        do {
            let (archive, unmatched) = try await provider.pullArchive(name: machine, globs: run.manifest.artifacts)
            for glob in unmatched {
                store.event(
                    "artifacts-unmatched", machine: machine.description, run: run.id, "\(run.label(instance)): artifacts: \(glob) matched nothing")
            }
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try Data("run \(Base36.encode(run.id)) generation \(run.generation) instance \(Base36.encode(instance))\n".utf8)
                .write(to: directory.appendingPathComponent(Self.artifactsOrigin))
            guard !archive.isEmpty else { return }
            let file = directory.appendingPathComponent(".incoming.tar")
            try archive.write(to: file)
            defer { try? FileManager.default.removeItem(at: file) }
            // Files and directories only: a link a machine sent could point the next member out
            // of the directory.
            let listing = try await SystemProcessRunner.run(
                Self.hostTar, ["-t", "-v", "-f", file.path], input: nil, timeout: 600,
                environment: ProcessInfo.processInfo.environment, limit: 1 << 26)
            if listing.status != 0
                || listing.stdoutText.split(separator: "\n").contains(where: { !["-", "d"].contains($0.first.map(String.init) ?? "") })
            {
                store.event(
                    "artifacts-failed", machine: machine.description, run: run.id,
                    "\(run.label(instance)): its artifacts hold links or special files; none were kept")
                return
            }
            // Never outside the directory: tar drops absolute paths and `..` of what a machine sent.
            let result = try await SystemProcessRunner.run(
                Self.hostTar, ["-x", "-f", file.path, "-C", directory.path], input: nil, timeout: 600,
                environment: ProcessInfo.processInfo.environment, limit: 1 << 20)
            if result.status != 0 {
                store.event(
                    "artifacts-failed", machine: machine.description, run: run.id,
                    "\(run.label(instance)): cannot unpack its artifacts: \(OrbctlClient.oneLine(result.stderrText))")
            }
        } catch {
            store.event(
                "artifacts-failed", machine: machine.description, run: run.id,
                "\(run.label(instance)): cannot copy its artifacts: \(OrbctlClient.oneLine("\(error)"))")
        }
    }

    /// The file in each instance's artifacts directory that says which run filled it.
    public static let artifactsOrigin = ".origin"

    /// `logs/RUN-INSTANCE.log` (and `.bootstrap.log`) under the state directory.
    public static func logFile(_ directory: URL, run: String, instance: InstanceID, bootstrap: Bool = false) -> URL {
        directory.appendingPathComponent("\(run)-\(Base36.encode(instance))\(bootstrap ? ".bootstrap" : "").log")
    }

    /// Copies a finished instance's logs to `$REPL_HOME/logs` before its machine goes: moved
    /// from the host channel (no orbctl call, however large), else read from the running
    /// machine a piece at a time. A stopped machine without the channel is never started
    /// again to read it: its logs stay in it, and an event says so.
    func collectLogs(run: String, instance: InstanceID, machine: MachineName, state: MachineState?) async throws {
        let fm = FileManager.default
        try fm.createDirectory(at: settings.logsDirectory, withIntermediateDirectories: true)
        let output = Self.logFile(settings.logsDirectory, run: run, instance: instance)
        let boot = Self.logFile(settings.logsDirectory, run: run, instance: instance, bootstrap: true)
        // The channel's copy is whole once its status there is final (the watch loop writes it
        // after the last bytes); otherwise (the channel removed meanwhile, or the loop gone) a
        // running machine is read, and what the channel has is kept only as a last resort.
        if let channel = settings.channel, channel.isInUse(machine.description),
            channel.status(machine.description)?.isFinal == true || state != .running
        {
            if channel.status(machine.description)?.isFinal != true {
                store.event(
                    "logs-partial", machine: machine.description,
                    "\(machine) \(state.map { "is \($0)" } ?? "is gone"): its logs are the host channel's copy, which may lack the last lines")
            }
            for (from, to) in [
                (channel.logFile(machine.description, bootstrap: false), output), (channel.logFile(machine.description, bootstrap: true), boot),
            ] {
                try? fm.removeItem(at: to)
                // Only a regular file: never a symlink a machine planted to a file of the host.
                if StatusChannel.isRegularFile(from) {
                    do { try fm.moveItem(at: from, to: to) } catch { try fm.copyItem(at: from, to: to) }
                }
            }
            return
        }
        guard state == .running else {
            let why = state.map { "is \($0)" } ?? "is gone"
            store.event(
                "logs-left", machine: machine.description,
                "\(machine) \(why) and has no host channel: its logs were not read\(state == nil ? "" : ", so as not to start it again")")
            return
        }
        let data = try await provider.logs(name: machine, bootstrap: false, from: 0)
        let bootData = (try? await provider.logs(name: machine, bootstrap: true, from: 0)) ?? Data()
        try data.write(to: output)
        try bootData.write(to: boot)
    }
}
