import Dispatch

extension Array where Element: Sendable {
    /// `map(transform)` with the elements transformed on several cores at once, results in
    /// the original order. For a few large, independent pieces of work (lowering each set of a
    /// 10,000-service table); `transform` must not touch shared mutable state. Returns only
    /// when every element is done.
    func concurrentMap<Result: Sendable>(_ transform: @Sendable (Element) -> Result) -> [Result] {
        guard count > 1 else { return map(transform) }
        return [Result](unsafeUninitializedCapacity: count) { buffer, initializedCount in
            // Each iteration initializes only its own slot, and concurrentPerform returns after
            // the last one: no slot is written twice or read before the buffer is handed back.
            nonisolated(unsafe) let slots = buffer
            DispatchQueue.concurrentPerform(iterations: count) { index in
                (slots.baseAddress! + index).initialize(to: transform(self[index]))
            }
            initializedCount = count
        }
    }
}
