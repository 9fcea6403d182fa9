import Foundation
import Synchronization
import Testing
import TurnoutControl
import TurnoutModel
import TurnoutTestSupport

/// A table file watched with inotify: real files in a temporary directory, real threads; every
/// wait is bounded.
@Suite("file source: inotify on the table's directory")
struct FileTableSourceTests {
    /// What a source delivered, in order, as short strings: `table 2 services`, `invalid`, `unavailable`.
    final class Recorder: Sendable {
        let events = Locked<[String]>([])

        func record(_ event: TableSourceEvent) {
            let line = switch event {
            case .table(let table, _): "table \(table.services.count) services"
            case .invalid: "invalid"
            case .unavailable: "unavailable"
            }
            events.mutate { $0.append(line) }
        }

        func waitFor(_ count: Int) -> [String] {
            _ = ProxyLab.eventually(within: .seconds(5)) { events.value.count >= count }
            return events.value
        }
    }

    static func services(_ count: Int) -> String {
        "services:\n" + (0..<count).map { "  - {name: demo/s\($0), addresses: [10.96.0.\($0 + 1)], ports: [{port: 80}]}\n" }.joined()
    }

    /// A source for `path`, started, with what it delivers recorded.
    static func started(_ path: String) throws -> (FileTableSource, Recorder) {
        let recorder = Recorder()
        let source = try FileTableSource(path: path)
        try source.start { recorder.record($0) }
        return (source, recorder)
    }

    static func withDirectory(_ body: (String) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("turnout-file-source-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try body(directory)
    }

    @Test("start → the table; replaced by rename → the new one; rewritten in place → the new one; broken → invalid; deleted → unavailable; back → the table")
    func fileLifecycle() throws {
        try Self.withDirectory { directory in
            let file = directory + "/table.yaml"
            try Self.services(1).write(toFile: file, atomically: true, encoding: .utf8)
            let (source, recorder) = try Self.started(file)
            defer { source.stop() }
            #expect(recorder.waitFor(1) == ["table 1 services"])

            try Self.services(2).write(toFile: file, atomically: true, encoding: .utf8)
            #expect(recorder.waitFor(2).last == "table 2 services")

            let handle = try #require(FileHandle(forWritingAtPath: file))
            try handle.truncate(atOffset: 0)
            try handle.write(contentsOf: Data(Self.services(3).utf8))
            try handle.close()
            #expect(recorder.waitFor(3).last == "table 3 services")

            try "services: [oops\n".write(toFile: file, atomically: true, encoding: .utf8)
            #expect(recorder.waitFor(4).last == "invalid")

            try FileManager.default.removeItem(atPath: file)
            #expect(recorder.waitFor(5).last == "unavailable")

            try Self.services(1).write(toFile: file, atomically: true, encoding: .utf8)
            #expect(recorder.waitFor(6).last == "table 1 services")
            Thread.sleep(forTimeInterval: 0.3)
            #expect(recorder.events.value.count == 6, "nothing delivered twice: \(recorder.events.value)")
        }
    }

    @Test("a directory of tables: a new file in it → the merged table; an unrelated file (not *.yaml) → nothing")
    func directory() throws {
        try Self.withDirectory { directory in
            try Self.services(1).write(toFile: directory + "/a.yaml", atomically: true, encoding: .utf8)
            let (source, recorder) = try Self.started(directory)
            defer { source.stop() }
            #expect(recorder.waitFor(1) == ["table 1 services"])
            try "services:\n  - {name: other/b, addresses: [10.96.1.1], ports: [{port: 80}]}\n"
                .write(toFile: directory + "/b.yaml", atomically: true, encoding: .utf8)
            #expect(recorder.waitFor(2).last == "table 2 services")
            try "notes".write(toFile: directory + "/README.txt", atomically: true, encoding: .utf8)
            Thread.sleep(forTimeInterval: 0.5)
            #expect(recorder.events.value.count == 2, "\(recorder.events.value)")
        }
    }

    @Test("refresh() → the unchanged table delivered again; a file that never existed → unavailable at start")
    func refreshAndMissing() throws {
        try Self.withDirectory { directory in
            let file = directory + "/table.yaml"
            try Self.services(1).write(toFile: file, atomically: true, encoding: .utf8)
            let (source, recorder) = try Self.started(file)
            defer { source.stop() }
            #expect(recorder.waitFor(1) == ["table 1 services"])
            source.refresh()
            #expect(recorder.waitFor(2) == ["table 1 services", "table 1 services"])

            let (absent, missing) = try Self.started(directory + "/absent.yaml")
            defer { absent.stop() }
            #expect(missing.waitFor(1) == ["unavailable"])
        }
    }
}
