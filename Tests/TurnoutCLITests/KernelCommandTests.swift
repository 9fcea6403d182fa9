import Foundation
import Testing
import TurnoutTestSupport

/// `apply`, `flush` and `status` through the real binary inside a throwaway namespace: their
/// reports, their refusals without privileges, and bad input that must change nothing.
@Suite("turnout apply / flush / status (binary, in a namespace)",
       .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct KernelCommandTests {
    /// Runs the binary inside `ns`, optionally as an unprivileged user with no capabilities.
    func turnout(in ns: NetworkNamespace, _ arguments: [String], unprivileged: Bool = false) throws -> ProcessResult {
        let prefix = unprivileged ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"] : []
        let command = prefix + [Repository.turnoutBinary] + arguments
        return try ns.run(command[0], Array(command.dropFirst()))
    }

    func ruleset(_ ns: NetworkNamespace) throws -> String { try ns.run("nft", ["list", "ruleset"]).standardOutput }

    @Test("apply → created; again → unchanged, 0 messages; flush → flushed; again → absent (JSON reports)")
    func applyReports() throws {
        try withNetworkNamespace(prefix: "cli-apply") { ns in
            let canary = Repository.path("rules/canary.yaml")
            var outcomes: [String] = []
            for arguments in [["apply", "-f", canary], ["apply", "-f", canary], ["flush"], ["flush"]] {
                let result = try turnout(in: ns, arguments + ["--format", "json"])
                #expect(result.status == 0, "\(result.standardError)")
                let report = try #require(try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any])
                outcomes.append("\(report["outcome"]!) \(report["messages"]!)")
            }
            #expect(outcomes[0].hasPrefix("created "))
            #expect(Array(outcomes.dropFirst()) == ["unchanged 0", "flushed 4", "absent 0"])
        }
    }

    @Test("status -f: in sync after apply; DRIFT lines after a hand edit")
    func statusShowsDrift() throws {
        try withNetworkNamespace(prefix: "cli-status") { ns in
            let canary = Repository.path("rules/canary.yaml")
            #expect(try turnout(in: ns, ["apply", "-f", canary]).status == 0)
            let synced = try turnout(in: ns, ["status", "-f", canary])
            #expect(synced.status == 0)
            #expect(synced.standardOutput.contains("in sync with \(canary)"), "\(synced.standardOutput)")
            #expect(try ns.run("nft", ["delete", "element", "inet", "turnout", "service-ips4", "{ 10.96.0.20 . tcp . 80 }"]).status == 0)
            let drifted = try turnout(in: ns, ["status", "-f", canary]).standardOutput
            #expect(drifted.contains("DRIFT: differs from what Turnout last applied"), "\(drifted)")
            #expect(drifted.contains("+ map service-ips4: 10.96.0.20 . tcp . 80 : goto weighted-pick-10"), "\(drifted)")
        }
    }

    @Test("status with no proxy on 127.0.0.1:15000 → 'none answering'; another program there that never answers (Envoy's admin port too) → a line naming the timeout, exit 0; the same address named by --admin → exit 1")
    func statusBesideAnotherAdminPort() throws {
        try withNetworkNamespace(prefix: "cli-admin") { ns in
            let alone = try turnout(in: ns, ["status"])
            #expect(alone.status == 0, "\(alone.standardError)")
            #expect(alone.standardOutput.hasSuffix("proxy at 127.0.0.1:15000: none answering\n"), "\(alone.standardOutput)")

            // A listener that accepts (the kernel completes the handshake) and never answers,
            // holding the port while turnout runs as its child, in the same namespace.
            let script = """
                import socket, subprocess, sys
                listener = socket.create_server(("127.0.0.1", 15000))
                result = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=30)
                sys.stdout.write(f"{result.returncode}\\n{result.stdout}{result.stderr}")
                """
            for (arguments, exit) in [(["status"], "0"), (["status", "--admin", "127.0.0.1:15000"], "1")] {
                let run = try ns.run("/usr/bin/python3", ["-c", script, Repository.turnoutBinary] + arguments)
                let lines = run.standardOutput.split(separator: "\n", omittingEmptySubsequences: false)
                #expect(lines.first == Substring(exit), "\(arguments): \(run.standardOutput)\(run.standardError)")
                #expect(run.standardOutput.contains("cannot read a turnout proxy's admin endpoint at 127.0.0.1:15000: GET http://127.0.0.1:15000/ready: timed out"),
                        "\(arguments): \(run.standardOutput)")
            }
        }
    }

    @Test("without CAP_NET_ADMIN → one line saying so, exit 1, nothing changed", arguments: [
        ["apply", "-f", "rules/canary.yaml"], ["flush"], ["status"], ["apply", "-f", "rules/canary.yaml", "--backend", "iptables"],
    ])
    func unprivilegedIsRefused(_ arguments: [String]) throws {
        try withNetworkNamespace(prefix: "cli-noperm") { ns in
            #expect(try turnout(in: ns, ["apply", "-f", Repository.path("rules/weights-1-2-3.yaml")]).status == 0)
            let before = try ruleset(ns)
            let absolute = arguments.map { $0.hasPrefix("rules/") ? Repository.path($0) : $0 }
            let result = try turnout(in: ns, absolute, unprivileged: true)
            #expect(result.status == 1)
            #expect(result.standardOutput.isEmpty)
            let lines = result.standardError.split(separator: "\n")
            #expect(lines.count == 1 && lines[0].contains("needs CAP_NET_ADMIN") && lines[0].contains("nothing was changed"), "\(result.standardError)")
            #expect(try ruleset(ns) == before)
        }
    }

    @Test("invalid table → apply exits 2 with file:line, the installed rules stay byte-identical")
    func invalidTableChangesNothing() throws {
        try withNetworkNamespace(prefix: "cli-invalid") { ns in
            #expect(try turnout(in: ns, ["apply", "-f", Repository.path("rules/canary.yaml")]).status == 0)
            let before = try ruleset(ns)
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-apply-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            for bad in InvalidTable.all {
                let file = directory.appendingPathComponent("\(bad.line)-\(abs(bad.field.hashValue)).yaml").path
                try bad.yaml.write(toFile: file, atomically: true, encoding: .utf8)
                for backend in ["nft", "iptables"] {
                    let result = try turnout(in: ns, ["apply", "-f", file, "--backend", backend])
                    #expect(result.status == 2, "\(result.standardError)")
                    #expect(result.standardError.contains("\(file):\(bad.line):"), "\(result.standardError)")
                }
            }
            #expect(try ruleset(ns) == before)
        }
    }
}
