import Foundation
import Testing
import TurnoutControl
import TurnoutModel
import TurnoutTestSupport

/// The etcd client over https against a real etcd that serves TLS only and asks for a client
/// certificate (`--client-cert-auth`), with a PKI made for the test (``TestCertificates``).
/// What etcd holds is read back by python3's own TLS client, not by Turnout's.
@Suite("etcd over TLS: a trusted CA, the server's name, a client certificate",
       .serialized, .enabled(if: EtcdLab.isEnabled, Comment(rawValue: EtcdLab.skipReason)))
struct EtcdTLSTests {
    /// The CA's client certificate, the CA trusted.
    static func trusting(_ certificates: TestCertificates) throws -> TLSClientConfiguration {
        try TLSClientConfiguration(trustedCertificatesFile: certificates.caFile, certificateFile: certificates.clientCertificateFile,
                                   keyFile: certificates.clientKeyFile)
    }

    /// An https etcd whose certificate names only `names`.
    static func withTLSEtcd(names: String, _ body: (EtcdLab, TestCertificates) throws -> Void) throws {
        let certificates = try TestCertificates()
        let serving = try certificates.server("etcd", names: names)
        try withEtcdLab(tls: EtcdLab.TLS(certificates: certificates, serving: serving)) { lab in try body(lab, certificates) }
    }

    @Test("publish over https → python reads the keys; the source delivers the table; a change, and a 100-endpoint transaction (several TLS records), come through the watch")
    func publishesAndWatches() throws {
        try Self.withTLSEtcd(names: "IP:127.0.0.1") { lab, certificates in
            #expect(lab.url.hasPrefix("https://127.0.0.1:"))
            let client = try EtcdClient(url: lab.url, tls: try Self.trusting(certificates))
            let table = try EtcdTableSourceTests.canary()
            let outcome = try EtcdPublisher.publish(table, to: client)
            #expect(outcome.plan.puts.count == 3)
            #expect(try lab.contents().values.count == 3)

            let (source, recorder) = try EtcdTableSourceTests.started(client)
            defer { source.stop() }
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(table)))

            let reweighted = EtcdTableSourceTests.changing(table, endpoint: 0) { $0.weight = 50 }
            try EtcdTableSourceTests.put(client, reweighted.services[0], reweighted.services[0].endpoints[0])
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(reweighted)))

            // One transaction of about 100 puts: one watch response of about 30 KB, over 16 KB TLS records.
            var large = reweighted.services[0]
            large.endpoints = (1...100).map { Endpoint(address: IPAddress("10.4.\($0 / 200).\($0 % 200 + 1)")!, weight: UInt32($0)) }
            let bigger = ServiceTable(services: [large])
            _ = try EtcdPublisher.publish(bigger, to: client)
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(bigger)))
            #expect(recorder.unavailableCount == 0)
        }
    }

    @Test("refused before a request is sent: another CA, the system's CAs, a name the certificate lacks; refused by etcd: no client certificate", arguments: [
        "another CA", "the system's CAs", "dialled as localhost", "no client certificate",
    ])
    func refusals(_ case: String) throws {
        try Self.withTLSEtcd(names: "IP:127.0.0.1") { lab, certificates in
            let port = lab.clientPort
            let (url, tls, expected, notSent): (String, TLSClientConfiguration, String, Bool) = switch `case` {
            case "another CA":
                (lab.url, try TLSClientConfiguration(trustedCertificatesFile: certificates.otherCAFile, certificateFile: certificates.clientCertificateFile,
                                                    keyFile: certificates.clientKeyFile),
                 "TLS: the server's certificate is refused: unable to get local issuer certificate (checked for 127.0.0.1)", true)
            case "the system's CAs":
                (lab.url, try TLSClientConfiguration(),
                 "TLS: the server's certificate is refused: unable to get local issuer certificate (checked for 127.0.0.1; the system's CAs are trusted, name the cluster's CA)", true)
            case "dialled as localhost":
                ("https://localhost:\(port)", try Self.trusting(certificates),
                 "TLS: the server's certificate is refused: hostname mismatch (checked for localhost)", true)
            default:
                (lab.url, try TLSClientConfiguration(trustedCertificatesFile: certificates.caFile),
                 "(the server may want a client certificate, and none is configured)", false)
            }
            let client = try EtcdClient(url: url, tls: tls)
            #expect {
                _ = try client.range(prefix: "/turnout/")
            } throws: { error in
                guard case .unreachable(let failure) = error as? EtcdError else { return false }
                let request = url.contains("localhost") ? "https://localhost:\(port)/v3/kv/range (127.0.0.1)" : "https://127.0.0.1:\(port)/v3/kv/range"
                return "\(failure)".hasPrefix("POST \(request): TLS: ") && "\(failure)".contains(expected)
                    && failure.requestNotSent == notSent
            }
        }
    }

    @Test("a certificate naming 127.0.0.2 and localhost: dialled as 127.0.0.1 → IP address mismatch; as localhost → served")
    func serverName() throws {
        try Self.withTLSEtcd(names: "IP:127.0.0.2,DNS:localhost") { lab, certificates in
            let byAddress = try EtcdClient(url: lab.url, tls: try Self.trusting(certificates))
            #expect {
                _ = try byAddress.range(prefix: "/turnout/")
            } throws: { error in
                "\(error)".contains("the server's certificate is refused: IP address mismatch (checked for 127.0.0.1)")
            }
            let byName = try EtcdClient(url: "https://localhost:\(lab.clientPort)", tls: try Self.trusting(certificates))
            #expect(try byName.range(prefix: "/turnout/").count == 0)
        }
    }

    @Test("the CA file is read at each connection: replaced on disk by the right CA → the same client is served, no restart")
    func rotation() throws {
        try Self.withTLSEtcd(names: "IP:127.0.0.1") { lab, certificates in
            let trusted = certificates.path("trusted.crt")
            try FileManager.default.copyItem(atPath: certificates.otherCAFile, toPath: trusted)
            let client = try EtcdClient(url: lab.url, tls: try TLSClientConfiguration(
                trustedCertificatesFile: trusted, certificateFile: certificates.clientCertificateFile, keyFile: certificates.clientKeyFile))
            #expect(throws: EtcdError.self) { _ = try client.range(prefix: "/turnout/") }
            try FileManager.default.removeItem(atPath: trusted)
            try FileManager.default.copyItem(atPath: certificates.caFile, toPath: trusted)
            #expect(try client.range(prefix: "/turnout/").count == 0)
        }
    }

    @Test("what a request costs, printed, not asserted: 50 ranges over http, then over https with a client certificate (each a new TCP connection, and a full TLS handshake)")
    func requestCost() throws {
        func median(_ client: EtcdClient) throws -> String {
            var samples: [Duration] = []
            for _ in 0..<50 {
                let start = ContinuousClock.now
                _ = try client.range(prefix: "/turnout/")
                samples.append(.now - start)
            }
            let middle = samples.sorted()[samples.count / 2]
            return String(format: "%.2f ms", Double(middle.components.attoseconds) / 1e15 + Double(middle.components.seconds) * 1e3)
        }
        let plain = try withEtcdLab { lab in try median(EtcdClient(url: lab.url)) }
        try Self.withTLSEtcd(names: "IP:127.0.0.1") { lab, certificates in
            let secure = try median(EtcdClient(url: lab.url, tls: try Self.trusting(certificates)))
            print("etcd range on loopback, median of 50 requests: http \(plain), https \(secure)")
        }
    }

    @Test("bad TLS files → refused before anything starts, naming the file and the reason", arguments: [
        "missing CA", "a key as the CA", "the wrong key", "an encrypted key", "a certificate without its key", "certificates with http://",
        "http mixed with https",
    ])
    func badFiles(_ case: String) throws {
        let certificates = try TestCertificates()
        let server = try certificates.server("etcd", names: "IP:127.0.0.1")
        let (make, expected): (() throws -> Void, String) = switch `case` {
        case "missing CA":
            ({ _ = try TLSClientConfiguration(trustedCertificatesFile: certificates.path("none.crt")) },
             "\(certificates.path("none.crt")): cannot read the trusted CA certificates: open: No such file or directory (errno 2)")
        case "a key as the CA":
            ({ _ = try TLSClientConfiguration(trustedCertificatesFile: certificates.clientKeyFile) },
             "\(certificates.clientKeyFile): cannot load the trusted CA certificates: no certificate or crl found")
        case "the wrong key":
            ({ _ = try TLSClientConfiguration(certificateFile: certificates.clientCertificateFile, keyFile: server.key) },
             "\(server.key): cannot load the client key: key values mismatch")
        case "an encrypted key":
            ({ _ = try TLSClientConfiguration(certificateFile: certificates.clientCertificateFile, keyFile: certificates.encryptedClientKeyFile) },
             "\(certificates.encryptedClientKeyFile): the client key is encrypted, and passphrases are not supported "
                + "(write it unencrypted: openssl pkey -in \(certificates.encryptedClientKeyFile) -out KEY)")
        case "a certificate without its key":
            ({ _ = try TLSClientConfiguration(certificateFile: certificates.clientCertificateFile) },
             "a client certificate needs its key and a key its certificate (give both, or neither)")
        case "certificates with http://":
            ({ _ = try EtcdClient(url: "http://127.0.0.1:2379", tls: try TLSClientConfiguration(trustedCertificatesFile: certificates.caFile)) },
             "http://127.0.0.1:2379: TLS certificates are given, but etcd's address is http:// (write https://)")
        default:
            ({ _ = try EtcdClient(url: "https://127.0.0.1:2379,http://127.0.0.2:2379") },
             "https://127.0.0.1:2379,http://127.0.0.2:2379: every member must be http:// or every member https://, not a mix")
        }
        #expect(throws: ValueError(expected)) { try make() }
    }
}
