/// Where a field of a decoded service stands in its source, for issues found after decoding.
struct FieldSource: Hashable, Sendable {
    var location: SourceLocation
    var path: String

    init(_ cursor: YAMLCursor) {
        location = cursor.location
        path = cursor.path
    }
}

/// A service as decoded, with the source of each field so the validator can point at it.
struct DecodedService {
    var service: Service
    var name: FieldSource
    var addresses: [FieldSource]
    var ports: [FieldSource]
    var endpoints: [FieldSource]
}
