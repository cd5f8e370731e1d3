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

    static let piece = 8 << 20

    func run() async throws {
        let context = Context(global)
        var record = try context.findRun(id)
        let cid = try context.store().controlID()
        var printed: [InstanceID: Int] = [:]
        var outputs: [InstanceID: Data] = [:]
        var liveError: String?
        var lastShown: InstanceID?
        while true {
            let instances = record.run.instances.filter { $0.generation == record.run.generation && $0.startedAt != nil }
            // Without a controller running the run's phase may lag: a status that says every
            // command has ended (the host channel) ends following too, once all that was
            // written before it (read below) is printed.
            let channel = StatusChannel(directory: context.channelDirectory)
            var silent: [String] = []
            let ended = !instances.isEmpty && instances.allSatisfy { instance in
                let machine = MachineName(controlID: cid, manifestID: record.run.id, instanceID: instance.id).description
                if instance.phase.isTerminal || channel.status(machine)?.isFinal == true { return true }
                // No heartbeat for a minute (a restarted machine, with no controller to say so).
                if let beat = channel.heartbeat(machine), Date().timeIntervalSince(beat) > 60,
                   let started = instance.startedAt, Date().timeIntervalSince(started) > 60 {
                    silent.append(machine)
                    return true
                }
                return false
            }
            if follow && ended && !silent.isEmpty {
                Console.err("repl: no heartbeat from \(silent.joined(separator: ", ")) for over a minute (restarted?); stopped following. A sweep judges it\n")
            }
            // The machine itself is asked (orbctl) only for a live instance without the channel.
            let needsMachine = instances.contains { instance in
                !instance.phase.isTerminal && !channel.isInUse(MachineName(controlID: cid, manifestID: record.run.id, instanceID: instance.id).description)
            }
            let reader: LogReader
            do {
                reader = try await context.logReader(live: needsMachine)
            } catch {
                liveError = (error as? CLIError)?.description ?? "\(error)"
                reader = try await context.logReader(live: false)
            }
            for instance in instances {
                // Only what is new since the last read: from the collected log, the host channel,
                // or (a machine without the channel, still running) the machine itself.
                let machine = MachineName(controlID: cid, manifestID: record.run.id, instanceID: instance.id).description
                // A piece at a time (8 MiB), so a log of any size is printed without holding it.
                while true {
                    let already = printed[instance.id] ?? 0
                    let data: Data?
                    do {
                        data = try await reader.read(run: record.run.manifest.name, instance: instance.id, machine: machine, bootstrap: bootstrap,
                                                     from: already, live: !instance.phase.isTerminal, limit: Self.piece)
                    } catch {
                        liveError = error.description
                        break
                    }
                    guard let data, !data.isEmpty || printed[instance.id] == nil else { break }
                    if context.json {
                        outputs[instance.id, default: Data()].append(data)
                    } else if !data.isEmpty {
                        // A header whenever the output switches instance (with -f, pieces alternate).
                        if instances.count > 1 && lastShown != instance.id {
                            Console.out("\(lastShown == nil ? "" : "\n")==> instance \(Base36.encode(instance.id)) <==\n")
                            lastShown = instance.id
                        }
                        Console.out(data)  // byte for byte: output need not be UTF-8
                    }
                    printed[instance.id] = already + data.count
                    if data.count < Self.piece { break }
                }
            }
            if follow && ended && !context.json { break }
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
