/// One composed YAML node: a scalar, a list or a mapping, with where it starts in its text.
///
/// What ``YAMLComposer`` builds from libyaml's events, and all the table decoders read. Scalars
/// stay text (no type resolution: `80` and `"80"` are both the text 80, and the decoder asks for
/// the type it needs); ``YAMLScalar/isPlain`` tells a quoted scalar from a plain one, which is
/// what null needs. Aliases are already replaced by the node their anchor names. A value.
struct YAMLNode: Sendable {
    enum Content: Sendable {
        case scalar(YAMLScalar)
        case sequence([YAMLNode])
        /// Keys and values in the order written; duplicate keys are kept, for the decoder to
        /// report where the second one is.
        case mapping([(key: YAMLNode, value: YAMLNode)])
    }

    var content: Content
    /// 1-based line and column of the node's first character.
    var line: Int
    var column: Int

    /// The scalar's text, or nil for a list or a mapping.
    var scalarText: String? {
        guard case .scalar(let scalar) = content else { return nil }
        return scalar.text
    }

    /// The key node written as `name` when this is a mapping that has one (the first, if
    /// written twice); nil otherwise.
    func key(named name: String) -> YAMLNode? {
        guard case .mapping(let pairs) = content else { return nil }
        return pairs.first { $0.key.scalarText == name }?.key
    }
}

/// A YAML scalar's text and whether it was written plain (unquoted, not a block).
struct YAMLScalar: Sendable, Equatable {
    var text: String
    var isPlain: Bool
}
