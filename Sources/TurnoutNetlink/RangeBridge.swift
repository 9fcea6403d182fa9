/// Temporary ranges that keep a pipapo map (interval map with a concatenated key) covering every
/// value old or new rules draw while a patch switches a service's ranges.
///
/// The split of a service with more than 100 values (999:1) lives in such a map as one range of
/// `numgen` values per endpoint under the service's key (VIP, protocol, port: the *group*). Old
/// and new ranges overlap, so the switchover must delete the old ones as it adds the new, and
/// two things then break a packet that crosses the commit:
/// - a packet that entered the NAT chain before the commit still draws with the old modulus
///   (`mod 1000`) but looks up the new ranges (`mod 200` covers 0–199);
/// - the kernel makes a pipapo set's new elements visible a moment after the generation flips
///   (it swaps in the set's working copy when the set's commit step runs), and a hash map's
///   elements at the flip. A packet that reads the new `service-ips` element in that moment
///   draws with the new modulus against the old ranges.
///
/// Measured here (one namespace, ~10,000 connections/s, 999:1 ↔ 199:1 as fast as apply goes),
/// such SYNs left without DNAT within seconds. So, for a group that has ranges before and after:
/// the values only its new ranges cover are added in the prepare phase, pointing at an old
/// endpoint, and deleted in the switchover; the values only its old ranges cover are added in
/// the switchover, pointing at a new endpoint, and deleted in the retire phase.
///
/// Values the group's unchanged elements cover are never bridged: those elements are in the map
/// before and after, so they overlap neither the removed nor the added ranges, and bridging only
/// what removed (or added) ranges cover keeps clear of them (the kernel refuses overlapping
/// elements).
struct RangeBridge {
    /// The key fields before the last, of key and key end: one service's ranges in the map.
    struct Group: Hashable {
        var keyPrefix: [UInt8]
        var keyEndPrefix: [UInt8]
    }

    /// The element's group; `nil` for an element that is not a concatenated range.
    static func group(of element: WireElement, fields: [UInt8]) -> Group? {
        guard let keyEnd = element.keyEnd, let last = fields.last, element.key.count == keyEnd.count else { return nil }
        let split = element.key.count - paddedLength(last)
        guard split >= 0 else { return nil }
        return Group(keyPrefix: Array(element.key[..<split]), keyEndPrefix: Array(keyEnd[..<split]))
    }

    /// Ranges covering the values of `bridged` that no element of `covering` in the same group
    /// covers, each pointing where the `covering` element with the highest values points. Groups
    /// with no `covering` element get none (they are wholly added or wholly removed).
    static func elements(bridging bridged: [WireElement], by covering: [WireElement], fields: [UInt8]) -> [WireElement] {
        guard let last = fields.last, last <= 8, !bridged.isEmpty, !covering.isEmpty else { return [] }
        let width = Int(last), padded = paddedLength(last)
        let coveringByGroup = Dictionary(grouping: covering.compactMap { Bounded($0, fields: fields) }, by: \.group)
        var bridges: [WireElement] = []
        for (group, ranges) in Dictionary(grouping: bridged.compactMap { Bounded($0, fields: fields) }, by: \.group) {
            guard let covers = coveringByGroup[group], let target = covers.max(by: { $0.values.upperBound < $1.values.upperBound }) else { continue }
            for gap in uncovered(ranges.map(\.values), by: covers.map(\.values)) {
                bridges.append(WireElement(key: group.keyPrefix + bytes(gap.lowerBound, width: width, padded: padded),
                                           keyEnd: group.keyEndPrefix + bytes(gap.upperBound, width: width, padded: padded),
                                           data: target.element.data, verdict: target.element.verdict))
            }
        }
        return bridges.sorted()
    }

    /// `ranges` minus the union of `covering`, as disjoint ranges in ascending order, adjacent
    /// pieces joined (one element instead of two).
    static func uncovered(_ ranges: [ClosedRange<UInt64>], by covering: [ClosedRange<UInt64>]) -> [ClosedRange<UInt64>] {
        var pieces = ranges
        for cover in covering {
            pieces = pieces.flatMap { piece -> [ClosedRange<UInt64>] in
                guard piece.overlaps(cover) else { return [piece] }
                var left: [ClosedRange<UInt64>] = []
                if piece.lowerBound < cover.lowerBound { left.append(piece.lowerBound...(cover.lowerBound - 1)) }
                if piece.upperBound > cover.upperBound { left.append((cover.upperBound + 1)...piece.upperBound) }
                return left
            }
        }
        var joined: [ClosedRange<UInt64>] = []
        for piece in pieces.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let previous = joined.last, previous.upperBound < UInt64.max, previous.upperBound + 1 >= piece.lowerBound {
                joined[joined.count - 1] = previous.lowerBound...max(previous.upperBound, piece.upperBound)
            } else {
                joined.append(piece)
            }
        }
        return joined
    }

    /// A concatenated key field's length on the wire: padded to 4 bytes.
    private static func paddedLength(_ field: UInt8) -> Int { (Int(field) + 3) / 4 * 4 }

    /// An element with its last field read as a range of numbers.
    private struct Bounded {
        var element: WireElement
        var group: Group
        var values: ClosedRange<UInt64>

        init?(_ element: WireElement, fields: [UInt8]) {
            guard let group = RangeBridge.group(of: element, fields: fields), let keyEnd = element.keyEnd, let last = fields.last else { return nil }
            let split = group.keyPrefix.count, width = Int(last)
            let lower = RangeBridge.number(element.key[split..<(split + width)])
            let upper = RangeBridge.number(keyEnd[split..<(split + width)])
            guard lower <= upper else { return nil }
            self.element = element
            self.group = group
            values = lower...upper
        }
    }

    // Key fields of a pipapo set compare as big-endian numbers (the lowering writes them so),
    // followed by zero padding.
    private static func number(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }

    private static func bytes(_ value: UInt64, width: Int, padded: Int) -> [UInt8] {
        (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64(width - 1 - $0))) } + Array(repeating: 0, count: padded - width)
    }
}
