import FoundationEssentials
import TurnoutModel
#if canImport(Glibc)
import Glibc
#endif

/// Runs an external program (`iptables-save`, `iptables-restore`, …) and collects what it printed.
///
/// Every command line starts with `prefix` (empty by default), so the same backend code can run
/// its tools inside a network namespace: `ToolRunner(prefix: ["ip", "netns", "exec", name])`.
/// Programs are looked up on `PATH`, then in `/usr/sbin` and `/sbin` (where Debian keeps the
/// netfilter tools, often missing from a non-login `PATH`). A child still running after
/// `timeLimit` is killed with SIGKILL. Standard input, output and error go through unlinked
/// temporary files rather than pipes: a child that exits early cannot raise SIGPIPE in this
/// process, and a chatty one cannot block on a full pipe. Children are started with
/// `posix_spawn` and awaited on a pidfd (``SpawnedProcess``), not with Foundation's `Process`,
/// whose run loop needs a loopback socket pair and hangs forever in a namespace whose `lo` is
/// down, which is exactly where `turnout init` runs in a fresh pod.
public struct ToolRunner: Sendable {
    /// Prepended to every command line, e.g. `["ip", "netns", "exec", "lab"]`.
    public var prefix: [String]
    /// How long a tool may run before it is killed and `ToolError` reports a timeout.
    public var timeLimit: Duration

    /// Directories searched after `PATH`.
    public static let systemDirectories = ["/usr/sbin", "/sbin"]

    public init(prefix: [String] = [], timeLimit: Duration = .seconds(120)) {
        self.prefix = prefix
        self.timeLimit = timeLimit
    }

    /// Runs `tool arguments…` (after `prefix`), feeding `input` on standard input when given.
    ///
    /// A non-zero exit status is returned, not thrown; use ``output(_:_:input:)`` to treat it as
    /// an error. Throws ``ToolError`` when the program (or the prefix's program) is not installed,
    /// cannot be started, or exceeds `timeLimit`.
    public func run(_ tool: String, _ arguments: [String] = [], input: String? = nil) throws(ToolError) -> ToolResult {
        let fail = { (failure: ToolError.Failure) in ToolError(tool: tool, arguments: arguments, failure: failure) }
        guard let program = Self.locate(tool) else { throw fail(.notFound) }
        var commandLine = prefix + [program] + arguments
        guard let executable = Self.locate(commandLine[0]) else {
            throw ToolError(tool: commandLine[0], arguments: Array(commandLine.dropFirst()), failure: .notFound)
        }
        commandLine.removeFirst()

        let stdin: TemporaryFile?, stdout: TemporaryFile, stderr: TemporaryFile
        do {
            stdin = try input.map { try TemporaryFile(contents: $0) }
            stdout = try TemporaryFile(contents: "")
            stderr = try TemporaryFile(contents: "")
        } catch {
            throw fail(.couldNotStart(reason: "no temporary file: \(error)"))
        }

        let child: SpawnedProcess
        do {
            child = try SpawnedProcess(executable: executable, arguments: commandLine,
                                       standardInput: stdin?.descriptor, standardOutput: stdout.descriptor,
                                       standardError: stderr.descriptor)
        } catch {
            throw fail(.couldNotStart(reason: "\(error)"))
        }
        let exit: Int32?
        do {
            exit = try child.wait(timeLimit: timeLimit)
        } catch {
            child.kill()
            throw fail(.couldNotStart(reason: "\(error)"))
        }
        guard let status = exit else {
            // `ip netns exec` execs the tool in place, so this PID is the tool itself.
            child.kill()
            throw fail(.timedOut(after: timeLimit))
        }
        return ToolResult(tool: tool, arguments: arguments, status: status,
                          standardOutput: stdout.contents(), standardError: stderr.contents())
    }

    /// Runs the tool and returns its standard output; a non-zero exit status throws ``ToolError``
    /// carrying the tool's standard error.
    public func output(_ tool: String, _ arguments: [String] = [], input: String? = nil) throws(ToolError) -> String {
        let result = try run(tool, arguments, input: input)
        guard result.status == 0 else {
            throw ToolError(tool: tool, arguments: arguments, failure: .exited(status: result.status),
                            standardError: result.standardError)
        }
        return result.standardOutput
    }

    /// The absolute path of `name`: itself when it contains a `/`, else the first match on `PATH`,
    /// `/usr/sbin` or `/sbin`; `nil` when none is an executable file.
    public static func locate(_ name: String) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        let directories = path.split(separator: ":").map(String.init) + systemDirectories
        for directory in directories where !directory.isEmpty {
            let candidate = "\(directory)/\(name)"
            var info = stat()
            if stat(candidate, &info) == 0, info.st_mode & S_IFMT == S_IFREG, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        return nil
    }
}

/// How a tool run by ``ToolRunner`` ended: its exit status and everything it printed.
///
/// `status` is the exit status, or 128 + the signal number when a signal ended the tool.
public struct ToolResult: Sendable, Equatable {
    public var tool: String
    public var arguments: [String]
    public var status: Int32
    public var standardOutput: String
    public var standardError: String

    public init(tool: String, arguments: [String], status: Int32, standardOutput: String, standardError: String) {
        self.tool = tool
        self.arguments = arguments
        self.status = status
        self.standardOutput = standardOutput
        self.standardError = standardError
    }
}

/// A tool that failed: which tool, how (its exit status, or why it never ran), and its stderr.
///
/// `description` is one line for people: `iptables-restore failed (exit status 4): …stderr…`.
/// `context` is what the caller adds to make it actionable, e.g. the input line the tool named.
public struct ToolError: Error, Sendable, Equatable, CustomStringConvertible {
    /// How the tool failed: it ran and exited non-zero, or it never ran to its end.
    public enum Failure: Sendable, Equatable {
        case exited(status: Int32)
        case notFound
        case couldNotStart(reason: String)
        case timedOut(after: Duration)
    }

    public var tool: String
    public var arguments: [String]
    public var failure: Failure
    public var standardError: String
    public var context: String?

    public init(tool: String, arguments: [String] = [], failure: Failure, standardError: String = "", context: String? = nil) {
        self.tool = tool
        self.arguments = arguments
        self.failure = failure
        self.standardError = standardError
        self.context = context
    }

    /// The exit status, when the tool ran to its end.
    public var status: Int32? {
        if case .exited(let status) = failure { status } else { nil }
    }

    public var description: String {
        var text: String
        switch failure {
        case .exited(let status):
            text = "\(tool) failed (exit status \(status))"
        case .notFound:
            text = "\(tool) is not installed (looked on PATH and in \(ToolRunner.systemDirectories.joined(separator: ", ")))"
        case .couldNotStart(let reason):
            text = "\(tool) could not be started: \(reason)"
        case .timedOut(let limit):
            text = "\(tool) did not finish within \(limit.formatted()) and was killed"
        }
        // Usage hints ("Try `iptables-restore -h'…") say nothing about this failure.
        let message = standardError.split(whereSeparator: \.isNewline)
            .map(\.trimmedWhitespace)
            .filter { !$0.isEmpty && !$0.hasPrefix("Try `") }
            .joined(separator: " ")
        if !message.isEmpty { text += ": \(message)" }
        if let context { text += " (\(context))" }
        return text
    }
}

extension Duration {
    fileprivate var timeInterval: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    fileprivate func formatted() -> String {
        let seconds = timeInterval
        return seconds == seconds.rounded() ? "\(Int(seconds)) s" : "\(seconds) s"
    }
}

/// A temporary file that exists only as an open descriptor: unlinked at once, so nothing is
/// left behind whatever happens, and closed when the value goes away.
///
/// The descriptor is close-on-exec: a child gets it only as the standard stream it was given
/// as, never by accident through another tool started at the same time.
private final class TemporaryFile {
    let descriptor: Int32

    init(contents: String) throws(SystemCallError) {
        let directory = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(directory)/turnout-tool.XXXXXX".utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else { throw SystemCallError(call: "mkstemp(\(directory))", errno: errno) }
        self.descriptor = descriptor
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        var bytes = Array(contents.utf8)[...]
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw SystemCallError(call: "write(temporary file)", errno: errno) }
            bytes = bytes.dropFirst(written)
        }
        // The child shares this file offset, so it must start reading at the beginning.
        lseek(descriptor, 0, SEEK_SET)
    }

    deinit { close(descriptor) }

    /// Everything in the file, read from the beginning (the child moved the shared offset).
    func contents() -> String {
        lseek(descriptor, 0, SEEK_SET)
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            data.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: data, as: UTF8.self)
    }
}
