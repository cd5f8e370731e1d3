import ReplCore
import Testing

/// The wrapper's status line, as the channel or the machine gives it. Anything in a machine can
/// write there: an exit code is only what a shell's `$?` prints (found by the attack on #20).
struct StatusTextTests {
    @Test(arguments: [("exited 0", 0), ("exited 3", 3), ("exited 255\nended=1", 255), ("exited 007", 7)])
    func anExitCodeIsRead(_ text: String, _ code: Int) {
        #expect(ProbeResult(statusText: text) == .exited(code))
    }

    @Test(arguments: ["exited 256", "exited -5", "exited +0", "exited ", "exited 1e3", "exited ٣", "exited 99999999999999999999"])
    func anythingElseIsUnreadable(_ text: String) {
        guard case .unreadable = ProbeResult(statusText: text) else {
            Issue.record("\(text) was read as \(ProbeResult(statusText: text))")
            return
        }
    }
}
