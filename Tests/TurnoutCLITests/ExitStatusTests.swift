import Foundation
import Testing
import TurnoutTestSupport

/// Every kind of bad input, run through the real binary: exit status 2, and a message on stderr
/// naming file:line and the field. Nothing is printed on stdout, so nothing half-made can be piped on.
@Suite("turnout exit statuses and error messages")
struct ExitStatusTests {
    @Test("bad table → exit 2, file:line and field on stderr, nothing on stdout", arguments: InvalidTable.all)
    func badTable(_ bad: InvalidTable) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("table.yaml").path
        try bad.yaml.write(toFile: file, atomically: true, encoding: .utf8)

        for command in [["plan", "-f", file], ["trace", "-f", file, "--to", "10.96.0.10:80"]] {
            let result = try turnout(command)
            #expect(result.status == 2, "\(command[0]): \(result.standardError)")
            #expect(result.standardError.contains("\(file):\(bad.line):"), "\(result.standardError)")
            #expect(result.standardError.contains(bad.field), "\(result.standardError)")
            #expect(result.standardError.contains(bad.message), "\(result.standardError)")
            #expect(result.standardOutput.isEmpty)
        }
    }

    @Test("bad arguments → exit 2", arguments: [
        ["plan"],
        ["plan", "-f", "rules/canary.yaml", "--mode", "sideways"],
        ["plan", "-f", "rules/canary.yaml", "--format", "pf"],
        ["plan", "-f", "rules/canary.yaml", "--proxy-port", "0"],
        ["plan", "-f", "rules/does-not-exist.yaml"],
        ["trace", "-f", "rules/canary.yaml", "--to", "10.96.0.20"],
        ["trace", "-f", "rules/canary.yaml", "--to", "10.96.0.20:80", "--from", "fd00::1"],
        ["trace", "-f", "rules/canary.yaml", "--to", "10.96.0.20:80", "--protocol", "icmp"],
        ["frobnicate"],
    ])
    func badArguments(_ arguments: [String]) throws {
        let result = try turnout(arguments)
        #expect(result.status == 2, "\(result.standardError)")
        #expect(!result.standardError.isEmpty)
    }

    @Test("etcd TLS and user options that cannot apply → exit 2 naming them, before anything starts", arguments: [
        (["apply", "-f", "rules/canary.yaml", "--etcd-cacert", "/etc/hostname"], "need --watch --source etcd:https://"),
        (["apply", "--watch", "-f", "rules/canary.yaml", "--etcd-cacert", "CA"], "TLS certificates are for an etcd source only"),
        (["proxy", "--source", "etcd:https://127.0.0.1:1", "--etcd-cacert", "/nonexistent/ca.crt"],
         "etcd TLS: /nonexistent/ca.crt: cannot read the trusted CA certificates: open: No such file or directory (errno 2)"),
        (["proxy", "--source", "etcd:http://127.0.0.1:1", "--etcd-cacert", "CA"],
         "TLS certificates are given, but etcd's address is http://"),
        (["proxy", "--source", "etcd:https://127.0.0.1:1", "--etcd-key", "/etc/hostname"], "--etcd-cert and --etcd-key go together"),
        (["proxy", "--source", "etcd:http://127.0.0.1:1", "--etcd-user", "", "--etcd-password-file", "/etc/hostname"],
         "--etcd-user: an etcd user name cannot be empty"),
        (["proxy", "--source", "etcd:http://127.0.0.1:1", "--etcd-user", "u", "--etcd-password-file", "/"],
         "--etcd-password-file /: Is a directory"),
    ] as [([String], String)])
    func etcdTLSOptions(_ arguments: [String], _ message: String) throws {
        let certificates = try TestCertificates()
        let result = try turnout(arguments.map { $0 == "CA" ? certificates.caFile : $0 })
        #expect(result.status == 2, "\(result.standardError)")
        #expect(result.standardError.contains(message), "\(result.standardError)")
    }

    @Test("--help on every command → exit 0 with an example", arguments: [["--help"], ["plan", "--help"], ["trace", "--help"]])
    func help(_ arguments: [String]) throws {
        let result = try turnout(arguments)
        #expect(result.status == 0)
        #expect(result.standardOutput.contains("turnout plan -f rules/canary.yaml") || result.standardOutput.contains("turnout trace -f rules/canary.yaml"))
    }

    @Test("a directory of tables is merged; an empty directory is bad input")
    func directory() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-dir-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(try turnout("plan", "-f", directory.path).status == 2)
        for name in ["canary", "two-endpoints"] {
            try FileManager.default.copyItem(atPath: Repository.path("rules/\(name).yaml"), toPath: directory.appendingPathComponent("\(name).yaml").path)
        }
        let result = try turnout("trace", "-f", directory.path, "--to", "10.96.0.10:80")
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardOutput.contains("1/2"))
    }
}
