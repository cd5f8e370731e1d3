import Foundation

/// Finding the emulator binary itself, for shims and machine commands.
public enum OrbSimExecutable {
    /// The absolute path of the running executable.
    public static func path(argv0: String, environment: [String: String]) -> String {
        #if os(Linux)
        if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return resolved }
        #endif
        if let exe = Bundle.main.executablePath { return (exe as NSString).resolvingSymlinksInPath }
        return (argv0 as NSString).resolvingSymlinksInPath
    }
}
