import Foundation
import Testing
import TurnoutTestSupport

/// Every kind of bad input, run through the real binary: exit status 2, and a message on stderr
/// naming file:line and the field. Nothing is printed on stdout, so nothing half-made can be piped on.
@Suite("turnout exit statuses and error messages")
struct ExitStatusTests {
    struct BadTable: CustomTestStringConvertible, Sendable {
        var name: String
        var yaml: String
        /// `file:line:` must appear, then the field path.
        var line: Int
        var field: String
        var testDescription: String { name }
    }

    static let api = "  - name: shop/api\n    addresses: [10.96.0.10]\n    ports: [{name: http, port: 80}]\n"

    static let tables: [BadTable] = [
        BadTable(name: "duplicate service name", yaml: "services:\n\(api)\(api)", line: 5, field: "services[1].name"),
        BadTable(name: "the same VIP:port:protocol in two services",
                 yaml: "services:\n\(api)  - name: shop/web\n    addresses: [10.96.0.10]\n    ports: [{port: 80}]\n", line: 7, field: "services[1].ports[0]"),
        BadTable(name: "a bad address", yaml: "services:\n  - name: a/b\n    addresses: [10.96.0]\n    ports: [{port: 80}]\n",
                 line: 3, field: "services[0].addresses[0]"),
        BadTable(name: "mixed-up address families", yaml: "services:\n\(api)    endpoints: [{address: 'fd00::1'}]\n",
                 line: 5, field: "services[0].endpoints[0].address"),
        BadTable(name: "port 0", yaml: "services:\n  - name: a/b\n    addresses: [10.96.0.1]\n    ports: [{port: 0}]\n",
                 line: 4, field: "services[0].ports[0].port"),
        BadTable(name: "port 65536", yaml: "services:\n  - name: a/b\n    addresses: [10.96.0.1]\n    ports: [{port: 65536}]\n",
                 line: 4, field: "services[0].ports[0].port"),
        BadTable(name: "negative weight", yaml: "services:\n\(api)    endpoints: [{address: 10.1.0.1, weight: -5}]\n",
                 line: 5, field: "services[0].endpoints[0].weight"),
        BadTable(name: "non-integer weight", yaml: "services:\n\(api)    endpoints: [{address: 10.1.0.1, weight: heavy}]\n",
                 line: 5, field: "services[0].endpoints[0].weight"),
        BadTable(name: "unknown key", yaml: "services:\n\(api)    endpionts: []\n", line: 5, field: "services[0].endpionts"),
        BadTable(name: "empty name", yaml: "services:\n  - name: ''\n    addresses: [10.96.0.1]\n    ports: [{port: 80}]\n",
                 line: 2, field: "services[0].name"),
        BadTable(name: "empty port name", yaml: "services:\n  - name: a/b\n    addresses: [10.96.0.1]\n    ports: [{name: '', port: 80}]\n",
                 line: 4, field: "services[0].ports[0].name"),
    ]

    @Test("bad table → exit 2, file:line and field on stderr, nothing on stdout", arguments: tables)
    func badTable(_ bad: BadTable) throws {
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
