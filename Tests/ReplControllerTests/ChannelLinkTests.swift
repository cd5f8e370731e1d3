import Foundation
import ReplController
import Testing

/// The host channel's directory of a machine turned into a link (anything in the machine can
/// write the channel; found by the attack on #20): repl reads, writes and moves nothing
/// through it, and a launch replaces it with a directory of its own.
struct ChannelLinkTests {
    @Test func aChannelDirectoryThatIsALinkIsNeverFollowed() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("repl-channel-link-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let victim = root.appendingPathComponent("victim"), channel = StatusChannel(directory: root.appendingPathComponent("machines"))
        try FileManager.default.createDirectory(at: victim, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: channel.directory, withIntermediateDirectories: true)
        for (name, text) in [("status", "exited 0\n"), ("run.log", "SECRET\n"), ("limits", "ORIGINAL"), ("alive", "1\n")] {
            try Data(text.utf8).write(to: victim.appendingPathComponent(name))
        }
        let machine = "repl-ab12cd-1-1"
        try FileManager.default.createSymbolicLink(at: channel.machineDirectory(machine), withDestinationURL: victim)
        #expect(channel.status(machine) == nil)
        #expect(channel.heartbeat(machine) == nil)
        #expect(channel.times(machine).isEmpty)
        #expect(!channel.isInUse(machine))
        #expect(!StatusChannel.isRegularFile(channel.logFile(machine, bootstrap: false)))
        channel.syncLimits(machine, limits: "maxDuration=60\nhold=0\n")
        #expect(try String(contentsOf: victim.appendingPathComponent("limits"), encoding: .utf8) == "ORIGINAL")
        // A launch makes the directory its own, and leaves the link's target as it was.
        _ = try channel.prepare(machine, limits: "maxDuration=none\nhold=0\n")
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: channel.machineDirectory(machine).path)) == nil)
        #expect(!FileManager.default.fileExists(atPath: channel.machineDirectory(machine).appendingPathComponent("run.log").path))
        #expect(try String(contentsOf: victim.appendingPathComponent("limits"), encoding: .utf8) == "ORIGINAL")
        #expect(try String(contentsOf: victim.appendingPathComponent("run.log"), encoding: .utf8) == "SECRET\n")
    }
}
