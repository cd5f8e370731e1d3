import ArgumentParser
import Foundation
import ReplController
import ReplCore

/// `repl artifacts RUN [--instance N] [--to DIR]`: what `artifacts:` brought back, kept under
/// `$REPL_HOME/artifacts/RUN/N/` with the paths they had in the machine. Each instance's
/// directory says which run and generation filled it (`.origin`); only the named run's own are
/// shown (a new run with an old run's name never shows the old one's files).
struct Artifacts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List or copy the artifacts a run's instances brought back.",
        discussion: "Example: repl artifacts train   ·   repl artifacts train --instance 2 --to ./results")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The run's name.", completion: RunNameCompletion.kind) var run: String
    @Option(help: "Only instance N (1, 2, …).") var instance: Int?
    @Option(help: "Copy them into this directory (RUN/N/… under it) instead of listing them.") var to: String?

    func run() async throws {
        let context = Context(global)
        guard run.wholeMatch(of: /[a-z0-9][a-z0-9-]{0,39}/) != nil else { throw CLIError.input("\"\(Console.visible(run))\" is not a run name") }
        if let instance, instance < 1 { throw CLIError.input("--instance: \(instance) is not an instance number (1, 2, …)") }
        let store = context.stateDirectory.appendingPathComponent("artifacts")
        let root = store.appendingPathComponent(run)
        let fm = FileManager.default
        // The run's id, when the store still knows it (also once deleted, until pruned).
        let owner = try? context.findRun(run, quiet: true)
        let numbers = ((try? fm.contentsOfDirectory(atPath: root.path)) ?? []).compactMap(Int.init).sorted()
            .filter { instance == nil || $0 == instance }
            .filter { n in
                guard let owner else { return true }
                let origin = (try? String(contentsOf: root.appendingPathComponent("\(n)/\(Controller.artifactsOrigin)"), encoding: .utf8)) ?? ""
                return origin.hasPrefix("run \(Base36.encode(owner.run.id)) ")
            }
        var files: [(number: Int, path: String)] = []
        for n in numbers {
            let base = root.appendingPathComponent(String(n))
            for path in (fm.enumerator(atPath: base.path)?.allObjects as? [String] ?? []).sorted()
            where path != Controller.artifactsOrigin && !path.hasSuffix(".incoming.tar") {
                var isDirectory: ObjCBool = false
                if fm.fileExists(atPath: base.appendingPathComponent(path).path, isDirectory: &isDirectory), !isDirectory.boolValue {
                    files.append((n, path))
                }
            }
        }
        if files.isEmpty {
            throw CLIError.input(
                "run \(run) has no artifacts\(instance.map { " from instance \($0)" } ?? "") in \(root.path) "
                    + "(they are copied when an instance's command ends; a glob that matched nothing is a note in `repl run status \(run)`)")
        }
        if let to {
            guard !to.isEmpty else { throw CLIError.input("--to: give a directory") }
            let destination = URL(fileURLWithPath: to).standardizedFileURL.resolvingSymlinksInPath().appendingPathComponent(run)
            // Never into the store itself: a copy onto its own source loses it.
            let kept = store.standardizedFileURL.resolvingSymlinksInPath().path
            if destination.path == kept || destination.path.hasPrefix(kept + "/") {
                throw CLIError.input("--to: \(to) is inside the artifacts repl keeps (\(store.path)); give a directory outside it")
            }
            var isDirectory: ObjCBool = false
            if fm.fileExists(atPath: to, isDirectory: &isDirectory), !isDirectory.boolValue {
                throw CLIError.input("--to: \(to) is a file, not a directory")
            }
            do {
                for file in files {
                    let target = destination.appendingPathComponent(String(file.number)).appendingPathComponent(file.path)
                    try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
                    try? fm.removeItem(at: target)
                    try fm.copyItem(at: root.appendingPathComponent(String(file.number)).appendingPathComponent(file.path), to: target)
                }
            } catch {
                throw CLIError.failure(
                    "cannot copy the artifacts to \(destination.path): \((error as NSError).localizedFailureReason ?? error.localizedDescription)")
            }
            context.say("copied \(files.count) file\(files.count == 1 ? "" : "s") to \(destination.path)")
            return
        }
        if context.json {
            context.printJSON([
                "artifacts": files.map {
                    [
                        "instance": $0.number, "path": "/" + $0.path,
                        "file": root.appendingPathComponent(String($0.number)).appendingPathComponent($0.path).path,
                    ]
                }
            ])
            return
        }
        for file in files {
            print(
                Console.visible(
                    "\(run)/\(file.number)  /\(file.path)  \(root.appendingPathComponent(String(file.number)).appendingPathComponent(file.path).path)"
                ))
        }
    }
}
