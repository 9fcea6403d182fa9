import FoundationEssentials

/// The connections capture redirected to the proxy that are still open, as conntrack lists them
/// (`/proc/net/nf_conntrack`): what `init --cleanup` waits for before it deletes the last rules.
///
/// A connection counts when conntrack rewrote it to one of the proxy's ports (the reply comes
/// from that port, and from another address or port than the client dialled) and its TCP state
/// still carries data: not TIME_WAIT or CLOSE, whose entries only linger. Connections the proxy
/// opened itself, and any connection to the proxy's port that was not redirected, do not count.
///
/// `/proc/net/nf_conntrack` shows the network namespace of the thread that reads it, so a
/// `turnout init --cleanup` run with `ip netns exec` sees exactly its own namespace. Reading it
/// needs root. Plain value functions; callable from any thread.
public enum CapturedConnections {
    /// The conntrack listing of the caller's network namespace.
    public static let conntrackPath = "/proc/net/nf_conntrack"

    /// How many open connections in `listing` (the text of ``conntrackPath``) were redirected
    /// to one of `ports`.
    public static func count(redirectedTo ports: Set<UInt16>, in listing: String) -> Int {
        listing.split(separator: "\n").count { line in
            guard let entry = Entry(line) else { return false }
            return entry.isOpen && ports.contains(entry.reply.sourcePort)
                && (entry.reply.source != entry.original.destination || entry.reply.sourcePort != entry.original.destinationPort)
        }
    }

    /// ``count(redirectedTo:in:)`` of the live listing; nil when it cannot be read (no
    /// conntrack in this kernel, its `/proc` file compiled out, or no permission).
    public static func count(redirectedTo ports: Set<UInt16>, path: String = conntrackPath) -> Int? {
        guard let listing = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return count(redirectedTo: ports, in: listing)
    }

    /// One line of the listing: `ipv4 2 tcp 6 431999 ESTABLISHED src=… dst=… sport=… dport=…
    /// [UNREPLIED] src=… dst=… sport=… dport=… [ASSURED] mark=0 zone=0 use=2`. The first
    /// src/dst/sport/dport are the original direction, the second the reply direction.
    struct Entry {
        struct Tuple {
            var source = "", destination = ""
            var sourcePort: UInt16 = 0, destinationPort: UInt16 = 0
        }

        var state: String
        var original = Tuple()
        var reply = Tuple()

        /// States whose connection can still carry data; TIME_WAIT and CLOSE entries only wait
        /// out their timers.
        var isOpen: Bool { state != "TIME_WAIT" && state != "CLOSE" }

        /// nil for anything but a TCP entry with both tuples.
        init?(_ line: Substring) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 6, fields[2] == "tcp" else { return nil }
            state = String(fields[5])
            var tuples = [Tuple(), Tuple()]
            var current = 0
            var seen: Set<Substring> = []
            for field in fields[6...] {
                guard let equals = field.firstIndex(of: "=") else { continue }
                let key = field[..<equals], value = field[field.index(after: equals)...]
                guard ["src", "dst", "sport", "dport"].contains(key) else { continue }
                if seen.contains(key) {
                    current += 1
                    seen = []
                    guard current < 2 else { break }
                }
                seen.insert(key)
                switch key {
                case "src": tuples[current].source = String(value)
                case "dst": tuples[current].destination = String(value)
                case "sport": tuples[current].sourcePort = UInt16(value) ?? 0
                default: tuples[current].destinationPort = UInt16(value) ?? 0
                }
            }
            guard seen.count == 4, current == 1 else { return nil }
            original = tuples[0]
            reply = tuples[1]
        }
    }
}
