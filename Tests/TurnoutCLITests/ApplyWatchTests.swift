import Foundation
import Testing
import TurnoutTestSupport

/// `turnout apply --watch -f FILE` as a daemon in a throwaway namespace: the kernel's map follows
/// the file within the debounce bound, a broken edit keeps the installed rules, `status` shows
/// the source, and a restart with the file gone comes back with the last good table.
@Suite("turnout apply --watch (binary, in a namespace)", .serialized,
       .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct ApplyWatchTests {
    /// The table as nft lists it: the pick maps' elements (`endpoint-picks4-modN`) are the only
    /// ones that map a key to `address . port`.
    static func picks(_ ns: NetworkNamespace) -> String {
        (try? ns.run("nft", ["list", "table", "inet", "turnout"]).standardOutput) ?? ""
    }

    /// The weighted pick's slots per endpoint, as the kernel holds them (nft lists one element
    /// per slot): 90/10 is 9 and 1.
    static func slots(_ ns: NetworkNamespace) -> (stable: Int, canary: Int) {
        let text = picks(ns)
        return (text.components(separatedBy: ": 10.1.0.5 . 8080").count - 1, text.components(separatedBy: ": 10.1.0.6 . 8081").count - 1)
    }

    static func watch(_ ns: NetworkNamespace, _ arguments: [String]) throws -> LabProcess {
        try LabProcess(try Subprocess.locate("ip"), ["netns", "exec", ns.name, Repository.turnoutBinary, "apply", "--watch"] + arguments)
    }

    @Test("edit → the map follows (time printed); broken edit → rules kept, status says invalid; fixed → applied; SIGTERM → rules stay; restart with the file gone → last good table installed")
    func followsTheFile() throws {
        try withNetworkNamespace(prefix: "cli-watch") { ns in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-watch-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let file = directory + "/table.yaml", lastGood = directory + "/last-good.json", statusFile = directory + "/status.json"
            let options = ["--last-good", lastGood, "--status-file", statusFile]
            try CanaryTable.yaml(stable: 90, canary: 10).write(toFile: file, atomically: true, encoding: .utf8)

            let daemon = try Self.watch(ns, ["-f", file] + options)
            defer { daemon.stop() }
            #expect(ProxyLab.eventually(within: .seconds(10)) { Self.slots(ns) == (9, 1) }, "stderr: \(daemon.standardError)")
            let before = Self.picks(ns)

            // An edit: 50/50.
            let edited = ContinuousClock.now
            try CanaryTable.yaml(stable: 50, canary: 50).write(toFile: file, atomically: true, encoding: .utf8)
            #expect(ProxyLab.eventually(within: .seconds(5)) { Self.picks(ns) != before })
            // Printed, not asserted: the bound above is functional (5 s), the time is this machine's.
            print("apply --watch: the map changed \(ContinuousClock.now - edited) after the edit (debounce 100 ms)")
            // Eventually: a patch goes prepare → switch over → retire, and between the last two
            // the old slots are still in the map. The daemon installs at the switchover and
            // leaves the retire to a thread that waits the grace period first.
            #expect(ProxyLab.eventually(within: .seconds(5)) { Self.slots(ns) == (1, 1) }, "\(Self.picks(ns))")
            #expect(daemon.waitForOutput("(retire after one grace period)", inStandardError: true, within: .seconds(5)), "stderr: \(daemon.standardError)")
            let afterEdit = Self.picks(ns)

            // A broken edit: nothing changes, and status says why.
            try "services: [oops\n".write(toFile: file, atomically: true, encoding: .utf8)
            #expect(daemon.waitForOutput("is not a valid table; keeping", inStandardError: true, within: .seconds(5)), "stderr: \(daemon.standardError)")
            Thread.sleep(forTimeInterval: 0.3)
            #expect(Self.picks(ns) == afterEdit)
            #expect(ProxyLab.eventually(within: .seconds(3)) {
                (try? ns.run(Repository.turnoutBinary, ["status", "--status-file", statusFile]))?.standardOutput.contains("source file:\(file): invalid") == true
            })
            let status = try ns.run(Repository.turnoutBinary, ["status", "--status-file", statusFile])
            #expect(status.standardOutput.contains("1 invalid tables"), "\(status.standardOutput)")

            // Fixed: applied.
            try CanaryTable.yaml(stable: 1, canary: 3).write(toFile: file, atomically: true, encoding: .utf8)
            #expect(ProxyLab.eventually(within: .seconds(5)) { Self.slots(ns) == (1, 3) }, "\(Self.picks(ns))")
            // The daemon rewrites its status file within 250 ms of a change.
            #expect(ProxyLab.eventually(within: .seconds(3)) {
                (try? ns.run(Repository.turnoutBinary, ["status", "--status-file", statusFile]))?.standardOutput.contains("source file:\(file): up") == true
            })

            // Stopped: the rules stay; the last good file is the last table.
            daemon.signal(SIGTERM)
            #expect(daemon.waitForExit(within: .seconds(10)) == 0, "stderr: \(daemon.standardError)")
            #expect(Self.slots(ns) == (1, 3))
            #expect(try String(contentsOfFile: lastGood, encoding: .utf8).contains("\"weight\":3"))

            // A node restarted with its source gone: the last good table comes back at once.
            #expect(try ns.run(Repository.turnoutBinary, ["flush"]).status == 0)
            try FileManager.default.removeItem(atPath: file)
            let restarted = try Self.watch(ns, ["-f", file] + options)
            defer { restarted.stop() }
            #expect(ProxyLab.eventually(within: .seconds(10)) { Self.slots(ns) == (1, 3) }, "stderr: \(restarted.standardError)")
            #expect(restarted.waitForOutput("unavailable; keeping last-good file", inStandardError: true, within: .seconds(5)),
                    "stderr: \(restarted.standardError)")
        }
    }

    @Test("bad invocations → exit 2", arguments: [
        ["apply", "--source", "file:/x"],                 // --source without --watch
        ["apply", "--watch"],                             // no table
        ["apply", "--watch", "-f", "a", "--source", "file:b"],
        ["apply", "--watch", "--source", "etcd:"],         // not a URL
    ])
    func badInvocation(_ arguments: [String]) throws {
        let result = try Subprocess.run(Repository.turnoutBinary, arguments, workingDirectory: Repository.root.path, timeLimit: .seconds(20))
        #expect(result.status == 2, "\(arguments): \(result.standardError)")
    }
}
