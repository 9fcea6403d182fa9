import TurnoutModel

/// One component of a set element's key: a value or a closed range of values.
public enum KeyPart: Hashable, Sendable, Comparable {
    case address(IPAddress)
    case transport(TransportProtocol)
    case port(UInt16)
    case integer(UInt32)
    case integerRange(UInt32, UInt32)

    public static func < (lhs: KeyPart, rhs: KeyPart) -> Bool {
        switch (lhs, rhs) {
        case (.address(let a), .address(let b)): a < b
        case (.transport(let a), .transport(let b)): a < b
        case (.port(let a), .port(let b)): a < b
        case (.integer(let a), .integer(let b)): a < b
        case (.integerRange(let a, _), .integerRange(let b, _)): a < b
        case (.integer(let a), .integerRange(let b, _)): a < b
        case (.integerRange(let a, _), .integer(let b)): a < b
        default: lhs.order < rhs.order
        }
    }

    private var order: Int {
        switch self {
        case .address: 0
        case .transport: 1
        case .port: 2
        case .integer, .integerRange: 3
        }
    }
}

/// What a map element maps its key to.
public enum ElementData: Hashable, Sendable {
    case verdict(Verdict)
    /// `address . port`, the target of a `dnat … map`.
    case socket(SocketAddress)
}

/// One element of a set (no data) or map (with data).
public struct SetElement: Hashable, Sendable, Comparable {
    public var key: [KeyPart]
    public var data: ElementData?

    public init(_ key: [KeyPart], _ data: ElementData? = nil) {
        self.key = key
        self.data = data
    }

    public static func < (lhs: SetElement, rhs: SetElement) -> Bool { lhs.key.lexicographicallyPrecedes(rhs.key) }
}

/// The kind of value a map yields.
public enum SetDataType: Hashable, Sendable {
    case verdict
    /// `address . port` of the given family (a DNAT target).
    case socket(IPFamily)
}

/// A named set or map.
///
/// The key is declared by the expressions that fill it (nft's `typeof`), so renderers can print
/// `type` or `typeof` and the tracer knows how to build the key from a packet.
public struct NamedSet: Hashable, Sendable {
    public var name: String
    public var key: [KeyField]
    public var dataType: SetDataType?
    /// Elements may be ranges (`0-8`), required for `numgen` pick ranges.
    public var isInterval: Bool
    /// Filled from the packet path (`update @set`), entries expire after `timeoutSeconds`.
    public var timeoutSeconds: UInt32?
    public var elements: [SetElement]

    public init(name: String, key: [KeyField], dataType: SetDataType? = nil, isInterval: Bool = false,
                timeoutSeconds: UInt32? = nil, elements: [SetElement] = []) {
        self.name = name
        self.key = key
        self.dataType = dataType
        self.isInterval = isInterval
        self.timeoutSeconds = timeoutSeconds
        self.elements = elements
    }

    public var isDynamic: Bool { timeoutSeconds != nil }

    /// How many elements the kernel sizes the set for (nft's `size`): `nil` for interval and
    /// dynamic sets, which keep the kernel's own growth, else `capacity(forElements:)` of the
    /// elements it holds.
    public var capacity: Int? {
        isInterval || isDynamic ? nil : Self.capacity(forElements: elements.count)
    }

    /// The smallest power of two that `count` fills to at most four fifths, and at least
    /// `minimumCapacity`.
    ///
    /// Why a size: without one the kernel keeps a hash set in a resizable rhashtable, and
    /// filling one with 100,000 elements in one transaction spends most of its time growing it
    /// (`rhashtable_insert_slow`: 270 of 500 ms at 10,000 services here). With a size it picks
    /// a fixed hash sized for it. The size is also a hard cap (one more element fails with
    /// ENFILE), so the capacity is a pure function of the element count: a change that crosses
    /// a size class changes the set's definition, and the apply rebuilds the table rather than
    /// patch.
    ///
    /// Why the fifth kept free: a patch adds a map's new keys in its switchover but deletes the
    /// keys that disappear only in its retire (`TableDelta.Phase`), so in between the map holds
    /// both. A full map then refused one service leaving and another joining (ENFILE). The
    /// reserve, at least 205 elements, holds one service's change of pick slots (at most 100,
    /// `WeightedPick.exactSlotLimit`, unless it has one slot per endpoint); a change that would
    /// still overflow it is rebuilt instead of patched (`TableDelta.overflowReason`).
    public static func capacity(forElements count: Int) -> Int {
        var capacity = minimumCapacity
        while capacity * 4 < count * 5 { capacity *= 2 }
        return capacity
    }

    /// Small tables share one size class: a fixed hash of 1,024 costs the kernel 16 KiB of buckets.
    public static let minimumCapacity = 1024
}
