extension Array where Element: Equatable {
    /// The array with each run of equal neighbours reduced to one element: on a sorted array,
    /// its distinct elements in order. One pass and no hashing, which is why sorted set
    /// elements are deduplicated this way rather than through a `Set`.
    public func removingAdjacentDuplicates() -> [Element] {
        var result = self
        result.removeAdjacentDuplicates()
        return result
    }

    /// Removes each run of equal neighbours but its first element, in place. Kept elements are
    /// moved, not copied, and an array without duplicates is only read.
    public mutating func removeAdjacentDuplicates() {
        guard count > 1 else { return }
        var last = 0
        while last + 1 < count && self[last] != self[last + 1] { last += 1 }
        guard last + 1 < count else { return }  // no neighbours are equal
        withUnsafeMutableBufferPointer { buffer in
            for index in (last + 2)..<buffer.count where buffer[index] != buffer[last] {
                last += 1
                buffer.swapAt(last, index)
            }
        }
        removeLast(count - last - 1)
    }
}
