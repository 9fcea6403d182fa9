/// A service's unique `namespace/name`.
///
/// Both halves are restricted to `[A-Za-z0-9._-]` because names are embedded in nft chain and
/// set names and in iptables comments, where other characters would need quoting.
public struct ServiceName: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let namespace: String
    public let name: String

    /// Parses `namespace/name`; `nil` unless both halves are non-empty and use the allowed characters.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy(ServiceName.isValidPart) else { return nil }
        self.namespace = String(parts[0])
        self.name = String(parts[1])
    }

    public init?(namespace: String, name: String) {
        self.init("\(namespace)/\(name)")
    }

    static func isValidPart(_ part: Substring) -> Bool {
        !part.isEmpty && part.count <= 253 && part.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2D || byte == 0x2E || byte == 0x5F
        }
    }

    public var description: String { "\(namespace)/\(name)" }

    public static func < (lhs: ServiceName, rhs: ServiceName) -> Bool { lhs.description < rhs.description }
}
