import Foundation

/// Runs a program to completion with a time limit, timing it by wall clock (process start-up
/// included). Standard output and error go to one temporary file, not a pipe, so a chatty child
/// can never stall on a full pipe while we wait for it.
public enum ChildProcess {
    public enum Outcome: Sendable {
        case finished(Duration)
        case failed(status: Int32, message: String)
        case timedOut
    }

    /// Runs `command` (`command[0]` is a path), feeding `input` on standard input when given (else
    /// /dev/null), and kills it with SIGKILL after `timeoutSeconds`. Returns the outcome and, when
    /// the child ran to an exit, everything it printed.
    public static func run(_ command: [String], input: String? = nil, timeoutSeconds: Int) -> (outcome: Outcome, output: String?) {
        let unique = "turnout-bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("\(unique).log")
        let inputFile = FileManager.default.temporaryDirectory.appendingPathComponent("\(unique).in")
        defer {
            try? FileManager.default.removeItem(at: log)
            try? FileManager.default.removeItem(at: inputFile)
        }
        guard FileManager.default.createFile(atPath: log.path, contents: nil),
              let handle = FileHandle(forWritingAtPath: log.path) else {
            return (.failed(status: -1, message: "cannot create \(log.path)"), nil)
        }
        defer { try? handle.close() }
        var inputHandle: FileHandle?
        if let input {
            guard FileManager.default.createFile(atPath: inputFile.path, contents: Data(input.utf8)),
                  let opened = FileHandle(forReadingAtPath: inputFile.path) else {
                return (.failed(status: -1, message: "cannot create \(inputFile.path)"), nil)
            }
            inputHandle = opened
        }
        defer { try? inputHandle?.close() }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.standardInput = inputHandle ?? FileHandle.nullDevice
        process.standardOutput = handle
        process.standardError = handle
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }

        let clock = ContinuousClock()
        let start = clock.now
        do {
            try process.run()
        } catch {
            return (.failed(status: -1, message: "cannot run \(command[0]): \(error)"), nil)
        }
        if exited.wait(timeout: .now() + .seconds(timeoutSeconds)) == .timedOut {
            // `ip netns exec` execs the program in place, so this PID is the program itself.
            kill(process.processIdentifier, SIGKILL)
            exited.wait()
            return (.timedOut, nil)
        }
        let elapsed = clock.now - start
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            let lines = output.split(separator: "\n", omittingEmptySubsequences: true)
            let excerpt = lines.prefix(3).joined(separator: " | ")
            return (.failed(status: process.terminationStatus, message: excerpt.isEmpty ? "no output" : String(excerpt.prefix(300))), output)
        }
        return (.finished(elapsed), output)
    }

    /// The first executable `name` on `PATH`, then in root's sbin directories (which a user's
    /// `PATH` may lack).
    public static func executable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        return directories.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}
