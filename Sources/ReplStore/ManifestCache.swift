import Foundation
import ReplCore

/// Stored manifests as decoded, by run id, with the text they were decoded from.
final class ManifestCache: @unchecked Sendable {
    private let lock = NSLock()
    private var decoded: [Int64: (text: String, manifest: RunManifest)] = [:]

    func manifest(run: Int64, text: String) throws -> RunManifest {
        if let hit = lock.withLock({ decoded[run] }), hit.text == text { return hit.manifest }
        let manifest = try Store.decoder.decode(RunManifest.self, from: Data(text.utf8))
        lock.withLock { decoded[run] = (text, manifest) }
        return manifest
    }

    /// Many manifests at once, in order: decoded on every core when there are enough of them
    /// (decoding was a quarter of `run list` with 1,000 runs).
    func manifests(of rows: [(run: Int64, text: String)]) -> [Result<RunManifest, any Error>] {
        guard rows.count >= 64 else { return rows.map { row in Result { try manifest(run: row.run, text: row.text) } } }
        let results = Results(count: rows.count)
        let chunks = min(ProcessInfo.processInfo.activeProcessorCount * 2, rows.count / 32)
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            for i in stride(from: chunk, to: rows.count, by: chunks) {
                results.set(i, Result { try manifest(run: rows[i].run, text: rows[i].text) })
            }
        }
        return results.all
    }

    /// Results written by index from several threads.
    private final class Results: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [Result<RunManifest, any Error>?]
        init(count: Int) { values = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ value: Result<RunManifest, any Error>) { lock.withLock { values[i] = value } }
        var all: [Result<RunManifest, any Error>] { lock.withLock { values.map { $0! } } }
    }

    /// How many manifests were decoded (for tests).
    var count: Int { lock.withLock { decoded.count } }
}

extension Int64 {
    /// An id as the store's INTEGER columns hold it (bit for bit: no id traps on the way in or out).
    init(_ id: some StoreIdentifier) { self.init(bitPattern: id.rawValue) }
}

extension StoreIdentifier {
    /// An id as read from the store's INTEGER columns.
    init(_ value: Int64) { self.init(rawValue: UInt64(bitPattern: value)) }
}
