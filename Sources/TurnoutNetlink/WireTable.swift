import Glibc
import TurnoutRules

/// An nf_tables table as the kernel holds it: chains of expression lists, sets of byte-string
/// elements. The netlink encoder sends it, the reader rebuilds it from a dump, and the delta
/// compares two of them; it is the common language of all three.
///
/// Values only (no kernel handles), so a table read back from the kernel equals the table that
/// was written when nothing has drifted. Dynamic sets (filled by the packet path) compare by
/// definition only, never by their elements.
public struct WireTable: Hashable, Sendable {
    /// `NFPROTO_INET`, `NFPROTO_IPV4`, …
    public var family: UInt32
    public var name: String
    /// In dependency order for a fresh create: regular chains may be referenced before their
    /// rules exist, so the encoder adds all chains first, then sets, then rules.
    public var chains: [WireChain]
    public var sets: [WireSet]

    public init(family: UInt32, name: String, chains: [WireChain] = [], sets: [WireSet] = []) {
        self.family = family
        self.name = name
        self.chains = chains
        self.sets = sets
    }

    public func chain(named name: String) -> WireChain? { chains.first { $0.name == name } }
    public func set(named name: String) -> WireSet? { sets.first { $0.name == name } }

    /// Elements over all named, non-dynamic sets.
    public var elementCount: Int { sets.filter { !$0.isDynamic }.reduce(0) { $0 + $1.elements.count } }
    public var ruleCount: Int { chains.reduce(0) { $0 + $1.rules.count } }
}

/// Where a base chain attaches. The corresponding nft syntax is `type nat hook output priority -100`.
public struct WireHook: Hashable, Sendable {
    /// `nat` or `filter`.
    public var type: String
    /// `NF_INET_PRE_ROUTING`, …
    public var hook: UInt32
    public var priority: Int32
    /// `NF_ACCEPT` or `NF_DROP`.
    public var policy: UInt32
}

/// One chain with its rules, in order.
public struct WireChain: Hashable, Sendable {
    public var name: String
    public var hook: WireHook?
    public var rules: [WireRule]
}

/// One rule: expressions evaluated in order, plus nft's user data (the comment).
public struct WireRule: Hashable, Sendable {
    public var expressions: [WireExpression]
    /// The element count the kernel sizes the set for (`NFTA_SET_DESC_SIZE`, nft's `size`), which
    /// is also the most it accepts; `nil` leaves the kernel's resizable default.
    public var capacity: UInt32?
    /// nft's TLV user data; Turnout writes a comment here only when the IR rule has one.
    public var userdata: [UInt8]

    public init(_ expressions: [WireExpression], userdata: [UInt8] = []) {
        self.expressions = expressions
        self.userdata = userdata
    }
}

/// A set or map. The corresponding nft syntax is `set NAME { type …; flags …; elements = {…} }`.
public struct WireSet: Hashable, Sendable {
    public var name: String
    /// `NFT_SET_*` bits (map, interval, concat, anonymous, constant, timeout, eval).
    public var flags: UInt32
    /// nft's datatype id (concatenations packed six bits per field); informational for the kernel,
    /// used by `nft list` to print elements.
    public var keyType: UInt32
    public var keyLength: UInt32
    public var dataType: UInt32?
    /// Absent for verdict maps.
    public var dataLength: UInt32?
    /// Default element timeout for dynamic sets, in milliseconds.
    public var timeoutMilliseconds: UInt64?
    /// Field lengths of a concatenated interval key (`NFTA_SET_DESC_CONCAT`), which selects the
    /// kernel's pipapo backend; empty otherwise.
    public var concatFieldLengths: [UInt8]
    /// The element count the kernel sizes the set for (`NFTA_SET_DESC_SIZE`, nft's `size`), which
    /// is also the most it accepts; `nil` leaves the kernel's resizable default.
    public var capacity: UInt32?
    /// nft's TLV user data (key byte order, `typeof` expressions), so `nft list` prints it well.
    public var userdata: [UInt8]
    /// Kept sorted and unique, so equal sets compare equal.
    public var elements: [WireElement]

    public init(name: String, flags: UInt32, keyType: UInt32, keyLength: UInt32, dataType: UInt32? = nil,
                dataLength: UInt32? = nil, timeoutMilliseconds: UInt64? = nil, capacity: UInt32? = nil,
                concatFieldLengths: [UInt8] = [], userdata: [UInt8] = [], elements: [WireElement] = []) {
        self.name = name
        self.flags = flags
        self.keyType = keyType
        self.keyLength = keyLength
        self.dataType = dataType
        self.dataLength = dataLength
        self.timeoutMilliseconds = timeoutMilliseconds
        self.capacity = capacity
        self.concatFieldLengths = concatFieldLengths
        self.userdata = userdata
        var elements = elements
        elements.sort()
        elements.removeAdjacentDuplicates()
        self.elements = elements
    }

    public var isMap: Bool { flags & WireSet.mapFlag != 0 }
    public var isAnonymous: Bool { flags & WireSet.anonymousFlag != 0 }
    /// Filled by the packet path (`update @set`): its elements are state, not configuration.
    public var isDynamic: Bool { flags & WireSet.timeoutFlag != 0 }
    /// Elements are ranges (rbtree, or pipapo with a concatenated key).
    public var isInterval: Bool { flags & WireSet.intervalFlag != 0 }
    /// Interval with a concatenated key: the kernel keeps it as a pipapo set.
    public var isPipapo: Bool { flags & WireSet.intervalFlag != 0 && flags & WireSet.concatFlag != 0 }

    /// The set without its elements: what must match for elements alone to be patched.
    public var definition: WireSet {
        var copy = self
        copy.elements = []
        return copy
    }

    // The NFT_SET_* flag values (linux/netfilter/nf_tables.h), spelled out so this file needs no C.
    public static let anonymousFlag: UInt32 = 0x1
    public static let constantFlag: UInt32 = 0x2
    public static let intervalFlag: UInt32 = 0x4
    public static let mapFlag: UInt32 = 0x8
    public static let timeoutFlag: UInt32 = 0x10
    public static let evalFlag: UInt32 = 0x20
    public static let concatFlag: UInt32 = 0x80
}

/// One set element: a key (or key range) and, in a map, its data or verdict.
public struct WireElement: Hashable, Sendable, Comparable {
    public var key: [UInt8]
    /// The range end of a concatenated interval element (pipapo); `nil` for single keys.
    public var keyEnd: [UInt8]?
    /// `NFT_SET_ELEM_INTERVAL_END` marks the first key after a range in rbtree interval sets.
    public var isIntervalEnd: Bool
    public var data: [UInt8]?
    public var verdict: WireVerdict?

    public init(key: [UInt8], keyEnd: [UInt8]? = nil, isIntervalEnd: Bool = false, data: [UInt8]? = nil, verdict: WireVerdict? = nil) {
        self.key = key
        self.keyEnd = keyEnd
        self.isIntervalEnd = isIntervalEnd
        self.data = data
        self.verdict = verdict
    }

    /// By key bytes, then range end: the order sets are kept in. Compared with `memcmp`, as
    /// sorting 270,000 elements spends most of its time here.
    public static func < (lhs: WireElement, rhs: WireElement) -> Bool {
        let byKey = compareBytes(lhs.key, rhs.key)
        if byKey != 0 { return byKey < 0 }
        return compareBytes(lhs.keyEnd ?? [], rhs.keyEnd ?? []) < 0
    }

    /// Lexicographic three-way comparison: negative, zero or positive.
    private static func compareBytes(_ lhs: [UInt8], _ rhs: [UInt8]) -> Int {
        lhs.withUnsafeBufferPointer { left in
            rhs.withUnsafeBufferPointer { right in
                let common = Swift.min(left.count, right.count)
                let order = common == 0 ? 0 : Int(memcmp(left.baseAddress!, right.baseAddress!, common))
                return order != 0 ? order : left.count - right.count
            }
        }
    }
}

/// A verdict as the kernel encodes it: `NF_ACCEPT`, `NFT_JUMP`, `NFT_GOTO`, … and the target chain.
public struct WireVerdict: Hashable, Sendable {
    public var code: Int32
    public var chain: String?

    public init(code: Int32, chain: String? = nil) {
        self.code = code
        self.chain = chain
    }

    // linux/netfilter/nf_tables.h and linux/netfilter.h.
    public static let acceptCode: Int32 = 1
    public static let dropCode: Int32 = 0
    public static let continueCode: Int32 = -1
    public static let returnCode: Int32 = -5
    public static let jumpCode: Int32 = -3
    public static let gotoCode: Int32 = -4
}
