import Foundation

/// What a finished child process left behind.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var standardOutput: String
    public var standardError: String
}

/// Runs programs for tests: the `turnout` binary, `nft`, `iptables-restore`, `ip`.
///
/// The calling thread feeds the child's input and reads its output with `poll(2)` while it runs,
/// so a chatty child cannot block on a full pipe and no other thread is needed. (Reading on
/// `DispatchQueue.global()` made tests flaky: libdispatch sizes that pool by CPU count, and in
/// the full suite on 2 cores the readers of long-running children, a 20 s `init --cleanup`
/// drain among them, held it, so a short `iptables-save` waited seconds for a reader.)
/// A time limit kills the child so no test can hang.
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

        let deadline = ContinuousClock.now + timeLimit
        var streams = ChildStreams(input: Array((input ?? "").utf8), stdin: stdin.fileHandleForWriting,
                                   stdout: output.fileHandleForReading, stderr: error.fileHandleForReading)
        streams.pump(until: deadline) { process.isRunning }
        while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.005) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            throw SubprocessError.timedOut(executable, arguments)
        }
        process.waitUntilExit()
        return ProcessResult(status: process.terminationStatus,
                             standardOutput: String(decoding: streams.stdout, as: UTF8.self),
                             standardError: String(decoding: streams.stderr, as: UTF8.self))
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

/// The parent's ends of a child's three pipes, pumped by one thread: input written as the
/// child takes it, both outputs read as they come.
private struct ChildStreams {
    private var input: ArraySlice<UInt8>
    private var stdin: FileHandle?
    private let stdoutHandle: FileHandle, stderrHandle: FileHandle
    private(set) var stdout: [UInt8] = []
    private(set) var stderr: [UInt8] = []
    /// How long output is still read once the child has exited: a grandchild it left behind may
    /// hold the pipes open, and its output is not waited for beyond this.
    private static let afterExit: Duration = .seconds(1)

    init(input: [UInt8], stdin: FileHandle, stdout: FileHandle, stderr: FileHandle) {
        self.input = input[...]
        self.stdin = stdin
        stdoutHandle = stdout
        stderrHandle = stderr
        for fd in [stdin.fileDescriptor, stdout.fileDescriptor, stderr.fileDescriptor] {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        if self.input.isEmpty { closeInput() }
    }

    /// Writes the input and reads both outputs until both reach end of file, `deadline`
    /// passes, or the child has been gone for ``afterExit``.
    mutating func pump(until deadline: ContinuousClock.Instant, isRunning: () -> Bool) {
        var open: [Int32] = [stdoutHandle.fileDescriptor, stderrHandle.fileDescriptor]
        var exitedAt: ContinuousClock.Instant?
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while !open.isEmpty {
            let now = ContinuousClock.now
            if exitedAt == nil && !isRunning() { exitedAt = now }
            let stop = min(deadline, exitedAt.map { $0 + Self.afterExit } ?? deadline)
            guard now < stop else { return }
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if let stdin { fds.append(pollfd(fd: stdin.fileDescriptor, events: Int16(POLLOUT), revents: 0)) }
            // At most 50 ms at a time, so a child's exit is noticed while a grandchild holds the pipes.
            let wait = min(stop - now, .milliseconds(50))
            guard poll(&fds, nfds_t(fds.count), Int32(max(1, wait / .milliseconds(1)))) > 0 else { continue }
            for entry in fds where entry.revents != 0 {
                if entry.fd == stdin?.fileDescriptor {
                    writeInput()
                    continue
                }
                let count = buffer.withUnsafeMutableBytes { Glibc.read(entry.fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    if entry.fd == stdoutHandle.fileDescriptor { stdout += buffer[..<count] } else { stderr += buffer[..<count] }
                } else if count == 0 || (errno != EAGAIN && errno != EINTR) {
                    open.removeAll { $0 == entry.fd }
                }
            }
        }
    }

    private mutating func writeInput() {
        guard let fd = stdin?.fileDescriptor else { return }
        let written = input.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if written > 0 { input = input.dropFirst(written) }
        // A child that exits without reading all its input (EPIPE): the rest is dropped.
        if input.isEmpty || (written < 0 && errno != EAGAIN && errno != EINTR) { closeInput() }
    }

    private mutating func closeInput() {
        try? stdin?.close()
        stdin = nil
    }
}
