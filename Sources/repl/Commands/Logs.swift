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
        let cid = try context.store().controlID()
        var printed: [InstanceID: Int] = [:]
        var outputs: [InstanceID: Data] = [:]
        var liveError: String?
        while true {
            let instances = record.run.instances.filter { $0.generation == record.run.generation && $0.startedAt != nil }
            let reader = try await context.logReader(live: instances.contains { !$0.phase.isTerminal })
            for instance in instances {
                // Only what is new since the last read: from the collected log, the host channel,
                // or (a machine without the channel, still running) the machine itself.
                let machine = MachineName(controlID: cid, manifestID: record.run.id, instanceID: instance.id).description
                let already = printed[instance.id] ?? 0
                let data: Data?
                do {
                    data = try await reader.read(run: record.run.manifest.name, instance: instance.id, machine: machine, bootstrap: bootstrap,
                                                 from: already, live: !instance.phase.isTerminal)
                } catch {
                    liveError = error.description
                    continue
                }
                guard let data, !data.isEmpty || printed[instance.id] == nil else { continue }
                if context.json {
                    outputs[instance.id, default: Data()].append(data)
                } else if !data.isEmpty {
                    if instances.count > 1 && already == 0 { Console.out("==> instance \(Base36.encode(instance.id)) <==\n") }
                    Console.out(String(decoding: data, as: UTF8.self))
                }
                printed[instance.id] = already + data.count
            }
            if !follow || record.run.phase.isTerminal { break }
            try await Task.sleep(nanoseconds: 1_000_000_000)
            record = try context.findRun(id)
        }
        if context.json {
            let documents = outputs.keys.sorted().map { ["instance": Base36.encode($0), "output": String(decoding: outputs[$0]!, as: UTF8.self)] }
            context.printJSON(["run": record.run.manifest.name, "logs": documents])
        }
        else if printed.values.allSatisfy({ $0 == 0 }) && !context.quiet {
            let why = liveError.map { "; the running machine's log cannot be read: \($0)" } ?? " yet"
            Console.err("repl: no \(bootstrap ? "bootstrap log" : "output") for \(record.run.manifest.name)\(why)\n")
        }
    }
}
