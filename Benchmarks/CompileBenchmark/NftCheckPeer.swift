import Foundation
import TurnoutBenchmarkSupport

/// The peer: nftables' own `nft --check -f FILE` on the text Turnout rendered, in a namespace.
///
/// `--check` parses and evaluates the whole file, builds the netlink batch and sends it to the
/// kernel, which validates it and then aborts the transaction, so nothing is installed. It runs
/// through `ip netns exec` in a throwaway namespace anyway, so even a bug cannot touch the host.
/// Each timing is wall clock around the child process, so it includes process start-up; the
/// baseline (an empty `inet turnout` table) shows how much of it that is.
struct NftCheckPeer {
    let namespace: String
    let ip: String
    let nft: String
    let timeoutSeconds: Int
    var version: String

    typealias Outcome = ChildProcess.Outcome

    /// The peer, or why it cannot run here.
    static func make(options: BenchmarkOptions) -> Result<NftCheckPeer, SkipReason> {
        if let reason = options.peerSkipReason { return .failure(SkipReason(reason)) }
        guard geteuid() == 0 else {
            return .failure(SkipReason("not running as root (nft --check needs CAP_NET_ADMIN in a throwaway namespace); rerun with sudo"))
        }
        guard let nft = executable("nft") else { return .failure(SkipReason("nft is not installed (apt-get install nftables)")) }
        guard let ip = executable("ip") else { return .failure(SkipReason("ip is not installed (apt-get install iproute2)")) }
        guard let namespace = options.namespace else {
            return .failure(SkipReason("no --netns given; scripts/bench/compile creates a throwaway namespace"))
        }
        var peer = NftCheckPeer(namespace: namespace, ip: ip, nft: nft, timeoutSeconds: options.peerTimeoutSeconds, version: "nft")
        if case (.finished, let text?) = peer.run([nft, "--version"]) {
            peer.version = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return .success(peer)
    }

    struct SkipReason: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Writes `text` to a temporary file once (untimed), then times `runs` ×
    /// `ip netns exec NS nft --check -f FILE`; stops at the first failure or timeout.
    func check(_ text: String, runs: Int) -> [Outcome] {
        let file = FileManager.default.temporaryDirectory
            .appendingPathComponent("turnout-bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).nft")
        defer { try? FileManager.default.removeItem(at: file) }
        do {
            try text.write(to: file, atomically: false, encoding: .utf8)
        } catch {
            return [.failed(status: -1, message: "cannot write \(file.path): \(error)")]
        }
        var outcomes: [Outcome] = []
        for _ in 0..<runs {
            let outcome = run([ip, "netns", "exec", namespace, nft, "--check", "-f", file.path]).outcome
            outcomes.append(outcome)
            guard case .finished = outcome else { break }
        }
        return outcomes
    }

    /// Runs a command with the peer's time limit (see ``ChildProcess/run(_:input:timeoutSeconds:)``).
    private func run(_ command: [String]) -> (outcome: Outcome, output: String?) {
        ChildProcess.run(command, timeoutSeconds: timeoutSeconds)
    }

    static func executable(_ name: String) -> String? { ChildProcess.executable(name) }
}

/// Times the peer and turns its outcomes into samples, or the first failure.
enum PeerBenchmark {
    static func measure(_ peer: NftCheckPeer, text: String, runs: Int) -> PeerMeasurement {
        var samples = Samples()
        for outcome in peer.check(text, runs: runs) {
            switch outcome {
            case .finished(let duration): samples.append(duration)
            case .timedOut: return .failed("timed out after \(peer.timeoutSeconds) s")
            case .failed(let status, let message): return .failed("exit \(status): \(message)")
            }
        }
        return .measured(samples)
    }
}
