extension StringProtocol {
    /// The text without leading and trailing whitespace (newlines included), as Foundation's
    /// `trimmingCharacters(in: .whitespacesAndNewlines)`; the product links no full Foundation.
    public var trimmedWhitespace: String {
        String(drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }

    /// The text without trailing whitespace: a table row whose last cells are padding.
    public var droppingTrailingWhitespace: String {
        var text = String(self)
        while text.last?.isWhitespace == true { text.removeLast() }
        return text
    }
}
