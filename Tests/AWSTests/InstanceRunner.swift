import AWS
import Foundation
import ReplPlatform
import ReplTestSupport

/// What moto never does: run an instance's user data. Each instance launched through
/// ``EC2Semantics`` becomes a machine of the emulator (its own PID, mount and UTS namespaces,
/// never without a PID namespace: the emulator refuses machine commands where it cannot make
/// one), named as the instance, and its user data runs there as root. A `poweroff` inside
/// (the emulator's shim stops the machine) terminates the instance, as
/// `InstanceInitiatedShutdownBehavior=terminate` does; a terminated instance's machine is
/// deleted, which ends everything it ran.
final class InstanceRunner: @unchecked Sendable {
    let home: EmulatorHome
    let truth: EC2Client
    private let lock = NSLock()
    private var running: Set<String> = []
    private var watcher: Task<Void, Never>?

    init(truth: EC2Client) throws {
        home = try EmulatorHome(prefix: "repl-aws-instances")
        self.truth = truth
    }

    deinit {
        watcher?.cancel()
        home.remove()
    }

    /// Hooks the runner into `semantics`, and watches for instances that powered off.
    func attach(to semantics: EC2Semantics) {
        semantics.onLaunch = { [weak self] id, userData in self?.launch(id, userData) }
        semantics.onTerminate = { [weak self] ids in self?.terminated(ids) }
        watcher = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: 500_000_000)
                await self?.reapPoweredOff()
            }
        }
    }

    func launch(_ id: String, _ userData: Data?) {
        lock.withLock { _ = running.insert(id) }
        let home = self.home
        let script = userData.map { String(decoding: $0, as: UTF8.self) } ?? "#!/bin/sh\n"
        Task.detached {
            // Not isolated: an isolated machine has a network of its own, and an instance reaches
            // S3 (moto, on the host's loopback). The user data is repl's agent and commands
            // written for the tests, and the agent writes nothing under `/mnt/mac`.
            _ = try? await home.sim(["create", "ubuntu", id])
            _ = try? await home.sim(["run", "-m", id, "-u", "root", "bash", "-c", script], timeout: 3600)
        }
    }

    func terminated(_ ids: [String]) {
        let gone = lock.withLock { ids.filter { running.remove($0) != nil } }
        let home = self.home
        for id in gone { Task.detached { _ = try? await home.sim(["delete", "-f", id]) } }
    }

    /// What each instance's agent has done so far, for a failure's message.
    func diagnose() async -> String {
        var out = ""
        for id in lock.withLock({ running }).sorted() {
            let r = try? await home.sim([
                "run", "-m", id, "-u", "root", "sh", "-c",
                "ls -la /var/tmp/repl-agent /var/tmp/repl-agent/channel /var/lib/repl; cat /var/tmp/repl-agent/launch.answer; ps ax | cut -c1-150 | head -20",
            ])
            out += "\n[\(id)] \(r?.stdoutText ?? "") \(r?.stderrText ?? "")"
        }
        return out
    }

    /// An instance whose machine stopped (its `poweroff`) is terminated in EC2.
    func reapPoweredOff() async {
        guard let list = try? await home.sim(["list", "-f", "json"]), list.status == 0,
            let machines = try? JSONSerialization.jsonObject(with: list.stdout) as? [[String: Any]]
        else { return }
        let ids = lock.withLock { running }
        for machine in machines {
            guard let name = machine["name"] as? String, ids.contains(name), machine["state"] as? String == "stopped" else { continue }
            try? await truth.terminateInstances([name])
            terminated([name])
        }
    }
}
