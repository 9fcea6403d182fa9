/// A stable 128-bit fingerprint of a wire table.
///
/// Identical tables give identical digests in every process and on every run (unlike `Hasher`),
/// so a digest recorded after an apply tells a later run whether the kernel still holds exactly
/// what Turnout wrote. It is the wrapping sum of one hash per object (the table's identity, each
/// chain with its rules, each set's definition, each element of a non-dynamic set), so a patch
/// updates it in time proportional to the patch: `remove` the old objects, `add` the new ones.
/// Each object's hash is two FNV-1a 64 streams with different offsets. Not cryptographic: it
/// detects drift, not tampering.
public struct WireDigest: Hashable, Sendable, CustomStringConvertible {
    private var first: UInt64 = 0
    private var second: UInt64 = 0

    public init(_ table: WireTable) {
        var identity = ObjectHash(tag: 0xA0)
        identity.feed(table.family)
        identity.feed(table.name)
        combine(identity, adding: true)
        for chain in table.chains { add(chain) }
        for set in table.sets { add(set) }
        // Elements are most of a big table's bytes (270,000 at 10,000 services). The sum does
        // not depend on order, so slices of them are hashed on all cores and the sums added.
        let slices = table.sets.filter { !$0.isDynamic }.flatMap { set in
            stride(from: 0, to: set.elements.count, by: Self.elementsPerSlice).map { start in
                (set, start..<min(start + Self.elementsPerSlice, set.elements.count))
            }
        }
        for sum in slices.concurrentMap({ set, range in Self.sum(of: set.elements[range], in: set.name) }) {
            first &+= sum.first
            second &+= sum.second
        }
    }

    private static let elementsPerSlice = 16_384

    /// The digest contribution of `elements` of the set `name`.
    private static func sum(of elements: ArraySlice<WireElement>, in name: String) -> WireDigest {
        var sum = WireDigest()
        let prefix = ObjectHash(elementsOf: name)  // tag and set name: the same for every element
        for element in elements {
            var hash = prefix
            hash.feed(element)
            sum.combine(hash, adding: true)
        }
        return sum
    }

    private init() {}

    public var description: String {
        String(first, radix: 16).leftPadded(16) + String(second, radix: 16).leftPadded(16)
    }

    /// A chain with its hook and rules.
    public mutating func add(_ chain: WireChain) { combine(ObjectHash(chain), adding: true) }
    public mutating func remove(_ chain: WireChain) { combine(ObjectHash(chain), adding: false) }
    /// A set's definition; its elements are objects of their own.
    public mutating func add(_ set: WireSet) { combine(ObjectHash(set), adding: true) }
    public mutating func remove(_ set: WireSet) { combine(ObjectHash(set), adding: false) }
    public mutating func add(_ element: WireElement, in set: String) { combine(ObjectHash(element, in: set), adding: true) }
    public mutating func remove(_ element: WireElement, in set: String) { combine(ObjectHash(element, in: set), adding: false) }

    private mutating func combine(_ hash: ObjectHash, adding: Bool) {
        if adding {
            first &+= hash.first
            second &+= hash.second
        } else {
            first &-= hash.first
            second &-= hash.second
        }
    }
}

/// The hash of one object of a table, fed field by field.
private struct ObjectHash {
    var first: UInt64 = 0xcbf2_9ce4_8422_2325
    var second: UInt64 = 0x6c62_272e_07bb_0142

    init(tag: UInt8) { mix(tag) }

    init(_ chain: WireChain) {
        self.init(tag: 0xA1)
        feed(chain.name)
        if let hook = chain.hook { feed(hook.type); feed(hook.hook); feed(UInt32(bitPattern: hook.priority)); feed(hook.policy) }
        for rule in chain.rules {
            feed(0xA2)
            feed(rule.userdata)
            for expression in rule.expressions { feed(expression) }
        }
    }

    init(_ set: WireSet) {
        self.init(tag: 0xA3)
        feed(set.name)
        for value in [set.flags, set.keyType, set.keyLength, set.dataType ?? .max, set.dataLength ?? .max] { feed(value) }
        feed(set.timeoutMilliseconds)
        feed(set.capacity.map(UInt64.init))
        feed(set.concatFieldLengths)
        feed(set.userdata)
    }

    init(_ element: WireElement, in set: String) {
        self.init(elementsOf: set)
        feed(element)
    }

    /// The state every element of `set` starts from; `feed` the element to finish it.
    init(elementsOf set: String) {
        self.init(tag: 0xA4)
        feed(set)
    }

    mutating func feed(_ bytes: [UInt8]) {
        feed(UInt32(bytes.count))
        for byte in bytes { mix(byte) }
    }

    mutating func feed(_ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { for byte in $0 { mix(byte) } }
    }

    mutating func feed(_ value: UInt64?) {
        feed(UInt32(truncatingIfNeeded: (value ?? .max) >> 32))
        feed(UInt32(truncatingIfNeeded: value ?? .max))
    }

    /// The same bytes as `feed(Array(text.utf8))`, without the array.
    mutating func feed(_ text: String) {
        feed(UInt32(text.utf8.count))
        for byte in text.utf8 { mix(byte) }
    }

    private mutating func mix(_ byte: UInt8) {
        first = (first ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        second = (second ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 ^ 0x9e37_79b9_7f4a_7c15
    }

    mutating func feed(_ element: WireElement) {
        feed(element.key)
        feed(element.keyEnd ?? [0xFF, 0xFF])
        feed(element.isIntervalEnd ? 1 : 0)
        feed(element.data ?? [0xFF, 0xFF])
        feed(element.verdict.map { UInt32(bitPattern: $0.code) } ?? .max)
        feed(element.verdict?.chain ?? "")
    }

    mutating func feed(_ expression: WireExpression) {
        // The case's own text names it and its scalar attributes; byte arrays print in full, and
        // anonymous sets are fed structurally.
        if case .lookup(.anonymous(let set), let source, let destination, let inverted) = expression {
            feed("lookup-anonymous")
            let definition = ObjectHash(set)
            feed(definition.first)
            feed(definition.second)
            for element in set.elements { feed(element) }
            feed(source)
            feed(destination ?? .max)
            feed(inverted ? 1 : 0)
        } else {
            feed(String(describing: expression))
        }
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
