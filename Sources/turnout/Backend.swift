import ArgumentParser
import FoundationEssentials
import TurnoutControl
import TurnoutModel
import TurnoutNetlink
import TurnoutRules
import TurnoutSocketCapture

/// Which kernel interface a command writes through.
enum Backend: String, ExpressibleByArgument, CaseIterable {
    /// nf_tables over netlink (libnftnl): one atomic, incremental transaction.
    case nft
    /// The iptables tools (`iptables-restore --noflush`): for hosts that must stay on iptables.
    case iptables
}

/// Where `turnout init` puts the capture: the two rule backends, or BPF programs that capture at
/// connect(2) and at the listener lookup instead of rewriting packets (no NAT, no conntrack).
enum CaptureBackend: String, ExpressibleByArgument, CaseIterable {
    case nft
    case iptables
    /// `TurnoutSocketCapture`: cgroup and sk_lookup programs, pinned; IPv4 and IPv6.
    case bpf
}

/// How `apply`, `flush` and `status` print what they did.
enum ReportFormat: String, ExpressibleByArgument, CaseIterable {
    case text
    case json
}

/// Kernel commands need CAP_NET_ADMIN; without it they say so in one line and change nothing.
enum KernelAccess {
    /// CAP_NET_ADMIN's bit in the effective capability set (linux/capability.h).
    static let netAdminBit: UInt64 = 1 << 12

    /// Throws `KernelAccessDenied` unless the process holds CAP_NET_ADMIN (read from
    /// `/proc/self/status`, the same answer `capget(2)` gives).
    static func require(for command: String) throws {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let bits = UInt64(line.dropFirst("CapEff:".count).trimmedWhitespace, radix: 16) else { return }
        if bits & netAdminBit == 0 { throw KernelAccessDenied(command: command) }
    }
}

/// The one-line refusal of a kernel command run without CAP_NET_ADMIN (exit status 1).
struct KernelAccessDenied: Error, CustomStringConvertible {
    var command: String
    var description: String {
        "turnout \(command): needs CAP_NET_ADMIN to change or read netfilter rules (run it as root, e.g. with sudo); nothing was changed"
    }
}

/// A kernel or tool failure, reported with what failed; nothing was changed (exit status 1).
struct KernelCommandFailed: Error, CustomStringConvertible {
    var command: String
    var detail: String
    var description: String { "turnout \(command): failed, nothing was changed: \(detail)" }

    /// Wraps backend errors; EPERM from the kernel becomes the CAP_NET_ADMIN message.
    /// `init --backend bpf`'s errors say what failed without that claim.
    static func wrapping<Result>(_ command: String, _ body: () throws -> Result) throws -> Result {
        do { return try body() } catch let error as NetlinkError {
            if error.isPermissionDenied { throw KernelAccessDenied(command: command) }
            throw KernelCommandFailed(command: command, detail: error.description)
        } catch let error as ToolError {
            throw KernelCommandFailed(command: command, detail: error.description)
        } catch let error as SocketCaptureError {
            // Not "nothing was changed": a re-run that fails between two programs leaves the
            // ones already replaced.
            throw RuntimeFailure(message: "turnout \(command): failed: \(error.description)")
        }
    }
}

extension ApplyReport {
    func printed(_ format: ReportFormat, elapsed: Duration, source: String?, validation: [CaptureProbe.Result]? = nil,
                 validationElapsed: Duration? = nil, drain: CaptureDrain.Outcome? = nil) -> String {
        let milliseconds = elapsed.milliseconds
        switch format {
        case .json:
            var object: [String: JSONValue] = [
                "backend": .string(backend), "outcome": .string(outcome.rawValue), "messages": .init(messages),
                "changes": .array(changes.map { .string($0) }), "milliseconds": .number((milliseconds * 1000).rounded() / 1000)]
            if let reason { object["reason"] = .string(reason) }
            if let source { object["table"] = .string(source) }
            if let validation {
                object["validation"] = .array(validation.map {
                    ["passed": .bool($0.passed), "family": .string("\($0.family)"),
                     "target": JSONValue($0.target.map { .string("\($0)") }), "explanation": .string($0.explanation)]
                })
                if let validationElapsed {
                    object["validationMilliseconds"] = .number((validationElapsed.milliseconds * 1000).rounded() / 1000)
                }
            }
            if let drain {
                object["drain"] = ["openAtStart": JSONValue(drain.openAtStart.map { JSONValue($0) }),
                                   "stillOpen": JSONValue(drain.stillOpen.map { JSONValue($0) }),
                                   "milliseconds": .number((drain.waited.milliseconds * 1000).rounded() / 1000)]
            }
            return JSONValue.object(object).text() + "\n"
        case .text:
            let what = source.map { " \($0)" } ?? ""
            var out = "turnout:\(what) \(outcome.rawValue) via \(backend): \(messages) messages, \(milliseconds.decimalText(fractionDigits: 1)) ms\n"
            if let reason { out += "  because \(reason)\n" }
            for change in changes { out += "  \(change)\n" }
            if let drain { out += "  \(Self.describe(drain))\n" }
            if let validation {
                let time = validationElapsed.map { ", \($0.milliseconds.decimalText(fractionDigits: 1)) ms" } ?? ""
                out += "turnout: validation \(validation.allSatisfy(\.passed) ? "passed" : "FAILED")\(time)\n"
                for result in validation { out += "  \(result)\n" }
            }
            return out
        }
    }
}

extension ApplyReport {
    /// One line on what `init --cleanup` waited for.
    static func describe(_ drain: CaptureDrain.Outcome) -> String {
        let waited = drain.waited.milliseconds.decimalText(fractionDigits: 1)
        guard let start = drain.openAtStart, let left = drain.stillOpen else {
            return "drain: conntrack not readable (\(CapturedConnections.conntrackPath)); did not wait for captured connections"
        }
        if start == 0 { return "drain: no captured connection was open" }
        if left == 0 { return "drain: \(start) captured connection\(start == 1 ? "" : "s") closed within \(waited) ms" }
        return "drain: timed out after \(waited) ms with \(left) of \(start) captured connection\(start == 1 ? "" : "s") open; they lose their NAT and stop working"
    }
}

extension Duration {
    var milliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
}
