import Foundation

/// Reads the manifest sources named on a command line: files, directories
/// (their `*.yaml` and `*.yml`, sorted, not recursive) and `-` for standard input.
public enum ManifestFiles {
    /// Manifest files larger than this are refused rather than read.
    public static let maxFileSize = 16 * 1024 * 1024

    /// Loads every source, reporting every unreadable path at once.
    public static func load(
        _ paths: [String], readStandardInput: () throws(StandardInputError) -> Data = { () throws(StandardInputError) in try readStandardInput() }
    )
        throws(ManifestError) -> [ManifestSource]
    {
        var sources: [ManifestSource] = []
        var problems: [ManifestDiagnostic] = []
        func problem(_ path: String, _ message: String) {
            problems.append(ManifestDiagnostic(SourceLocation(file: path, line: 0, column: 0), message))
        }
        let fm = FileManager.default
        // A file named twice (`-f a.yaml -f ./a.yaml`, a link to it, a directory holding it) is
        // read once: its documents would otherwise clash with themselves.
        var loaded: Set<String> = []
        for path in paths {
            if path == "-" {
                do {
                    let data = try readStandardInput()
                    if let text = decode(data) {
                        sources.append(ManifestSource(name: "<stdin>", text: text))
                    } else {
                        problem("<stdin>", "standard input is not UTF-8 text")
                    }
                } catch {
                    problem("<stdin>", error.message)
                }
                continue
            }
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else {
                problem(path, "no such file or directory")
                continue
            }
            var files: [String] = []
            if isDirectory.boolValue {
                guard let entries = try? fm.contentsOfDirectory(atPath: path) else {
                    problem(path, "cannot read the directory (permission denied?)")
                    continue
                }
                files = entries.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
                    .map { (path as NSString).appendingPathComponent($0) }
                if files.isEmpty { problem(path, "the directory holds no *.yaml or *.yml files") }
            } else {
                files = [path]
            }
            for file in files {
                guard loaded.insert(URL(fileURLWithPath: file).resolvingSymlinksInPath().standardizedFileURL.path).inserted else { continue }
                if let size = (try? fm.attributesOfItem(atPath: file))?[.size] as? NSNumber, size.intValue > maxFileSize {
                    problem(file, "is \(size.intValue / 1_048_576) MB; manifests larger than \(maxFileSize / 1_048_576) MB are refused")
                    continue
                }
                guard let data = fm.contents(atPath: file) else {
                    problem(file, "cannot read the file (permission denied?)")
                    continue
                }
                guard let text = decode(data) else {
                    problem(file, "is not UTF-8 text")
                    continue
                }
                sources.append(ManifestSource(name: file, text: text))
            }
        }
        guard problems.isEmpty else { throw ManifestError(problems) }
        return sources
    }

    /// Why standard input could not be read as a manifest.
    public struct StandardInputError: Error {
        public let message: String
        public init(_ message: String) { self.message = message }
    }

    /// Standard input to its end with read(2), at most `maxFileSize` (an endless pipe is
    /// refused, not held), and every failure a sentence: closed, a directory, unreadable.
    public static func readStandardInput(descriptor: Int32 = 0) throws(StandardInputError) -> Data {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if n == 0 { return data }
            if n < 0 {
                if errno == EINTR { continue }
                switch errno {
                case EBADF: throw StandardInputError("standard input is closed; give the manifest with -f PATH, or pipe it in")
                case EISDIR: throw StandardInputError("standard input is a directory; give the directory with -f PATH instead")
                default: throw StandardInputError("standard input cannot be read (\(String(cString: strerror(errno))))")
                }
            }
            data.append(contentsOf: buffer[0..<n])
            if data.count > maxFileSize {
                throw StandardInputError("standard input is larger than \(maxFileSize / 1_048_576) MB; manifests larger than that are refused")
            }
        }
    }

    static func decode(_ data: Data) -> String? {
        var bytes = data
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }  // UTF-8 byte order mark
        return String(data: bytes, encoding: .utf8)
    }
}
