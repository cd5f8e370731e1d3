import Foundation

/// A small cobra/pflag-like flag parser: `-a x`, `-a=x`, `--arch x`, `--arch=x`,
/// grouped short booleans (`-rq`), and flags anywhere among the arguments.
struct FlagParser {
    var usage: String
    /// short letter → long name; a key of "" or "-" lists long-only names separated by commas.
    var bools: [String: String] = [:]
    var values: [String: String] = [:]

    struct Result {
        var bools: Set<String> = []
        var values: [String: String] = [:]
        var positional: [String] = []
    }

    func expand(_ table: [String: String]) -> (short: [Character: String], long: Set<String>) {
        var short: [Character: String] = [:]
        var long: Set<String> = []
        for (k, v) in table {
            for name in v.split(separator: ",").map(String.init) {
                long.insert(name)
                if k.count == 1, k != "-", let c = k.first { short[c] = name }
            }
        }
        return (short, long)
    }

    func parse(_ args: [String]) throws -> Result {
        let (boolShort, boolLong) = expand(bools)
        let (valueShort, valueLong) = expand(values)
        var result = Result()
        var i = 0
        while i < args.count {
            let arg = args[i]
            i += 1
            if arg == "--" {
                result.positional += args[i...]
                break
            }
            if arg.hasPrefix("--") {
                let body = arg.dropFirst(2)
                let name = String(body.split(separator: "=", maxSplits: 1)[0])
                let inline = body.contains("=") ? String(body.split(separator: "=", maxSplits: 1).dropFirst().first ?? "") : nil
                if boolLong.contains(name) {
                    if inline == nil || inline == "true" { result.bools.insert(name) }
                } else if valueLong.contains(name) {
                    if let inline {
                        result.values[name] = inline
                    } else {
                        guard i < args.count else { throw SimExit.usage("flag needs an argument: --\(name)", usage) }
                        result.values[name] = args[i]
                        i += 1
                    }
                } else {
                    throw SimExit.usage("unknown flag: --\(name)", usage)
                }
            } else if arg.hasPrefix("-") && arg.count > 1 {
                var chars = Array(arg.dropFirst())
                while let c = chars.first {
                    chars.removeFirst()
                    if let name = boolShort[c] {
                        result.bools.insert(name)
                    } else if let name = valueShort[c] {
                        var rest = String(chars)
                        if rest.hasPrefix("=") { rest.removeFirst() }
                        if !rest.isEmpty {
                            result.values[name] = rest
                        } else {
                            guard i < args.count else { throw SimExit.usage("flag needs an argument: '\(c)' in -\(c)", usage) }
                            result.values[name] = args[i]
                            i += 1
                        }
                        break
                    } else {
                        throw SimExit.usage("unknown shorthand flag: '\(c)' in \(arg)", usage)
                    }
                }
            } else {
                result.positional.append(arg)
            }
        }
        return result
    }
}
