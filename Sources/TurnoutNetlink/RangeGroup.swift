/// One service's ranges in a pipapo map (an interval map with a concatenated key): the elements
/// whose key fields before the last (VIP, protocol, port) are the same, and whose last field is a
/// range of `numgen` values.
///
/// A patch handles a pipapo map by group (``TableDelta/Phase``). The kernel refuses overlapping
/// elements, so a service whose split changes within one modulus cannot keep its old ranges beside
/// its new ones: the switchover deletes and adds them in one transaction. Both sets of ranges cover
/// every value drawn (`numgen mod N` against the same N), so a packet that straddles the commit
/// finds an endpoint either way. A split that changes modulus moves to another pick chain and its
/// own map (`NftablesServiceCompiler.endpointRangesMap`), where nothing overlaps: before maps were
/// per modulus, temporary "bridge" ranges had to cover the values only one side drew (999:1 ↔
/// 199:1 under ~10,000 connections/s left SYNs without DNAT within seconds without them).
struct RangeGroup: Hashable {
    var keyPrefix: [UInt8]
    var keyEndPrefix: [UInt8]

    /// The element's group; `nil` for an element that is not a concatenated range.
    init?(of element: WireElement, fields: [UInt8]) {
        guard let keyEnd = element.keyEnd, let last = fields.last, element.key.count == keyEnd.count else { return nil }
        let split = element.key.count - (Int(last) + 3) / 4 * 4  // a key field is padded to 4 bytes on the wire
        guard split >= 0 else { return nil }
        keyPrefix = Array(element.key[..<split])
        keyEndPrefix = Array(keyEnd[..<split])
    }
}
