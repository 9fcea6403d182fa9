/// What `scripts/lab/tcp.py split` printed in its tab-separated form: one line per answer,
/// `name<TAB>connections<TAB>share`, where a failed connection's name is `error: …`.
///
/// Only names that answered at least once have a line.
public struct SplitClientOutput: Sendable {
    /// Connections per answer name.
    public let counts: [String: Int]

    public init(_ text: String) {
        var counts: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: "\t")
            if fields.count == 3, let number = Int(fields[1]) { counts[String(fields[0]), default: 0] += number }
        }
        self.counts = counts
    }

    /// Connections whose answer starts with `prefix` (`"error"` for every failure).
    public func connections(answeredBy prefix: String) -> Int {
        counts.filter { $0.key.hasPrefix(prefix) }.values.reduce(0, +)
    }
}
