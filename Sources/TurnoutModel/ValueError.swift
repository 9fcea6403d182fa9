/// A message about one value that could not be read (the caller adds where it came from).
public struct ValueError: Error, Hashable, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }
}
