import Foundation
import TurnoutBenchmarkSupport

/// One run of an external program inside a namespace: its wall clock (process start-up
/// included), or why it failed.
enum ToolSample {
    case measured(Duration)
    case failed(String)
}

/// What `turnout apply --format json` printed, plus the wall clock around the whole process.
struct CLIApply {
    var wall: Duration
    /// The CLI's own timer: backend work only, after the table file was read and validated.
    var reportedMilliseconds: Double
    var outcome: String
    var messages: Int
}

/// The real `turnout` binary and `nft`, run with `ip netns exec` in the benchmark's namespaces.
struct Tools {
    let turnout: String?
    let nft: String?
    let timeoutSeconds: Int

    /// `ip netns exec NS turnout apply -f FILE --format json`.
    func cliApply(_ file: String, in namespace: Namespace, namespaces: Namespaces) -> Result<CLIApply, BenchError> {
        guard let turnout else { return .failure(BenchError("no --turnout binary")) }
        let command = namespaces.exec(in: namespace, [turnout, "apply", "-f", file, "--format", "json"])
        let (outcome, output) = ChildProcess.run(command, timeoutSeconds: timeoutSeconds)
        switch outcome {
        case .timedOut:
            return .failure(BenchError("turnout apply timed out after \(timeoutSeconds) s"))
        case .failed(let status, let message):
            return .failure(BenchError("turnout apply exited \(status): \(message)"))
        case .finished(let wall):
            // The JSON report is the last line (stderr shares the file, and is normally empty).
            guard let line = output?.split(separator: "\n").last,
                  let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let milliseconds = (object["milliseconds"] as? NSNumber)?.doubleValue,
                  let result = object["outcome"] as? String,
                  let messages = (object["messages"] as? NSNumber)?.intValue else {
                return .failure(BenchError("turnout apply printed no JSON report: \(output?.prefix(200) ?? "")"))
            }
            return .success(CLIApply(wall: wall, reportedMilliseconds: milliseconds, outcome: result, messages: messages))
        }
    }

    /// `turnout plan -f FILE` into `destination` (untimed): the text the nft peer loads.
    func plan(_ file: String, to destination: String) throws {
        guard let turnout else { throw BenchError("no --turnout binary") }
        let (outcome, output) = ChildProcess.run([turnout, "plan", "-f", file], timeoutSeconds: timeoutSeconds)
        guard case .finished = outcome, let output else { throw BenchError("turnout plan -f \(file) failed: \(outcome)") }
        try output.write(toFile: destination, atomically: true, encoding: .utf8)
    }

    /// `ip netns exec NS nft -f FILE`: nftables' own tool installing the same rules.
    func nftLoad(_ file: String, in namespace: Namespace, namespaces: Namespaces) -> ToolSample {
        guard let nft else { return .failed("nft is not installed") }
        let (outcome, _) = ChildProcess.run(namespaces.exec(in: namespace, [nft, "-f", file]), timeoutSeconds: timeoutSeconds)
        switch outcome {
        case .finished(let wall): return .measured(wall)
        case .timedOut: return .failed("timed out after \(timeoutSeconds) s")
        case .failed(let status, let message): return .failed("exit \(status): \(message)")
        }
    }

    /// `nft --version`, `iptables --version`: the peers' versions for the report header.
    static func version(_ tool: String?) -> String? {
        guard let tool else { return nil }
        let (outcome, output) = ChildProcess.run([tool, "--version"], timeoutSeconds: 10)
        guard case .finished = outcome else { return nil }
        return output?.split(separator: "\n").first.map(String.init)
    }
}

func progress(_ line: String) {
    FileHandle.standardError.write(Data(("turnout-bench-apply: " + line + "\n").utf8))
}
