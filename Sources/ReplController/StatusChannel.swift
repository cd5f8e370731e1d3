import Foundation
import OrbStack
import ReplCore
import ReplPlatform

/// The host status channel: one directory per machine under `$REPL_HOME/machines`, which
/// OrbStack shows inside every normal machine under `/mnt/mac`. The controller makes it and
/// writes `limits`; the wrapper writes `status`, `run.log` and `bootstrap.log`. Reading it
/// costs no orbctl call, and it outlives the machine being stopped or deleted.
public struct StatusChannel: Sendable {
    public let directory: URL

    public init(directory: URL) {
        self.directory = directory
    }

    public func machineDirectory(_ machine: String) -> URL { directory.appendingPathComponent(machine, isDirectory: true) }

    public func file(_ machine: String, _ name: String) -> URL { machineDirectory(machine).appendingPathComponent(name) }

    public func logFile(_ machine: String, bootstrap: Bool) -> URL { file(machine, bootstrap ? "bootstrap.log" : "run.log") }

    /// Makes the machine's directory (with its limits) before a launch, and returns its path
    /// with symlinks resolved, as the machine must name it under `/mnt/mac` (a link with an
    /// absolute target, such as macOS's `/tmp`, would point outside `/mnt/mac`).
    public func prepare(_ machine: String, limits: String) throws -> String {
        let dir = machineDirectory(machine)
        // Anything in the machine can write here: what is not a directory of ours is replaced.
        if FileManager.default.fileExists(atPath: dir.path) || (try? FileManager.default.destinationOfSymbolicLink(atPath: dir.path)) != nil,
            !Platform.isDirectory(dir.path)
        {
            try FileManager.default.removeItem(at: dir)
        }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data(limits.utf8).write(to: file(machine, "limits"), options: .atomic)
        return dir.resolvingSymlinksInPath().path
    }

    /// The status the wrapper mirrored here, if it did (its first 4 KiB: a machine can write
    /// anything here, and a status is one short line and three times).
    public func status(_ machine: String) -> ProbeResult? {
        guard let data = Self.head(file(machine, "status"), bytes: 4096), !data.isEmpty else { return nil }
        return StatusFile.read(String(decoding: data, as: UTF8.self)).result
    }

    /// The wrapper's last heartbeat (epoch seconds, by the machine's clock), if there is one.
    public func heartbeat(_ machine: String) -> Date? {
        guard let data = Self.head(file(machine, "alive"), bytes: 64),
            let seconds = TimeInterval(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        else { return nil }
        return Date(timeIntervalSince1970: seconds)
    }

    /// The status file's `key=value` times (`launched`, `started`, `ended`), in epoch seconds.
    public func times(_ machine: String) -> [String: TimeInterval] {
        guard let data = Self.head(file(machine, "status"), bytes: 4096) else { return [:] }
        return StatusFile.read(String(decoding: data, as: UTF8.self)).times
    }

    /// The first `bytes` of a regular file (never through a symlink a machine planted); nil
    /// when it is absent or not a regular file.
    static func head(_ url: URL, bytes: Int) -> Data? {
        guard Platform.isDirectory(url.deletingLastPathComponent().path) else { return nil }
        return Platform.readRegularFile(url.path, upTo: bytes)
    }

    /// Whether `url` is a regular file itself (a symlink is not followed).
    /// Whether `url` is a regular file itself, in a directory that is one itself: a machine
    /// that turns its channel directory into a link reaches no file of the Mac through repl.
    public static func isRegularFile(_ url: URL) -> Bool {
        Platform.isDirectory(url.deletingLastPathComponent().path) && Platform.isRegularFile(url.path)
    }

    /// Whether the wrapper of this machine reached the channel (its logs are here).
    public func isInUse(_ machine: String) -> Bool { Self.isRegularFile(file(machine, "status")) }

    /// Rewrites `limits` when `maxDuration` or `hold` changed in place; the wrapper's watch
    /// loop reads it. Only for machines whose directory exists.
    public func syncLimits(_ machine: String, limits: String) {
        let url = file(machine, "limits")
        guard Platform.isDirectory(machineDirectory(machine).path),
            FileManager.default.contents(atPath: url.path) != Data(limits.utf8)
        else { return }
        try? Data(limits.utf8).write(to: url, options: .atomic)
    }

    /// What this copy holds of a channel a provider mirrors (``Provider/fetchChannel(_:)``).
    public func mark(_ machine: String) -> ChannelMark {
        let tag = Self.isRegularFile(file(machine, "status")) ? Self.head(file(machine, "status.tag"), bytes: 256) : nil
        return ChannelMark(
            statusTag: tag.map { String(decoding: $0, as: UTF8.self) }, output: size(logFile(machine, bootstrap: false)),
            bootstrap: size(logFile(machine, bootstrap: true)))
    }

    /// Brings this copy up to what the provider's channel holds: the logs first, then the
    /// status and its tag (a final status here means whole logs here, as on OrbStack). A piece
    /// that does not continue the copy (another process appended it meanwhile) is left for the
    /// next read, which starts from the copy's size again.
    public func apply(_ update: ChannelUpdate, to machine: String) throws {
        let dir = machineDirectory(machine)
        if !Platform.isDirectory(dir.path) {
            try? FileManager.default.removeItem(at: dir)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        }
        for (piece, url) in [(update.bootstrap, logFile(machine, bootstrap: true)), (update.output, logFile(machine, bootstrap: false))] {
            guard let piece else { continue }
            if piece.offset == 0 {
                try piece.data.write(to: url, options: .atomic)
            } else if piece.offset == size(url) {
                let handle = try FileHandle(forWritingTo: url)
                defer { try? handle.close() }
                try handle.seekToEnd()
                try handle.write(contentsOf: piece.data)
            }
        }
        if let status = update.status {
            try status.write(to: file(machine, "status"), options: .atomic)
            try Data((update.statusTag ?? "").utf8).write(to: file(machine, "status.tag"), options: .atomic)
        }
    }

    /// For a provider that mirrors its machines' channel (EC2's, in S3): brings this copy of
    /// `machines`' channels up to date, one listing and only what changed. Nil when the
    /// provider does not mirror; else each machine whose copy could not be written, with why.
    public func refresh(_ machines: [MachineName], from provider: any Provider) async throws(ProviderError) -> [MachineName: String]? {
        guard provider.capabilities.mirroredChannel else { return nil }
        let marks = Dictionary(machines.map { ($0, mark($0.description)) }, uniquingKeysWith: { a, _ in a })
        guard !marks.isEmpty, let updates = try await provider.fetchChannel(marks) else { return [:] }
        var failed: [MachineName: String] = [:]
        for (machine, update) in updates {
            do { try apply(update, to: machine.description) } catch { failed[machine] = error.localizedDescription }
        }
        return failed
    }

    /// A regular file's size (0 when it is absent or anything else), read every tick for each
    /// mirrored machine: `lstat`, not `attributesOfItem` (which reads the user databases).
    func size(_ url: URL) -> Int {
        guard Self.isRegularFile(url) else { return 0 }
        return Platform.regularFileSize(url.path) ?? 0
    }

    /// Forgets a machine that is gone (its logs were collected first).
    public func remove(_ machine: String) {
        try? FileManager.default.removeItem(at: machineDirectory(machine))
    }
}

/// Reads a run's logs from wherever they are: collected in `$REPL_HOME/logs`, still in the
/// host channel, or (for machines without the channel) inside the running machine.
public struct LogReader: Sendable {
    public let logsDirectory: URL
    public let channel: StatusChannel?
    public let provider: (any Provider)?

    public init(logsDirectory: URL, channel: StatusChannel?, provider: (any Provider)?) {
        self.logsDirectory = logsDirectory
        self.channel = channel
        self.provider = provider
    }

    /// The log from byte `offset` on; `nil` when there is none (yet). Only with `live` is the
    /// machine itself asked (an orbctl call), and only when the log is nowhere on the host.
    /// `limit` caps what one call reads from a file on the host (call again from the new
    /// offset for the rest), so a log of any size is printed without holding it whole.
    public func read(
        run: String, instance: InstanceID, machine: MachineName, bootstrap: Bool, from offset: Int,
        live: Bool, limit: Int? = nil
    ) async throws(ProviderError) -> Data? {
        let collected = Controller.logFile(logsDirectory, run: run, instance: instance, bootstrap: bootstrap)
        if let data = Self.read(collected, from: offset, limit: limit) { return data }
        // A log that is there but cannot be read is not "no output yet" (found by attacking).
        if let why = Self.unreadable(collected) { throw ProviderError(.failed, "\(collected.path) \(why)") }
        // A mirrored channel (EC2's, in S3) is kept current by the controller's ticks; with none
        // running, a live read brings the host's copy up to date once it has nothing newer.
        if live, let provider, let channel, channel.size(channel.logFile(machine.description, bootstrap: bootstrap)) <= offset,
            let why = try await channel.refresh([machine], from: provider)?[machine]
        {
            throw ProviderError(.failed, "cannot write the host's copy of \(machine)'s channel: \(why)")
        }
        if let channel, channel.isInUse(machine.description) {
            let file = channel.logFile(machine.description, bootstrap: bootstrap)
            if let data = Self.read(file, from: offset, limit: limit) { return data }
            if let why = Self.unreadable(file) { throw ProviderError(.failed, "\(file.path) \(why)") }
            return Data()
        }
        guard live, let provider else { return nil }
        return try await provider.logs(name: machine, bootstrap: bootstrap, from: offset)
    }

    /// Why a log that exists cannot be read (not a regular file, or not readable), or nil when
    /// it is absent or readable.
    static func unreadable(_ url: URL) -> String? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path) else { return nil }
        if attributes[.type] as? FileAttributeType != .typeRegular { return "is not a regular file; it cannot be read as a log" }
        return FileManager.default.isReadableFile(atPath: url.path) ? nil : "cannot be read (permissions)"
    }

    /// A regular file's bytes from `offset` (up to `limit`), read from there, never through a
    /// symlink (a machine can write the channel); `nil` if absent.
    public static func read(_ url: URL, from offset: Int, limit: Int? = nil) -> Data? {
        guard StatusChannel.isRegularFile(url), let handle = try? FileHandle(forReadingFrom: url) else { return nil }
        defer { try? handle.close() }
        try? handle.seek(toOffset: UInt64(max(0, offset)))
        if let limit { return (try? handle.read(upToCount: limit)) ?? Data() }
        return (try? handle.readToEnd()) ?? Data()
    }
}
