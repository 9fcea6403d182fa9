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

    @Test("two namespaces, default files → each daemon's status and last-good are its own; a second daemon in one → exit 1 naming the first, nothing changed; the first killed → status says it is not running")
    func filesPerNamespace() throws {
        try withNetworkNamespace(prefix: "cli-watch-a") { a in
            try withNetworkNamespace(prefix: "cli-watch-b") { b in
                let directory = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-watch-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                let tableA = directory + "/a.yaml", tableB = directory + "/b.yaml"
                // The defaults as the daemons pick them: the lab namespaces are named (ip netns
                // add). The lab removes them with the namespace.
                let files = [a, b].map { ns in
                    (status: "/run/turnout/watch-status-netns-\(ns.name).json", lastGood: "/var/lib/turnout/last-good-netns-\(ns.name).json")
                }
                defer { try? FileManager.default.removeItem(atPath: directory) }
                try CanaryTable.yaml(stable: 90, canary: 10).write(toFile: tableA, atomically: true, encoding: .utf8)
                try CanaryTable.yaml(stable: 50, canary: 50).write(toFile: tableB, atomically: true, encoding: .utf8)

                let daemonA = try Self.watch(a, ["-f", tableA])
                defer { daemonA.stop() }
                let daemonB = try Self.watch(b, ["-f", tableB])
                defer { daemonB.stop() }
                #expect(ProxyLab.eventually(within: .seconds(10)) { Self.slots(a) == (9, 1) && Self.slots(b) == (1, 1) },
                        "stderr: \(daemonA.standardError) \(daemonB.standardError)")
                #expect(daemonA.waitForOutput("status in \(files[0].status)", within: .seconds(5)), "\(daemonA.standardOutput)")
                let status = { (ns: NetworkNamespace) in (try? ns.run(Repository.turnoutBinary, ["status", "--admin", "none"]).standardOutput) ?? "" }
                #expect(ProxyLab.eventually(within: .seconds(5)) {
                    status(a).contains("source file:\(tableA): up") && status(b).contains("source file:\(tableB): up")
                }, "a: \(status(a))\nb: \(status(b))")
                #expect(status(a).contains("apply --watch running (PID \(daemonA.pid))"), "\(status(a))")
                #expect(!status(a).contains(tableB) && !status(b).contains(tableA))
                #expect(ProxyLab.eventually(within: .seconds(5)) {
                    (try? String(contentsOfFile: files[0].lastGood, encoding: .utf8))?.contains("\"weight\":90") == true
                        && (try? String(contentsOfFile: files[1].lastGood, encoding: .utf8))?.contains("\"weight\":50") == true
                })

                // A second daemon in a: refused before it touches anything.
                let second = try a.run(Repository.turnoutBinary, ["apply", "--watch", "-f", tableB], timeLimit: .seconds(20))
                #expect(second.status == 1, "\(second.standardError)")
                #expect(second.standardError.contains("another apply --watch (PID \(daemonA.pid)) already keeps network namespace \(a.name)'s rules"),
                        "\(second.standardError)")
                #expect(Self.slots(a) == (9, 1))
                #expect((try? String(contentsOfFile: files[0].lastGood, encoding: .utf8))?.contains("\"weight\":90") == true)

                // Killed: the status file stays, and says so.
                daemonA.signal(SIGKILL)
                #expect(daemonA.waitForExit(within: .seconds(10)) != nil)
                #expect(status(a).contains("apply --watch not running; its last state:\nsource file:\(tableA): up"), "\(status(a))")
                #expect(status(b).contains("apply --watch running (PID \(daemonB.pid))"), "\(status(b))")
            }
        }
    }

    @Test("bad invocations → exit 2", arguments: [
        ["apply", "--source", "file:/x"],                 // --source without --watch
        ["apply", "--watch"],                             // no table
        ["apply", "--watch", "-f", "a", "--source", "file:b"],
        ["apply", "--watch", "--source", "etcd:"],         // not a URL
        ["apply", "-f", "rules/canary.yaml", "--last-good", "/tmp/x"],   // daemon files without --watch
        ["apply", "-f", "rules/canary.yaml", "--status-file", "/tmp/x"],
    ])
    func badInvocation(_ arguments: [String]) throws {
        let result = try Subprocess.run(Repository.turnoutBinary, arguments, workingDirectory: Repository.root.path, timeLimit: .seconds(20))
        #expect(result.status == 2, "\(arguments): \(result.standardError)")
    }
}
