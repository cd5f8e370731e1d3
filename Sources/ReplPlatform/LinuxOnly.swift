// Everything that exists only on Linux, in one place: namespaces (`unshare`, `mount`,
// `sethostname`), `/proc` and Glibc's spellings. The portability check in `.ci/run`
// (`scaffold/scripts/check-portability.sh`) refuses these anywhere else.
#if os(Linux)
import Foundation
import Glibc

enum LinuxOnly {
    static let unshare = "/usr/bin/unshare"

    static func executablePath() -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    }

    /// Why machine commands cannot have a private namespace here; nil when they can
    /// (root, with util-linux's `unshare`, and not turned off).
    static var namespacesRefusal: String? {
        if ProcessInfo.processInfo.environment["ORBSIM_NAMESPACES"] == "0" {
            return "orbctl-sim runs machine commands only in a private namespace, and ORBSIM_NAMESPACES=0 turns them off"
        }
        if !FileManager.default.isExecutableFile(atPath: unshare) {
            return "orbctl-sim runs machine commands in a private namespace and needs \(unshare) (apt-get install util-linux)"
        }
        if getuid() != 0 {
            return "orbctl-sim runs machine commands in a private namespace, which needs root; run it as root (as in a container or CI)"
        }
        return nil
    }

    static func processes(withEnvironmentEntry entry: String) -> [Int32] {
        let mark = Array(entry.utf8)
        let me = getpid()
        var found: [Int32] = []
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        for entry in entries {
            guard let pid = Int32(entry), pid != me,
                  let environ = Platform.readWholeFile("/proc/\(entry)/environ") else { continue }
            if environ.split(separator: 0).contains(where: { Array($0) == mark }) { found.append(pid) }
        }
        return found
    }

    static func isZombie(_ pid: Int32) -> Bool {
        guard let raw = Platform.readWholeFile("/proc/\(pid)/stat"), case let stat = String(decoding: raw, as: UTF8.self),
              let close = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(close, offsetBy: 2)...].hasPrefix("Z")
    }

    static func swiftRuntimeDirectory() -> String? {
        guard let data = Platform.readWholeFile("/proc/self/maps") else { return nil }
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasSuffix("/libswiftCore.so") {
            if let path = line.split(separator: " ", omittingEmptySubsequences: true).last {
                return (String(path) as NSString).deletingLastPathComponent
            }
        }
        return nil
    }

    static func peakResidentMegabytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Int(usage.ru_maxrss) / 1024  // kilobytes on Linux
    }
}

/// The emulator's machine view, made inside fresh mount and UTS namespaces (`unshare
/// --mount --uts --propagation private`): the host's whole tree stays reachable under a
/// host view, the machine's own directories are bound over the host's, the hostname
/// is the machine's, and the guarded programs are covered by shims.
public enum MachineNamespace {
    public struct SetUpError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The program that makes the namespaces.
    public static var launcher: String { LinuxOnly.unshare }
    /// Its arguments before the command to run inside.
    public static let launcherArguments = ["--mount", "--uts", "--propagation", "private"]

    /// Returns the host view (where the host's `/` now is).
    public static func setUp(hostViewCandidates: [String], machineRoot: String, directories: [String], hostname: String,
                             cover guarded: [String], with shims: String) throws -> String {
        let fm = FileManager.default
        var hostView = ""
        for candidate in hostViewCandidates where (try? fm.createDirectory(atPath: candidate, withIntermediateDirectories: true)) != nil {
            try bind("/", candidate, recursive: true)
            hostView = candidate
            break
        }
        guard !hostView.isEmpty else { throw SetUpError(description: "no place for the host view") }
        for dir in directories {
            let target = "/" + dir
            if !fm.fileExists(atPath: target) { try fm.createDirectory(atPath: target, withIntermediateDirectories: true) }
            try bind(hostView + machineRoot + "/" + dir, target, recursive: false)
        }
        guard sethostname(hostname, hostname.utf8.count) == 0 else {
            throw SetUpError(description: "sethostname: \(String(cString: strerror(errno)))")
        }
        var covered = Set<String>()
        for tool in guarded {
            for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/local/bin", "/lib/systemd"] {
                let path = dir + "/" + tool
                guard fm.fileExists(atPath: path) else { continue }
                let real = (path as NSString).resolvingSymlinksInPath
                guard !covered.contains(real) else { continue }
                try bind(hostView + shims + "/" + tool, real)
                covered.insert(real)
            }
        }
        return hostView
    }

    static func bind(_ source: String, _ target: String, recursive: Bool = false) throws {
        let flags = UInt(MS_BIND) | (recursive ? UInt(MS_REC) : 0)
        guard mount(source, target, nil, flags, nil) == 0 else {
            throw SetUpError(description: "bind \(source) over \(target): \(String(cString: strerror(errno)))")
        }
    }
}
#else
import Foundation

/// The emulator's machine view needs Linux namespaces; elsewhere setting it up refuses
/// (and the emulator refuses machine commands before it gets here).
public enum MachineNamespace {
    public struct SetUpError: Error, CustomStringConvertible {
        public var description: String
    }

    public static let launcher = ""
    public static let launcherArguments: [String] = []

    public static func setUp(hostViewCandidates: [String], machineRoot: String, directories: [String], hostname: String,
                             cover guarded: [String], with shims: String) throws -> String {
        throw SetUpError(description: Platform.machineCommandsRefusal ?? "no machine namespaces on this system")
    }
}
#endif
