import Dispatch
import Foundation
import ReplPlatform

/// SIGINT, SIGTERM and SIGHUP for the whole process. Each orbctl call runs in its own
/// process group (so a timeout can end it and all it started), which means a terminal's
/// Ctrl-C, `kill`, or `launchctl bootout` reaches repl alone: by default the signal ends
/// repl's children first, then repl, with 128 + the signal. A command that stops
/// gracefully (`watch`: finish the tick, release the lease, restore the terminal) takes the
/// signals over with `handle`.
enum Interrupts {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []
    nonisolated(unsafe) private static var handler: (@Sendable (Int32) -> Void)?

    static let signals = [SIGINT, SIGTERM, SIGHUP]

    /// Installs the process-wide handling (once, at start).
    static func install() {
        lock.withLock {
            guard sources.isEmpty else { return }
            for sig in signals {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler { deliver(sig) }
                source.resume()
                sources.append(source)
            }
        }
    }

    /// From now on a signal calls `onSignal` instead of ending the process.
    static func handle(_ onSignal: @escaping @Sendable (Int32) -> Void) {
        lock.withLock { handler = onSignal }
    }

    /// Back to ending the process on a signal.
    static func restore() {
        lock.withLock { handler = nil }
    }

    nonisolated(unsafe) private static var received: Int32?

    /// Ends the process as the signal asked, if one came: the command may have finished (its
    /// orbctl call killed under it) between the signal and the handler's exit.
    static func exitIfInterrupted() {
        if let sig = lock.withLock({ received }) { exit(128 + sig) }
    }

    private static func deliver(_ sig: Int32) {
        let handler = lock.withLock { () -> (@Sendable (Int32) -> Void)? in
            if self.handler == nil { received = sig }
            return self.handler
        }
        if let handler {
            handler(sig)
            return
        }
        ChildProcessGroups.killAll()
        // A child forked a moment ago registers its group just after it exists, and is killed
        // as it does: give it that moment before exiting.
        usleep(50_000)
        exit(128 + sig)
    }
}
