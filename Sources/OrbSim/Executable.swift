import Foundation
import ReplPlatform

/// Finding the emulator binary itself, for shims and machine commands.
public enum OrbSimExecutable {
    /// The absolute path of the running executable (never `argv[0]`, which may be a bare
    /// name found on PATH).
    public static func path() -> String { Platform.executablePath() }
}
