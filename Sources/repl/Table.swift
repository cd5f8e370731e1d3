import Foundation
import ReplCore

/// Aligned text tables.
enum Table {
    /// Columns padded to their widest cell; text from machines, orbctl or manifests (a label,
    /// an error) has its control characters made visible, as everywhere else.
    static func render(_ header: [String], _ rows: [[String]]) -> String {
        let all =
            [header]
            + rows.map {
                $0.map { cell in
                    let shown = Console.visible(cell)
                    guard shown.contains("\n") || shown.contains("\t") else { return shown }
                    return shown.replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\t", with: "\\t")
                }
            }
        var widths = [Int](repeating: 0, count: header.count)
        for row in all { for (i, c) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        // Padded by characters, as the widths are counted (NSString's padding counts UTF-16
        // units, and cost a fifth of `run list` with 1,000 runs).
        var out = ""
        for (r, row) in all.enumerated() {
            if r > 0 { out += "\n" }
            for (i, c) in row.enumerated() {
                out += c
                if i < row.count - 1 { out += String(repeating: " ", count: max(0, widths[i] + 2 - c.count)) }
            }
        }
        return out
    }

    static func age(_ interval: TimeInterval) -> String {
        let s = Int(max(0, interval))
        if s < 120 { return "\(s)s" }
        if s < 7200 { return "\(s / 60)m" }
        if s < 172_800 { return "\(s / 3600)h" }
        return "\(s / 86400)d"
    }
}
