import Foundation
import ReplCore

// repl-bench: figures as ratios and absolute times, measured side by side in one run.
// Sections grow as the controller does; see docs/BENCHMARKS.md.

#if DEBUG
FileHandle.standardError.write(Data("warning: a debug build; use `swift run -c release repl-bench` for real figures\n".utf8))
#endif

print("| planner: desired × observed | median time | actions | peak RSS |")
print("|---|---|---|---|")
for (desired, observed) in [(1_000, 10_000), (10_000, 10_000)] {
    let r = PlannerBench.run(desired: desired, observed: observed)
    print("| \(desired) × \(observed) | \(String(format: "%.1f", r.medianMilliseconds)) ms | \(r.actions) | \(peakResidentMegabytes()) MB |")
}

/// The process's peak resident set size in megabytes.
func peakResidentMegabytes() -> Int {
    var usage = rusage()
    #if os(Linux)
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Int(usage.ru_maxrss) / 1024  // kilobytes on Linux
    #else
    getrusage(RUSAGE_SELF, &usage)
    return Int(usage.ru_maxrss) / 1_048_576  // bytes on macOS
    #endif
}
