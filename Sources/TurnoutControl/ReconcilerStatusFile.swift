import FoundationEssentials
import Glibc
import TurnoutModel

/// Where `turnout apply --watch` leaves its ``Reconciler/Status`` for `turnout status` to show:
/// a small JSON file, replaced atomically (written beside it, then renamed) on every change.
public enum ReconcilerStatusFile {
    public static let defaultPath = "/run/turnout/watch-status.json"

    public static func write(_ status: Reconciler.Status, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let data = try encoder.encode(status)
        let temporary = path + ".tmp"
        try data.write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, path) == 0 else { throw SystemCallError(call: "rename(\(temporary), \(path))", errno: errno) }
    }

    /// The status at `path`; nil when there is none (no daemon ran here).
    public static func read(_ path: String) throws -> Reconciler.Status? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        return try JSONDecoder().decode(Reconciler.Status.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Lines for people: the source and its state, the revision installed and when.
    public static func summary(_ status: Reconciler.Status, now: Double) -> [String] {
        var lines = ["source \(status.source): \(status.sourceState)" + (status.sourceProblem.map { " (\($0))" } ?? "")
                     + (status.sourceRevision.map { ", revision \($0)" } ?? "")]
        if let revision = status.installedRevision, let time = status.installedAt {
            lines.append("installed revision \(revision), \(Self.age(now - time)) ago (\(status.installs) installs, \(status.unchanged) unchanged)")
        } else if let revision = status.installedRevision {
            lines.append("installed revision \(revision)")
        } else {
            lines.append("nothing installed from the source yet")
        }
        if status.installFailures > 0 || status.invalidTables > 0 || status.outages > 0 {
            lines.append("\(status.installFailures) install failures, \(status.invalidTables) invalid tables, \(status.outages) outages"
                         + (status.lastFailure.map { "; last failure: \($0)" } ?? ""))
        }
        return lines
    }

    private static func age(_ seconds: Double) -> String {
        let seconds = max(0, seconds)
        if seconds < 120 { return "\(seconds.decimalText(fractionDigits: 1)) s" }
        if seconds < 7200 { return "\(Int(seconds / 60)) min" }
        return "\(Int(seconds / 3600)) h"
    }
}
