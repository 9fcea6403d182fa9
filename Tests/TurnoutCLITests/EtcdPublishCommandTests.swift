import Foundation
import Testing
import TurnoutTestSupport

/// `turnout publish` run as a user runs it, against a real etcd (``EtcdLab``); what etcd holds is
/// read back by the lab (python3 on the gateway), not by Turnout's own client.
@Suite("etcd publish: the turnout binary writing tables into etcd",
       .serialized, .enabled(if: EtcdLab.isEnabled, Comment(rawValue: EtcdLab.skipReason)))
struct EtcdPublishCommandTests {
    static let canaryKeys = [
        "/turnout/v1/services/shop/checkout":
            #"{"name":"shop/checkout","addresses":["10.96.0.20"],"ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"tcp"}]}"#,
        "/turnout/v1/endpoints/shop/checkout/10.1.0.5": #"{"address":"10.1.0.5","weight":90,"zone":"a"}"#,
        "/turnout/v1/endpoints/shop/checkout/10.1.0.6-8081": #"{"address":"10.1.0.6","weight":10,"port":8081,"zone":"b"}"#,
    ]

    /// A table file with one service of `endpoints` endpoints, in a fresh directory.
    static func withLargeTable(endpoints: Int, _ body: (String) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-publish-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("large.yaml").path
        let list = (0..<endpoints).map { "      - {address: 10.3.\($0 / 250).\($0 % 250 + 1)}\n" }.joined()
        try "services:\n  - name: load/large\n    addresses: [10.96.9.1]\n    ports: [{port: 80}]\n    endpoints:\n\(list)"
            .write(toFile: file, atomically: true, encoding: .utf8)
        try body(file)
    }

    @Test("publish → the keys; the same table again → nothing written; another table, with a dead member listed before etcd → one transaction that puts and deletes")
    func publish() throws {
        try withEtcdLab { lab in
            let first = try turnout("publish", "-f", "rules/canary.yaml", "--etcd", lab.url)
            #expect(first.status == 0, "\(first.standardError)")
            #expect(first.standardOutput.split(separator: "\n").filter { $0.hasPrefix("put ") }.count == 3, "\(first.standardOutput)")
            let written = try lab.contents()
            #expect(written.values == Self.canaryKeys)
            #expect(first.standardOutput.contains("3 put, 0 deleted, 0 unchanged; revision \(written.revision)"), "\(first.standardOutput)")

            let again = try turnout("publish", "-f", "rules/canary.yaml", "--etcd", lab.url)
            #expect(again.status == 0, "\(again.standardError)")
            #expect(again.standardOutput.contains("3 keys unchanged, nothing written"), "\(again.standardOutput)")
            #expect(try lab.contents().revision == written.revision, "nothing was written")

            // A member that is down, listed first: the next one takes the publish.
            let dead = "http://127.0.0.1:\(try EtcdLab.freePort())"
            let other = try turnout("publish", "-f", "rules/dual-stack.yaml", "--etcd", "\(dead),\(lab.url)")
            #expect(other.status == 0, "\(other.standardError)")
            let replaced = try lab.contents()
            #expect(replaced.revision == written.revision + 1, "one transaction")
            #expect(Set(replaced.values.keys) == [
                "/turnout/v1/services/infra/dns-web", "/turnout/v1/endpoints/infra/dns-web/10.1.0.21",
                "/turnout/v1/endpoints/infra/dns-web/10.1.0.22-dns=5353", "/turnout/v1/endpoints/infra/dns-web/fd00:1::21",
                "/turnout/v1/endpoints/infra/dns-web/fd00:1::22",
            ])
            #expect(other.standardOutput.contains("5 put, 3 deleted, 0 unchanged"), "\(other.standardOutput)")
        }
    }

    @Test("an etcd with authentication → --etcd-user with --etcd-password-file publishes; without them etcd refuses (exit 1); a user without the file, or a missing file → exit 2 naming it")
    func authenticated() throws {
        try withEtcdLab { lab in
            try lab.enableAuthentication(user: "publisher", password: "pw")
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-publish-pw-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: file) }
            try "pw\n".write(toFile: file, atomically: true, encoding: .utf8)
            let publish = ["publish", "-f", "rules/canary.yaml", "--etcd", lab.url]

            let written = try turnout(publish + ["--etcd-user", "publisher", "--etcd-password-file", file])
            #expect(written.status == 0, "\(written.standardError)")
            #expect(try lab.contents().values == Self.canaryKeys)

            let anonymous = try turnout(publish)
            #expect(anonymous.status == 1)
            #expect(anonymous.standardError.contains("user name is empty"), "\(anonymous.standardError)")
            let alone = try turnout(publish + ["--etcd-user", "publisher"])
            #expect(alone.status == 2)
            #expect(alone.standardError.contains("--etcd-user and --etcd-password-file go together"), "\(alone.standardError)")
            let missing = try turnout(publish + ["--etcd-user", "publisher", "--etcd-password-file", file + "-missing"])
            #expect(missing.status == 2)
            #expect(missing.standardError.contains("--etcd-password-file \(file)-missing: No such file or directory"), "\(missing.standardError)")
        }
    }

    @Test("a bad table → exit 2 naming file:line and field, nothing written; etcd down → exit 1 naming the URL (each member's, when several are given)")
    func failures() throws {
        try withEtcdLab { lab in
            _ = try turnout("publish", "-f", "rules/canary.yaml", "--etcd", lab.url)
            let before = try lab.contents()
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-publish-\(UUID().uuidString).yaml").path
            defer { try? FileManager.default.removeItem(atPath: file) }
            try "services:\n  - {name: shop/x, addresses: [10.96.0.30], ports: [{port: 80}], endpoints: [{address: 10.1.0.9, weight: -5}]}\n"
                .write(toFile: file, atomically: true, encoding: .utf8)
            let bad = try turnout("publish", "-f", file, "--etcd", lab.url)
            #expect(bad.status == 2, "\(bad.standardError)")
            #expect(bad.standardError.contains("\(file):2:") && bad.standardError.contains("endpoints[0].weight"), "\(bad.standardError)")
            #expect(bad.standardOutput.isEmpty)
            #expect(try lab.contents() == before)

            let httpsToHTTP = try turnout("publish", "-f", "rules/canary.yaml", "--etcd", lab.url.replacingOccurrences(of: "http://", with: "https://"))
            #expect(httpsToHTTP.status == 1)
            #expect(httpsToHTTP.standardError.contains("TLS: the server closed the connection during the handshake (stopping, or not TLS on this port: http://?)"),
                    "\(httpsToHTTP.standardError)")

            lab.stop()
            let down = try turnout("publish", "-f", "rules/canary.yaml", "--etcd", lab.url)
            #expect(down.status == 1)
            #expect(down.standardError.contains("\(lab.url)/v3/kv/range: cannot connect"), "\(down.standardError)")
            let noneUp = try turnout("publish", "-f", "rules/canary.yaml", "--etcd", "\(lab.url),http://127.0.0.1:\(try EtcdLab.freePort())")
            #expect(noneUp.status == 1)
            #expect(noneUp.standardError.contains("no etcd member answered: etcd POST \(lab.url)/v3/kv/range: cannot connect"), "\(noneUp.standardError)")

            let badURL = try turnout("publish", "-f", "rules/canary.yaml", "--etcd", "https://127.0.0.1:2379/v3")
            #expect(badURL.status == 2, "\(badURL.standardError)")
        }
    }

    /// A listener on a free loopback port that takes each connection, reads what comes (a TLS
    /// ClientHello) and closes it: a member going away in the middle of a handshake.
    static func withClosingListener(_ body: (UInt16) throws -> Void) throws {
        let port = try EtcdLab.freePort()
        // It exits when its stdin closes (LabProcess.stop), as the lab's other helpers do.
        let script = "import socket, sys, threading\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            + "s.bind(('127.0.0.1', int(sys.argv[1])))\ns.listen(16)\n"
            + "def serve():\n    while True:\n        c, _ = s.accept()\n        c.recv(4096)\n        c.close()\n"
            + "threading.Thread(target=serve, daemon=True).start()\nprint('listening', flush=True)\nsys.stdin.read()\n"
        let child = try LabProcess("/usr/bin/python3", ["-c", script, "\(port)"])
        defer { child.stop() }
        guard child.waitForOutput("listening", within: .seconds(10)) else { throw ServiceLabError("the closing listener did not start: \(child.standardError)") }
        try body(port)
    }

    @Test("https: --etcd-cacert, --etcd-cert, --etcd-key → published; without the client certificate → exit 1 with the hint; a member closing in the handshake → exit 1 naming it, or the next member; a missing file → exit 2 naming it, nothing sent")
    func publishOverTLS() throws {
        let certificates = try TestCertificates()
        let serving = try certificates.server("etcd", names: "IP:127.0.0.1")
        try withEtcdLab(tls: EtcdLab.TLS(certificates: certificates, serving: serving)) { lab in
            let files = ["--etcd-cacert", certificates.caFile, "--etcd-cert", certificates.clientCertificateFile,
                         "--etcd-key", certificates.clientKeyFile]
            let published = try turnout(["publish", "-f", "rules/canary.yaml", "--etcd", lab.url] + files)
            #expect(published.status == 0, "\(published.standardError)")
            #expect(try lab.contents().values == Self.canaryKeys)

            let anonymous = try turnout("publish", "-f", "rules/dual-stack.yaml", "--etcd", lab.url, "--etcd-cacert", certificates.caFile)
            #expect(anonymous.status == 1)
            #expect(anonymous.standardError.contains("\(lab.url)/v3/kv/range: TLS: ")
                    && anonymous.standardError.contains("(the server may want a client certificate, and none is configured)"),
                    "\(anonymous.standardError)")

            // A member that takes the connection and closes it in the handshake: named, exit 1;
            // listed before a live member, the write moves on (nothing was sent).
            try Self.withClosingListener { closing in
                let alone = try turnout(["publish", "-f", "rules/dual-stack.yaml", "--etcd", "https://127.0.0.1:\(closing)"] + files)
                #expect(alone.status == 1)
                #expect(alone.standardError.contains("POST https://127.0.0.1:\(closing)/v3/kv/range: TLS: the server closed the connection during the handshake"),
                        "\(alone.standardError)")
                let before = try lab.contents().revision
                let movedOn = try turnout(["publish", "-f", "rules/canary.yaml", "--etcd", "https://127.0.0.1:\(closing),\(lab.url)"] + files)
                #expect(movedOn.status == 0, "\(movedOn.standardError)")
                #expect(movedOn.standardOutput.contains("nothing written"), "\(movedOn.standardOutput)")
                #expect(try lab.contents().revision == before)
            }

            let missing = certificates.path("none.crt")
            let bad = try turnout("publish", "-f", "rules/dual-stack.yaml", "--etcd", lab.url, "--etcd-cacert", missing)
            #expect(bad.status == 2)
            #expect(bad.standardError.contains("etcd TLS: \(missing): cannot read the trusted CA certificates: open: No such file or directory (errno 2)"),
                    "\(bad.standardError)")
            #expect(try lab.contents().values == Self.canaryKeys)
        }
    }

    /// Runs `command` in a mount namespace of its own where `/etc/hosts` is `hosts` and
    /// `/etc/resolv.conf` is empty, so a host name resolves through the real `getaddrinfo`
    /// without touching the machine's files. An empty resolv.conf means a DNS server on
    /// 127.0.0.1:53, where nothing listens: a name not in `hosts` fails at once. With
    /// `silentDNS`, the command also gets a network namespace of its own whose 127.0.0.1:53 is,
    /// for 8 s, a UDP socket that never answers, and glibc is told to wait 30 s for it (the
    /// socket's process may hold the output pipes open, so it does not live longer).
    static func resolving(_ hosts: String, silentDNS: Bool = false, _ command: [String]) throws -> ProcessResult {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-hosts-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try hosts.write(to: directory.appendingPathComponent("hosts"), atomically: true, encoding: .utf8)
        try (silentDNS ? "nameserver 127.0.0.1\noptions timeout:30 attempts:1\n" : "")
            .write(to: directory.appendingPathComponent("resolv.conf"), atomically: true, encoding: .utf8)
        var script = "mount --bind \"$1/hosts\" /etc/hosts && mount --bind \"$1/resolv.conf\" /etc/resolv.conf && "
        if silentDNS {
            // The sink says when it is bound (a file), so the command never meets a closed port
            // (an ICMP unreachable: "cannot resolve") because python started late.
            let sink = "import socket, sys, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 53)); "
                + "open(sys.argv[1] + '/sink-ready', 'w').close(); time.sleep(8)"
            script += "ip link set lo up && { timeout 12 python3 -c \"\(sink)\" \"$1\" </dev/null >/dev/null 2>&1 & } && i=0 && "
                + "while [ ! -e \"$1/sink-ready\" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done && "
        }
        script += "shift && exec \"$@\""
        return try Subprocess.run(try Subprocess.locate("unshare"), ["--mount"] + (silentDNS ? ["--net"] : []) + ["sh", "-c", script, "sh", directory.path] + command,
                                  workingDirectory: Repository.root.path)
    }

    static func turnoutResolving(_ hosts: String, _ arguments: [String]) throws -> ProcessResult {
        try resolving(hosts, [Repository.turnoutBinary] + arguments)
    }

    @Test("host names (resolved by getaddrinfo from a private /etc/hosts): over https with the name checked → published; a name whose first address is dead (::1, etcd is on 127.0.0.1) → the next address; a name the certificate lacks → refused; an unknown name → exit 1 naming it; a DNS server that never answers → the request's deadline",
          .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
    func hostNames() throws {
        let certificates = try TestCertificates()
        let serving = try certificates.server("etcd", names: "DNS:etcd.turnout.test,DNS:dual.turnout.test,IP:127.0.0.1")
        let hosts = "127.0.0.1 etcd.turnout.test other.turnout.test\n::1 dual.turnout.test\n127.0.0.1 dual.turnout.test\n"
        try withEtcdLab(tls: EtcdLab.TLS(certificates: certificates, serving: serving)) { lab in
            let files = ["--etcd-cacert", certificates.caFile, "--etcd-cert", certificates.clientCertificateFile,
                         "--etcd-key", certificates.clientKeyFile]
            let port = lab.clientPort
            let named = try Self.turnoutResolving(hosts, ["publish", "-f", "rules/canary.yaml", "--etcd", "https://etcd.turnout.test:\(port)"] + files)
            #expect(named.status == 0, "\(named.standardError)")
            #expect(named.standardOutput.contains("to etcd https://etcd.turnout.test:\(port): 3 put"), "\(named.standardOutput)")
            #expect(try lab.contents().values == Self.canaryKeys)

            // The dead address must come first for this to test moving on: getaddrinfo's order.
            let order = try Self.resolving(hosts, ["getent", "ahosts", "dual.turnout.test"])
            try #require(order.standardOutput.hasPrefix("::1 "), "\(order.standardOutput)")
            let dual = try Self.turnoutResolving(hosts, ["publish", "-f", "rules/dual-stack.yaml", "--etcd", "https://dual.turnout.test:\(port)"] + files)
            #expect(dual.status == 0, "\(dual.standardError)")
            #expect(dual.standardOutput.contains("5 put, 3 deleted"), "\(dual.standardOutput)")

            let other = try Self.turnoutResolving(hosts, ["publish", "-f", "rules/canary.yaml", "--etcd", "https://other.turnout.test:\(port)"] + files)
            #expect(other.status == 1)
            #expect(other.standardError.contains("POST https://other.turnout.test:\(port)/v3/kv/range (127.0.0.1): TLS: the server's certificate is refused: hostname mismatch (checked for other.turnout.test)"),
                    "\(other.standardError)")

            let unknown = try Self.turnoutResolving(hosts, ["publish", "-f", "rules/canary.yaml", "--etcd", "https://nothing.turnout.test:\(port)"] + files)
            #expect(unknown.status == 1)
            #expect(unknown.standardError.contains("POST https://nothing.turnout.test:\(port)/v3/kv/range: cannot resolve nothing.turnout.test: "),
                    "\(unknown.standardError)")

            // A DNS server that never answers: the request's deadline (5 s) ends the wait, not
            // glibc's 30 s.
            let silent = try Self.resolving(hosts, silentDNS: true, [Repository.turnoutBinary, "publish", "-f", "rules/canary.yaml",
                                                                      "--etcd", "https://nothing.turnout.test:\(port)"] + files)
            #expect(silent.status == 1)
            #expect(silent.standardError.contains("POST https://nothing.turnout.test:\(port)/v3/kv/range: timed out resolving the host name"),
                    "\(silent.standardError)")
        }
    }

    @Test("201 operations: over --max-txn-ops 128 → exit 1 before writing; etcd allowing 1000 and --max-txn-ops 1000 → one transaction; etcd refusing → exit 1 with etcd's words")
    func transactionLimit() throws {
        try Self.withLargeTable(endpoints: 200) { file in
            try withEtcdLab(maximumTransactionOperations: 1_000) { lab in
                let refused = try turnout("publish", "-f", file, "--etcd", lab.url)
                #expect(refused.status == 1)
                #expect(refused.standardError.contains("needs 201 operations in one etcd transaction, more than 128"), "\(refused.standardError)")
                #expect(try lab.contents().values.isEmpty)

                let before = try lab.contents().revision
                let published = try turnout("publish", "-f", file, "--etcd", lab.url, "--max-txn-ops", "1000")
                #expect(published.status == 0, "\(published.standardError)")
                let after = try lab.contents()
                #expect(after.values.count == 201 && after.revision == before + 1)
            }
            try withEtcdLab { lab in
                let refused = try turnout("publish", "-f", file, "--etcd", lab.url, "--max-txn-ops", "1000")
                #expect(refused.status == 1)
                #expect(refused.standardError.contains("too many operations in txn request"), "\(refused.standardError)")
                #expect(try lab.contents().values.isEmpty)
            }
        }
    }
}
