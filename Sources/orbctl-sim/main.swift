import Foundation
import OrbSim
import ReplPlatform

// orbctl-sim: an emulator of OrbStack's `orbctl` (run it as `orbctl` through a
// symlink, or directly). State lives under $ORBSIM_HOME (default ~/.orbsim).
Platform.openStandardStreams()
let environment = ProcessInfo.processInfo.environment
let executable = OrbSimExecutable.path()
let sim = OrbSim(home: OrbSim.defaultHome(environment: environment), executable: executable, environment: environment)
exit(sim.main(Array(CommandLine.arguments.dropFirst()), io: .standard))
