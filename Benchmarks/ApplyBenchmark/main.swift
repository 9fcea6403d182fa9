// turnout-bench-apply: how long installing and changing a service table in the kernel takes,
// and what a big table costs each new connection.
//
// A benchmark, not a test: it prints Markdown tables (scripts/bench/apply runs it in a release
// build) with ratios against peers measured in the same run, and never judges a timing by its
// exit code. Needs root: everything happens in network namespaces it creates and deletes.
import Foundation
import TurnoutBenchmarkSupport

// The lab's helpers, run by the benchmark itself inside namespaces.
let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "serve", arguments.count == 3, let port = UInt16(arguments[1]), let seconds = Int(arguments[2]) {
    exit(LatencyTools.serve(port: port, seconds: seconds))
}
if arguments.first == "connect-mix", arguments.count >= 6, let count = Int(arguments[1]), let warmup = Int(arguments[2]),
   let block = Int(arguments[3]), let deadline = Int(arguments[4]) {
    let targets = arguments.dropFirst(5).compactMap(LatencyTools.Target.init)
    guard targets.count == arguments.count - 5 else {
        FileHandle.standardError.write(Data("turnout-bench-apply connect-mix: targets are NSPATH,SOURCE,ADDRESS,PORT\n".utf8))
        exit(2)
    }
    exit(LatencyTools.connectMix(count: count, warmup: warmup, block: max(block, 1), deadlineSeconds: deadline, targets: targets))
}

let options: ApplyOptions
do {
    options = try ApplyOptions(arguments: arguments)
} catch .help {
    print(ApplyOptions.usage)
    exit(0)
} catch {
    FileHandle.standardError.write(Data("\(error)\n".utf8))
    exit(2)
}
guard geteuid() == 0 else {
    FileHandle.standardError.write(Data("turnout-bench-apply: needs root (network namespaces, CAP_NET_ADMIN); run scripts/bench/apply with sudo\n".utf8))
    exit(2)
}

/// This binary's absolute path, for the helpers run through `ip netns exec`.
let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
let nft = ChildProcess.executable("nft")
let workDirectory = NSTemporaryDirectory() + "\(options.prefix)-files"
var report = ApplyBenchReport(options: options, nftVersion: Tools.version(nft),
                              iptablesVersion: Tools.version(ChildProcess.executable("iptables")))
var status: Int32 = 0
do {
    try FileManager.default.createDirectory(atPath: workDirectory, withIntermediateDirectories: true)
    let namespaces = try Namespaces(prefix: options.prefix, settleMilliseconds: options.settleMilliseconds)
    defer {
        namespaces.retireAll()
        try? FileManager.default.removeItem(atPath: workDirectory)
    }
    let tools = Tools(turnout: options.turnout, nft: nft, timeoutSeconds: options.childTimeoutSeconds)
    if options.turnout == nil { report.skipped.append("CLI and `nft -f` rows: no --turnout binary given") }

    if options.parts.contains(.full) {
        report.full = try FullApplyBenchmark(options: options, namespaces: namespaces, tools: tools, workDirectory: workDirectory).run()
        namespaces.retireAll()
    }
    if options.parts.contains(.change) {
        report.changes = try ChangeBenchmark(options: options, namespaces: namespaces, tools: tools, workDirectory: workDirectory).run()
        namespaces.retireAll()
    }
    if options.parts.contains(.latency) {
        report.latency = try LatencyBenchmark(options: options, namespaces: namespaces, executable: executable).run()
    }
} catch {
    FileHandle.standardError.write(Data("turnout-bench-apply: stopped: \(error)\n".utf8))
    report.skipped.append("the run stopped early: \(error)")
    status = 1
}
print(report.text)
exit(status)
