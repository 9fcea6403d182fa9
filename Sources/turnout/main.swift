import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import TurnoutModel

// Exit statuses are part of the CLI contract (DESIGN.md §4): 0 ok, 1 runtime failure, 2 bad input.
// ArgumentParser's own usage errors (64) are folded into 2, since a bad flag is bad input too.
// A peer that goes away mid-write must be an error (EPIPE), not the end of the process: OpenSSL
// writes to etcd with write(2), which has no MSG_NOSIGNAL. Tools turnout starts get the
// default back (SpawnedProcess resets signal dispositions in the child).
signal(SIGPIPE, SIG_IGN)

do {
    var command = try TurnoutCommand.parseAsRoot()
    try command.run()
} catch let error as TableError {
    printError("turnout: the table is invalid (\(error.issues.count) \(error.issues.count == 1 ? "problem" : "problems")):")
    for issue in error.issues { printError("  \(issue)") }
    exit(ExitStatus.badInput)
} catch let error as KernelAccessDenied {
    printError(error.description)
    exit(ExitStatus.failure)
} catch let error as KernelCommandFailed {
    printError(error.description)
    exit(ExitStatus.failure)
} catch let error as CaptureNotWorking {
    printError(error.description)
    exit(ExitStatus.failure)
} catch let error as RuntimeFailure {
    printError(error.message)
    exit(ExitStatus.failure)
} catch let error as BadInput {
    printError("turnout: \(error.message)")
    exit(ExitStatus.badInput)
} catch {
    let code = TurnoutCommand.exitCode(for: error)
    if code == .success {
        TurnoutCommand.exit(withError: error) // --help, --version
    }
    printError(TurnoutCommand.fullMessage(for: error))
    exit(code == .validationFailure ? ExitStatus.badInput : ExitStatus.failure)
}
