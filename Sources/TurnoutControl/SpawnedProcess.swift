import CTurnoutLinux
import FoundationEssentials
import Glibc
import TurnoutModel

/// A child process started with `posix_spawn(3)` and awaited with a time limit on a pidfd.
///
/// What the caller must know: the child gets the given descriptors as its standard streams
/// (`/dev/null` for a missing input), this process's environment, an empty signal mask and
/// default signal dispositions (so a tool is not born ignoring SIGPIPE because Swift's runtime
/// does). Call `wait(timeLimit:)` until it returns a status, or `kill()`; either reaps the
/// child, so no zombie is left. Not Sendable: one thread owns a child. Foundation's `Process` is
/// not used because its run loop needs a loopback socket pair and never sees the child exit in
/// a namespace whose `lo` is down.
struct SpawnedProcess: ~Copyable {
    let pid: pid_t
    /// Readable once the child has exited; -1 when the kernel has no `pidfd_open` (before 5.3).
    private let exitDescriptor: Int32

    /// Starts `executable` (an absolute path) with `arguments` (without argv[0]).
    /// The corresponding C call is `posix_spawn(3)`.
    init(executable: String, arguments: [String], standardInput: Int32?, standardOutput: Int32,
         standardError: Int32) throws(SystemCallError) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let standardInput {
            posix_spawn_file_actions_adddup2(&actions, standardInput, STDIN_FILENO)
        } else {
            posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, standardOutput, STDOUT_FILENO)
        posix_spawn_file_actions_adddup2(&actions, standardError, STDERR_FILENO)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t(), allSignals = sigset_t()
        sigemptyset(&noSignals)
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let environment = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in environment { free(pointer) }
        }
        var pid = pid_t()
        let status = posix_spawn(&pid, executable, &actions, &attributes, argv, environment)
        guard status == 0 else { throw SystemCallError(call: "posix_spawn(\(executable))", errno: status) }
        self.pid = pid
        exitDescriptor = CTurnoutLinux_pidfd_open(pid)
    }

    deinit {
        if exitDescriptor >= 0 { close(exitDescriptor) }
    }

    /// The exit status (128 + the signal number when a signal ended it) once the child has
    /// exited, or nil when it is still running after `timeLimit`.
    /// The corresponding C calls are `poll(2)` on the pidfd, then `waitpid(2)`.
    func wait(timeLimit: Duration) throws(SystemCallError) -> Int32? {
        let deadline = ContinuousClock.now + timeLimit
        while true {
            if exitDescriptor >= 0 {
                var entry = pollfd(fd: exitDescriptor, events: Int16(POLLIN), revents: 0)
                let ready = poll(&entry, 1, deadline.pollMilliseconds)
                if ready < 0 && errno != EINTR { throw SystemCallError(call: "poll(pidfd of \(pid))", errno: errno) }
                if ready > 0 { return try reap(blocking: true) }
            } else {
                if let status = try reap(blocking: false) { return status }
                usleep(1_000)
            }
            if ContinuousClock.now >= deadline { return nil }
        }
    }

    /// Kills the child with SIGKILL and reaps it. The corresponding C calls are `kill(2)` and
    /// `waitpid(2)`.
    func kill() {
        _ = Glibc.kill(pid, SIGKILL)
        _ = try? reap(blocking: true)
    }

    private func reap(blocking: Bool) throws(SystemCallError) -> Int32? {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, blocking ? 0 : WNOHANG)
            if result == pid { break }
            if result == 0 { return nil }
            if errno == EINTR { continue }
            throw SystemCallError(call: "waitpid(\(pid))", errno: errno)
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift does not import.
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}
