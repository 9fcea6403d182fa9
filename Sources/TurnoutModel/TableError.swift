/// One problem in a table: where, which field, what is wrong.
public struct TableIssue: Hashable, Sendable, CustomStringConvertible {
    public var location: SourceLocation
    /// The field's path from the document root, e.g. `services[0].endpoints[1].weight`.
    public var field: String
    public var message: String

    public init(location: SourceLocation, field: String, message: String) {
        self.location = location
        self.field = field
        self.message = message
    }

    /// `file:line:column: field: message`, the format compilers use so editors can jump to it.
    public var description: String { "\(location): \(field): \(message)" }
}

/// Every problem found in a table. Thrown by ``TableDecoder``; nothing partial is returned.
public struct TableError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Sorted by location, so the output reads top to bottom through the files.
    public let issues: [TableIssue]

    public init(issues: [TableIssue]) {
        self.issues = issues.sorted { ($0.location, $0.field) < ($1.location, $1.field) }
    }

    public var description: String { issues.map(\.description).joined(separator: "\n") }
}
