import TurnoutModel

/// The weighted choice among a frontend's serving endpoints, reduced by the weights' gcd.
///
/// nft draws `numgen random mod total` and maps each endpoint to a contiguous range of that
/// many values; iptables walks the same endpoints as a cascade of `statistic` probabilities.
/// Reducing by the gcd (90/10 → 9/1) keeps moduli small, so services with proportional weights
/// share one pick chain.
///
/// nft can hold the draw's values two ways. One element per value in a hash map
/// (``usesExactSlots``) costs O(1) to look up, add and delete. Ranges need an interval map with
/// a concatenated key, which the kernel keeps as a pipapo set, and pipapo's cost grows with its
/// size: at 100,000 elements one deletion took 70–100 ms here and the per-packet lookup was
/// measurably slower. So exact slots are the rule; ranges are only for splits that would need
/// more than ``exactSlotLimit`` values and more values than endpoints (a 999:1 split).
struct WeightedPick: Hashable {
    /// Every whole-percent split (99:1 reduces to 100 values) still gets exact slots.
    static let exactSlotLimit: UInt32 = 100

    struct Slot: Hashable {
        var target: SocketAddress
        var range: ClosedRange<UInt32>

        /// The slot's numbers as an nft key component: `9` or `0-8`.
        var keyPart: KeyPart {
            range.count == 1 ? .integer(range.lowerBound) : .integerRange(range.lowerBound, range.upperBound)
        }
    }

    let slots: [Slot]
    let total: UInt32

    /// One map element per drawn value, rather than one range per endpoint.
    var usesExactSlots: Bool { total <= Self.exactSlotLimit || total == UInt32(slots.count) }

    /// The slot's key parts as map elements: one per value with exact slots, else its range.
    func keyParts(of slot: Slot) -> [KeyPart] {
        usesExactSlots ? slot.range.map { .integer($0) } : [slot.keyPart]
    }

    /// `nil` when no endpoint of the frontend's family has a weight above zero.
    init?(service: Service, port: ServicePort, family: IPFamily) {
        let serving = service.servingEndpoints(of: family)
        guard !serving.isEmpty else { return nil }
        let divisor = serving.map(\.weight).reduce(0) { WeightedPick.gcd($0, $1) }
        var next: UInt32 = 0
        slots = serving.map { endpoint in
            let share = endpoint.weight / divisor
            defer { next += share }
            return Slot(target: SocketAddress(address: endpoint.address, port: endpoint.targetPort(for: port)),
                        range: next...(next + share - 1))
        }
        total = next
    }

    /// iptables' cascade: slot i is taken with probability wᵢ / Σⱼ≥ᵢ wⱼ; the last one always.
    var cascade: [(slot: Slot, probability: Probability?)] {
        var remaining = total
        return slots.enumerated().map { index, slot in
            let weight = UInt32(slot.range.count)
            defer { remaining -= weight }
            return (slot, index == slots.count - 1 ? nil : Probability(UInt64(weight), UInt64(remaining)))
        }
    }

    private static func gcd(_ a: UInt32, _ b: UInt32) -> UInt32 {
        var (a, b) = (a, b)
        while b != 0 { (a, b) = (b, a % b) }
        return a
    }
}

/// One VIP:port of a service, in one family: the unit every compiler dispatches on.
struct Frontend: Hashable {
    var service: Service
    var address: IPAddress
    var port: ServicePort

    var family: IPFamily { address.family }
    /// `shop/api:http`, for comments and trace output.
    var label: String { "\(service.name):\(port.label)" }

    /// Every frontend of the table: services by name, then ports and addresses in table order.
    static func all(in table: ServiceTable) -> [Frontend] {
        table.services.flatMap { service in
            service.ports.flatMap { port in
                service.addresses.map { Frontend(service: service, address: $0, port: port) }
            }
        }
    }
}
