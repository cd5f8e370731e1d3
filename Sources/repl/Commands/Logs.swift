import ArgumentParser
import Foundation
import ReplController
import ReplCore

struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a run's output; works after its machine is gone.",
        discussion: "Example: repl logs hello   ·   repl logs hello/2 -f   ·   repl logs hello --tail 20   ·   repl logs hello --bootstrap")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Run id, name, or a unique prefix; RUN/N for its instance N (1, 2, …).", completion: RunNameCompletion.kind) var id: String = ""
    @Option(
        name: [.customShort("l"), .customLong("selector")],
        help: "The output of every run whose labels match (key=value[,key2=value2], key!=value, key).")
    var selector: String?
    @Option(help: "Only the last N lines of each instance's output (then, with -f, what follows).") var tail: Int?
    @Flag(name: .shortAndLong, help: "Follow a live run until it ends.") var follow = false
    @Flag(help: "Show /tmp/bootstrap.log instead of the command's output.") var bootstrap = false

    static let piece = 8 << 20

    /// The byte offset where an output's last `lines` lines begin, reading it a piece at a time
    /// and keeping only the offsets of the last line starts (a log of any size).
    static func tailOffset(
        _ reader: LogReader, run: DesiredRun, instance: InstanceID, machine: MachineName, bootstrap: Bool,
        lines: Int
    ) async throws -> Int {
        // More lines than any output can have is all of it (and no overflow below).
        let lines = min(lines, Int(Int32.max))
        var starts: [Int] = [0]  // offsets of line starts, the newest `lines + 1` of them
        var offset = 0
        var last: UInt8 = 10
        while true {
            guard
                let data = try await reader.read(
                    run: run.manifest.name, instance: instance, machine: machine, bootstrap: bootstrap,
                    from: offset, live: !(run.instances.first { $0.id == instance }?.phase.isTerminal ?? true),
                    limit: piece), !data.isEmpty
            else { break }
            for (i, byte) in data.enumerated() where byte == 10 {
                starts.append(offset + i + 1)
                if starts.count > lines + 2 { starts.removeFirst(starts.count - lines - 2) }
            }
            offset += data.count
            last = data.last ?? last
            if data.count < piece { break }
        }
        // A final line without its newline counts as a line; a trailing newline starts none.
        if last == 10, starts.last == offset { starts.removeLast() }
        return lines == 0 ? offset : starts.count > lines ? starts[starts.count - lines] : 0
    }

    func validate() throws {
        if id.isEmpty == (selector == nil) { throw ValidationError("give a run, or -l SELECTOR") }
        if selector != nil && follow { throw ValidationError("-f follows one run; -l prints what the matching runs have written") }
    }

    /// `-l`: every matching run's output, each instance headed `==> RUN/N (machine) <==`.
    func printSelected(_ context: Context, _ selector: String) async throws {
        let records = try context.runs(matching: selector)
        if records.isEmpty { throw CLIError.input("no run's labels match \(selector) (see `repl run list -o wide`)") }
        guard let cid = try context.store().existingControlID() else { return }
        let reader = try await context.logReader(live: false)
        var first = true
        for record in records {
            for instance in record.run.instances where instance.generation == record.run.generation && instance.startedAt != nil {
                let machine = MachineName(controlID: cid, manifestID: record.run.id, instanceID: instance.id)
                var offset = 0
                if let tail {
                    offset = try await Self.tailOffset(
                        reader, run: record.run, instance: instance.id, machine: machine, bootstrap: bootstrap, lines: tail)
                }
                Console.out("\(first ? "" : "\n")==> \(record.run.label(instance.id)) (\(machine)) <==\n")
                first = false
                while let data = try await reader.read(
                    run: record.run.manifest.name, instance: instance.id, machine: machine, bootstrap: bootstrap,
                    from: offset, live: false, limit: Self.piece), !data.isEmpty
                {
                    Console.out(data)
                    offset += data.count
                    if data.count < Self.piece { break }
                }
            }
        }
    }

    func run() async throws {
        let context = Context(global)
        if let tail, tail < 0 { throw CLIError.input("--tail: \(tail) is not a number of lines (use 0 or more)") }
        if let selector { return try await printSelected(context, selector) }
        let (runID, number) = try Context.splitInstance(id)
        var record = try context.findRun(runID)
        if let number { _ = try Context.instance(number, of: record.run) }
        // A run without a command has no command output to follow: what there is, then done.
        var follow = self.follow
        if follow && !bootstrap && record.run.manifest.command == nil {
            context.progress("run \(record.run.manifest.name) has no command, so no output to follow (its bootstrap's: --bootstrap)")
            follow = false
        }
        let cid = try context.store().controlID()
        let mirrored = context.mirroredChannel
        var printed: [InstanceID: Int] = [:]
        var outputs: [InstanceID: Data] = [:]
        var liveError: String?
        var lastShown: InstanceID?
        while true {
            let instances = record.run.instances.filter {
                $0.generation == record.run.generation && $0.startedAt != nil && (number == nil || record.run.number(of: $0.id) == number)
            }
            // Without a controller running the run's phase may lag: a status that says every
            // command has ended (the host channel) ends following too, once all that was
            // written before it (read below) is printed.
            let channel = StatusChannel(directory: context.channelDirectory)
            var silent: [String] = []
            let ended =
                !instances.isEmpty
                && instances.allSatisfy { instance in
                    let machine = MachineName(controlID: cid, manifestID: record.run.id, instanceID: instance.id).description
                    if instance.phase.isTerminal || channel.status(machine)?.isFinal == true { return true }
                    // No heartbeat for a minute (a restarted machine, with no controller to say so).
                    if let beat = channel.heartbeat(machine), Date().timeIntervalSince(beat) > 60,
                        let started = instance.startedAt, Date().timeIntervalSince(started) > 60
                    {
                        silent.append(machine)
                        return true
                    }
                    return false
                }
            if follow && ended && !silent.isEmpty {
                Console.err(
                    "repl: no heartbeat from \(silent.joined(separator: ", ")) for over a minute (restarted?); stopped following. A sweep judges it\n"
                )
            }
            // The machine itself is asked (orbctl) only for a live instance without the channel;
            // a mirrored channel (EC2's, in S3) is read for every live instance.
            let needsMachine = instances.contains { instance in
                !instance.phase.isTerminal
                    && (mirrored || !channel.isInUse(MachineName(controlID: cid, manifestID: record.run.id, instanceID: instance.id).description))
            }
            // Each read judged afresh (a following read may succeed after a failed one).
            liveError = nil
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
                let machine = MachineName(controlID: cid, manifestID: record.run.id, instanceID: instance.id)
                // A piece at a time (8 MiB), so a log of any size is printed without holding it.
                // --tail: where the last N lines begin, found on the first read.
                if let tail, printed[instance.id] == nil, !context.json {
                    printed[instance.id] = try await Self.tailOffset(
                        reader, run: record.run, instance: instance.id, machine: machine,
                        bootstrap: bootstrap, lines: tail)
                }
                while true {
                    let already = printed[instance.id] ?? 0
                    let data: Data?
                    do {
                        data = try await reader.read(
                            run: record.run.manifest.name, instance: instance.id, machine: machine, bootstrap: bootstrap,
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
                            Console.out("\(lastShown == nil ? "" : "\n")==> \(record.run.label(instance.id)) (\(machine)) <==\n")
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
            record = try context.findRun(runID)
        }
        if context.json {
            let documents = outputs.keys.sorted().map {
                [
                    "instance": record.run.number(of: $0) ?? 0,
                    "machine": MachineName(controlID: cid, manifestID: record.run.id, instanceID: $0).description,
                    "output": String(decoding: outputs[$0]!, as: UTF8.self),
                ] as [String: Any]
            }
            context.printJSON(["run": record.run.manifest.name, "logs": documents])
        } else if printed.values.allSatisfy({ $0 == 0 }) && !context.quiet && tail == nil {
            let why = liveError.map { "; a log cannot be read: \($0)" } ?? " yet"
            Console.err("repl: no \(bootstrap ? "bootstrap log" : "output") for \(record.run.manifest.name)\(why)\n")
        } else if let liveError, !context.quiet {
            Console.err("repl: a log of \(record.run.manifest.name) cannot be read: \(liveError)\n")
        }
        // What could not be read is a failure (1), after everything that could was printed.
        if liveError != nil { throw CommandExit(code: 1) }
    }
}
