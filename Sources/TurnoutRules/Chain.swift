/// The netfilter hooks a base chain can attach to.
public enum Hook: String, Hashable, Sendable, CaseIterable {
    case prerouting
    case input
    case forward
    case output
    case postrouting
}

/// The kind of base chain: `nat` chains see only a connection's first packet and may rewrite it.
public enum ChainType: String, Hashable, Sendable {
    case filter
    case nat
}

/// Where and when a base chain runs. Lower priority runs first within a hook.
public struct BaseChainSpec: Hashable, Sendable {
    public var type: ChainType
    public var hook: Hook
    public var priority: Int32

    public init(type: ChainType, hook: Hook, priority: Int32) {
        self.type = type
        self.hook = hook
        self.priority = priority
    }
}

/// A chain: an ordered list of rules, optionally attached to a hook (a base chain).
public struct Chain: Hashable, Sendable {
    public var name: String
    /// Set for base chains; `nil` for chains reached only by jump, goto or a verdict map.
    public var base: BaseChainSpec?
    /// iptables' built-in chains (`PREROUTING`, …): Turnout adds jump rules to them but never
    /// declares, flushes or deletes them.
    public var isBuiltin: Bool
    public var rules: [Rule]

    public init(name: String, base: BaseChainSpec? = nil, isBuiltin: Bool = false, rules: [Rule] = []) {
        self.name = name
        self.base = base
        self.isBuiltin = isBuiltin
        self.rules = rules
    }
}
