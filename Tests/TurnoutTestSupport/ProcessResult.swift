import Foundation

/// What a finished child process left behind.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var standardOutput: String
    public var standardError: String
}

/// Runs programs for tests: the `turnout` binary, `nft`, `iptables-restore`, `ip`.
///
/// Output is read on background threads while the child runs, so a chatty child cannot block
/// on a full pipe; a time limit kills it so no test can hang.
public enum Subprocess {
    public static func run(_ executable: String, _ arguments: [String], input: String? = nil,
                           environment: [String: String]? = nil, workingDirectory: String? = nil,
                           timeLimit: Duration = .seconds(60)) throws -> ProcessResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable.hasPrefix("/") ? executable : try locate(executable))
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
        let output = Pipe(), error = Pipe(), stdin = Pipe()
        process.standardOutput = output
        process.standardError = error
        process.standardInput = stdin
        try process.run()

        let collected = CollectedOutput()
        let group = DispatchGroup()
        for (pipe, isError) in [(output, false), (error, true)] {
            group.enter()
            DispatchQueue.global().async {
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                collected.store(String(decoding: data, as: UTF8.self), isError: isError)
                group.leave()
            }
        }
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try? stdin.fileHandleForWriting.close()

        let deadline = ContinuousClock.now + timeLimit
        while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.005) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            throw SubprocessError.timedOut(executable, arguments)
        }
        process.waitUntilExit()
        group.wait()
        return ProcessResult(status: process.terminationStatus, standardOutput: collected.output, standardError: collected.error)
    }

    /// The first `PATH` entry (plus the sbin directories root tools live in) holding `name`.
    public static func locate(_ name: String) throws -> String {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw SubprocessError.notFound(name)
    }
}

public enum SubprocessError: Error, CustomStringConvertible {
    case notFound(String)
    case timedOut(String, [String])

    public var description: String {
        switch self {
        case .notFound(let name): "\(name) is not installed (scripts/bootstrap installs it)"
        case .timedOut(let name, let arguments): "\(name) \(arguments.joined(separator: " ")) did not finish in time"
        }
    }
}

/// Both pipes' text, written from two reader threads. A lock guards it: the only shared state.
private final class CollectedOutput: @unchecked Sendable {
    // @unchecked is safe: every access to the two strings goes through `lock`.
    private let lock = NSLock()
    private var stdout = ""
    private var stderr = ""

    func store(_ text: String, isError: Bool) {
        lock.lock()
        defer { lock.unlock() }
        if isError { stderr = text } else { stdout = text }
    }

    var output: String { lock.lock(); defer { lock.unlock() }; return stdout }
    var error: String { lock.lock(); defer { lock.unlock() }; return stderr }
}
