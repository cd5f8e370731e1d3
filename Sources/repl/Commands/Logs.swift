import ArgumentParser
import Foundation
import ReplController
import ReplCore

struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a run's output; works after its machine is gone.",
        discussion: "Example: repl logs hello   ·   repl logs hello -f   ·   repl logs hello --bootstrap")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Run id, name, or a unique prefix.") var id: String
    @Flag(name: .shortAndLong, help: "Follow a live run until it ends.") var follow = false
    @Flag(help: "Show /tmp/bootstrap.log instead of the command's output.") var bootstrap = false

    func run() async throws {
        let context = Context(global)
        var record = try context.findRun(id)
        let logs = context.stateDirectory.appendingPathComponent("logs")
        let cid = try context.store().controlID()
        var printed: [InstanceID: Int] = [:]
        var documents: [[String: String]] = []
        var liveError: String?
        while true {
            let instances = record.run.instances.filter { $0.generation == record.run.generation && $0.startedAt != nil }
            for instance in instances {
                let file = Controller.logFile(logs, run: record.run.manifest.name, instance: instance.id, bootstrap: bootstrap)
                var data = FileManager.default.contents(atPath: file.path)
                if data == nil && !instance.phase.isTerminal {
                    // Live: read it from the machine.
                    let machine = MachineName(controlID: cid, manifestID: record.run.id, instanceID: instance.id).description
                    do {
                        data = try await context.provider().logs(name: machine, bootstrap: bootstrap)
                    } catch {
                        liveError = (error as? CLIError)?.description ?? (error as? ProviderError)?.description ?? "\(error)"
                    }
                }
                guard let data else { continue }
                let already = printed[instance.id] ?? 0
                if data.count > already {
                    if context.json {
                        documents.append(["instance": Base36.encode(instance.id), "output": String(decoding: data, as: UTF8.self)])
                    } else {
                        if instances.count > 1 && already == 0 { print("==> instance \(Base36.encode(instance.id)) <==") }
                        print(String(decoding: data.dropFirst(already), as: UTF8.self), terminator: "")
                    }
                    printed[instance.id] = data.count
                }
            }
            if !follow || record.run.phase.isTerminal { break }
            try await Task.sleep(nanoseconds: 1_000_000_000)
            record = try context.findRun(id)
        }
        if context.json { context.printJSON(["run": record.run.manifest.name, "logs": documents]) }
        else if printed.isEmpty && !context.quiet {
            let why = liveError.map { "; the running machine's log cannot be read: \($0)" } ?? " yet"
            Console.err("repl: no \(bootstrap ? "bootstrap log" : "output") for \(record.run.manifest.name)\(why)\n")
        }
    }
}
