import Foundation
import Testing
@testable import TurnoutControl
import TurnoutModel
import TurnoutTestSupport

/// The etcd client against a real etcd with authentication enabled (`auth enable`, a root
/// user): a token fetched once and sent with every request, fetched again when it expires.
/// What etcd holds is read back by python3 (``EtcdLab/contents(prefix:)``), not by Turnout.
@Suite("etcd with authentication: user, password, token",
       .serialized, .enabled(if: EtcdLab.isEnabled, Comment(rawValue: EtcdLab.skipReason)))
struct EtcdAuthTests {
    static let user = "turnout"
    static let password = #"s3cret "quoted" \ pass"#

    static func client(_ lab: EtcdLab, password: String = Self.password) throws -> EtcdClient {
        try EtcdClient(url: lab.url, credentials: try EtcdCredentials(user: Self.user, password: password))
    }

    @Test("authentication on → no user: refused with etcd's reason; a wrong password: refused; the right one: publish, read and the source's watch work on one token")
    func userAndPassword() throws {
        try withEtcdLab { lab in
            try lab.enableAuthentication(user: Self.user, password: Self.password)
            let table = try EtcdTableSourceTests.canary()

            do {
                _ = try EtcdClient(url: lab.url).range(prefix: EtcdTableLayout.standard.prefix)
                Issue.record("a request without a token was accepted")
            } catch {
                #expect("\(error)".contains("user name is empty"), "\(error)")
            }
            do {
                _ = try Self.client(lab, password: "wrong").range(prefix: EtcdTableLayout.standard.prefix)
                Issue.record("a wrong password was accepted")
            } catch {
                #expect("\(error)".contains("authentication failed"), "\(error)")
            }

            let client = try Self.client(lab)
            #expect(try EtcdPublisher.publish(table, to: client).plan.puts.count == 3)
            #expect(try lab.contents().values.count == 3)
            #expect(try client.range(prefix: EtcdTableLayout.standard.prefix).keyValues.count == 3)

            let (source, recorder) = try EtcdTableSourceTests.started(client)
            defer { source.stop() }
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(table)))
            let changed = EtcdTableSourceTests.changing(table, endpoint: 0) { $0.weight = 70 }
            _ = try EtcdPublisher.publish(changed, to: client)
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(changed)), "the change comes through the watch")
            #expect(client.authentications == 1, "one token for every request of the client and its copies")
        }
    }

    @Test("a token that expired (etcd's --auth-token-ttl 1, 3 s later) → the next read authenticates again and succeeds, and so does a new source (its read renews the token its watch then uses); a change published after another expiry reaches the running source")
    func expiredToken() throws {
        try withEtcdLab(authTokenTTL: 1) { lab in
            try lab.enableAuthentication(user: Self.user, password: Self.password)
            let client = try Self.client(lab)
            let table = try EtcdTableSourceTests.canary()
            _ = try EtcdPublisher.publish(table, to: client)
            #expect(client.authentications == 1)

            Thread.sleep(forTimeInterval: 3)
            #expect(try client.range(prefix: EtcdTableLayout.standard.prefix).keyValues.count == 3)
            #expect(client.authentications == 2, "the expired token was replaced once")

            Thread.sleep(forTimeInterval: 3)
            let (source, recorder) = try EtcdTableSourceTests.started(client)
            defer { source.stop() }
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(table)))
            #expect(client.authentications >= 3)

            Thread.sleep(forTimeInterval: 3)
            let changed = EtcdTableSourceTests.changing(table, endpoint: 0) { $0.weight = 70 }
            _ = try EtcdPublisher.publish(changed, to: client)
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(changed)), "a change after another expiry reaches the running source")
        }
    }

    @Test("the password rotated while a source runs (etcd's user passwd, then the file rewritten) → the same client authenticates with the file's new line: a publish and the running source's next change go through; the file gone → an error naming it")
    func rotatedPassword() throws {
        try withEtcdLab { lab in
            try lab.enableAuthentication(user: Self.user, password: Self.password)
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-pw-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: file) }
            try "\(Self.password)\n".write(toFile: file, atomically: true, encoding: .utf8)
            let client = try EtcdClient(url: lab.url, credentials: try EtcdCredentials(user: Self.user, passwordFile: file))
            let table = try EtcdTableSourceTests.canary()
            _ = try EtcdPublisher.publish(table, to: client)
            let (source, recorder) = try EtcdTableSourceTests.started(client)
            defer { source.stop() }
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(table)))
            let before = client.authentications

            // The operator's order: etcd first (every token dies), then the mounted secret.
            try lab.changePassword(user: Self.user, to: "rotated-1")
            try "rotated-1\n".write(toFile: file, atomically: true, encoding: .utf8)
            let changed = EtcdTableSourceTests.changing(table, endpoint: 0) { $0.weight = 70 }
            _ = try EtcdPublisher.publish(changed, to: client)
            #expect(client.authentications > before, "the refused token was replaced")
            #expect(recorder.waitForTable(EtcdTableLayout.readBackOrder(changed)), "the running source follows after the rotation")
            #expect(try lab.contents().values.values.contains { $0.contains("\"weight\":70") })

            try FileManager.default.removeItem(atPath: file)
            try lab.changePassword(user: Self.user, to: "rotated-2")
            #expect {
                _ = try client.range(prefix: EtcdTableLayout.standard.prefix)
            } throws: { error in
                "\(error)" == "etcd password: \(file): No such file or directory"
            }
        }
    }
}

/// Credentials as values and password files on disk: no etcd needed, so never skipped.
@Suite("etcd credentials: password files")
struct EtcdCredentialsTests {
    @Test("a password file → its first line (a trailing newline, CR LF too, is not part of it); a missing or empty file → an error naming it", arguments: [
        ("pw\n", "pw"), ("pw\r\nsecond line\n", "pw"), ("no newline", "no newline"),
    ])
    func passwordFile(contents: String, password: String) throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-pw-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try contents.write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try EtcdCredentials(user: "u", passwordFile: file).password() == password)
        try "\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(throws: ValueError("\(file): no password on its first line")) { try EtcdCredentials(user: "u", passwordFile: file) }
        #expect(throws: ValueError("\(file)-missing: No such file or directory")) { try EtcdCredentials(user: "u", passwordFile: file + "-missing") }
        let client = try EtcdClient(url: "http://127.0.0.1:2379", credentials: try EtcdCredentials(user: "u", password: "hunter2"))
        #expect(!"\(client)".contains("hunter2") && "\(client)".contains("user u"), "a printed client shows no password: \(client)")
    }
}
