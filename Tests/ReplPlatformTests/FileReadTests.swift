import Foundation
import ReplPlatform
import Testing

/// Reading files a machine can write (the host status channel): only regular files, never
/// through a link, never waiting on a pipe, never more than asked for.
struct FileReadTests {
    let directory: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("repl-fileread-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    @Test func aRegularFileIsReadUpToTheLimit() throws {
        try Data("running\nstarted=1\n".utf8).write(to: URL(fileURLWithPath: path("status")))
        #expect(Platform.readRegularFile(path("status"), upTo: 4096) == Data("running\nstarted=1\n".utf8))
        #expect(Platform.readRegularFile(path("status"), upTo: 7) == Data("running".utf8))
        #expect(Platform.isRegularFile(path("status")))
        FileManager.default.createFile(atPath: path("empty"), contents: nil)
        #expect(Platform.readRegularFile(path("empty"), upTo: 10) == Data())
    }

    @Test func linksPipesDirectoriesAndAbsentFilesAreNotRead() throws {
        try Data("secret".utf8).write(to: URL(fileURLWithPath: path("target")))
        try FileManager.default.createSymbolicLink(atPath: path("link"), withDestinationPath: path("target"))
        #expect(mkfifo(path("pipe"), 0o644) == 0)
        try FileManager.default.createDirectory(atPath: path("dir"), withIntermediateDirectories: false)
        for name in ["link", "pipe", "dir", "absent"] {
            // A pipe with no writer would block an open or a read that waits: this returns at once.
            #expect(Platform.readRegularFile(path(name), upTo: 4096) == nil, "\(name) was read")
            #expect(!Platform.isRegularFile(path(name)), "\(name) counted as a regular file")
        }
    }
}
