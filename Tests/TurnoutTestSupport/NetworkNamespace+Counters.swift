extension NetworkNamespace {
    /// The namespace's non-zero TCP and IP counters (`nstat -asz`, history untouched) and its
    /// conntrack statistics, one line: what a failed traffic check prints so that a lost SYN, a
    /// full queue or a conntrack drop shows in the test's output rather than only as a timeout.
    ///
    /// Never throws: a counter that cannot be read is named as such in the text.
    public func kernelCounters() -> String {
        var parts: [String] = []
        if let nstat = try? run("nstat", ["-asz"], timeLimit: .seconds(10)), nstat.status == 0 {
            let wanted = nstat.standardOutput.split(separator: "\n").compactMap { line -> String? in
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count >= 2, fields[0].hasPrefix("Tcp") || fields[0].hasPrefix("Ip"), fields[1] != "0" else { return nil }
                return "\(fields[0])=\(fields[1])"
            }
            parts.append(wanted.joined(separator: " "))
        } else {
            parts.append("(nstat unavailable)")
        }
        // One line per CPU, hexadecimal, under a header line; summed here.
        if let stat = try? run("cat", ["/proc/net/stat/nf_conntrack"], timeLimit: .seconds(10)), stat.status == 0 {
            let lines = stat.standardOutput.split(separator: "\n")
            if let header = lines.first?.split(separator: " ", omittingEmptySubsequences: true) {
                var sums = [UInt64](repeating: 0, count: header.count)
                for line in lines.dropFirst() {
                    for (index, field) in line.split(separator: " ", omittingEmptySubsequences: true).enumerated() where index < sums.count {
                        sums[index] += UInt64(field, radix: 16) ?? 0
                    }
                }
                // The first column (entries) is the same table count on every line, not a per-CPU figure.
                let counts = zip(header, sums).dropFirst().filter { $0.1 != 0 }.map { "conntrack.\($0.0)=\($0.1)" }
                parts.append(counts.joined(separator: " "))
            }
        } else {
            parts.append("(conntrack statistics unavailable)")
        }
        return parts.filter { !$0.isEmpty }.joined(separator: " ")
    }
}
