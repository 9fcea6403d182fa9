/// The changes that turn an installed table into a desired one, as few kernel objects as possible.
///
/// Map and set elements are patched one by one, chains whose rules changed are flushed and
/// refilled, new chains and sets are added and stale ones deleted. A change the kernel cannot
/// take in place (a base chain's hook, a set's key or flags) makes the delta a rebuild instead.
/// Cost follows the size of the change, not of the table: one endpoint's weight is a handful of
/// messages at 10 or 10,000 services.
public struct TableDelta: Sendable {
    public enum Plan: Sendable, Equatable {
        case unchanged
        /// Nothing installed: create everything.
        case create
        /// Replace the whole table in one transaction (`add; delete; add …`).
        case rebuild(reason: String)
        /// Patch in place.
        case patch
    }

    public var plan: Plan
    /// The table to create or rebuild. For a patch only its family, name and set kinds are read,
    /// so a patch computed elsewhere may pass the table's skeleton (sets without elements); it
    /// must declare every set the patch's element changes touch, the maps of pick chains included
    /// (`ServiceLowering.skeleton(with:)`): a set it does not declare is switched over whole,
    /// which would delete keys old rules still draw before the retire.
    public let desired: WireTable
    var addedChains: [WireChain] = []
    var changedChains: [WireChain] = []
    var removedChains: [String] = []
    var addedSets: [WireSet] = []
    var removedSets: [WireSet] = []
    public private(set) var elementChanges: [ElementChange] = []
    /// Each element change split by phase (``Phase``), in the order of `elementChanges`;
    /// classified once, when the delta is made.
    private var phased: [PhasedChange] = []

    /// One element change as the phases send it.
    private struct PhasedChange {
        /// Added in the prepare phase: elements nothing reaches before the switchover.
        var prepared: [WireElement] = []
        /// Deleted in the switchover, before its additions.
        var switchedOut: [WireElement] = []
        /// Added in the switchover.
        var switchedIn: [WireElement] = []
        /// Deleted in the retire phase, once no rule draws them.
        var retired: [WireElement] = []
    }

    /// One set's elements to delete and to add.
    public struct ElementChange: Sendable {
        public var set: String
        public var removed: [WireElement]
        public var added: [WireElement]

        public init(set: String, removed: [WireElement], added: [WireElement]) {
            self.set = set
            self.removed = removed
            self.added = added
        }
    }

    /// A patch computed by the caller (a long-lived backend that knows which services changed),
    /// sent in the same safe order as a computed one; `.unchanged` when it changes nothing.
    public init(patching skeleton: WireTable, addedChains: [WireChain], changedChains: [WireChain], removedChains: [String],
                addedSets: [WireSet], removedSets: [WireSet], elementChanges: [ElementChange]) {
        desired = skeleton
        self.addedChains = addedChains
        self.changedChains = changedChains
        self.removedChains = removedChains
        self.addedSets = addedSets
        self.removedSets = removedSets
        self.elementChanges = elementChanges.filter { !$0.removed.isEmpty || !$0.added.isEmpty }
        let empty = addedChains.isEmpty && changedChains.isEmpty && removedChains.isEmpty && addedSets.isEmpty
            && removedSets.isEmpty && self.elementChanges.isEmpty
        plan = empty ? .unchanged : .patch
        phased = self.elementChanges.map(phases(of:))
    }

    /// One line per changed object, for people: `map endpoint-picks4-mod10: -2 +2 elements`.
    public var changes: [String] {
        switch plan {
        case .unchanged: return []
        case .create: return ["create table \(desired.name): \(desired.chains.count) chains, \(desired.sets.count) sets, \(desired.elementCount) elements"]
        case .rebuild(let reason):
            return ["rebuild table \(desired.name) (\(reason)): \(desired.chains.count) chains, \(desired.sets.count) sets, \(desired.elementCount) elements, "
                + "with a copy (\(Self.bridgeName(of: desired.name))) beside it while switching"]
        case .patch:
            var lines: [String] = []
            lines += addedChains.map { "add chain \($0.name) (\($0.rules.count) rules)" }
            lines += changedChains.map { "replace rules of chain \($0.name) (\($0.rules.count) rules)" }
            lines += removedChains.map { "delete chain \($0)" }
            lines += addedSets.map { "add \($0.isMap ? "map" : "set") \($0.name) (\($0.elements.count) elements)" }
            lines += removedSets.map { "delete \($0.isMap ? "map" : "set") \($0.name)" }
            lines += elementChanges.map { change in
                "\(desired.set(named: change.set)?.isMap == true ? "map" : "set") \(change.set): -\(change.removed.count) +\(change.added.count) elements"
            }
            return lines
        }
    }

    /// Compares `installed` (read back, or what was last written) with `desired`.
    public init(installed: WireTable?, desired: WireTable) {
        self.desired = desired
        guard let installed else { plan = .create; return }
        guard installed != desired else { plan = .unchanged; return }
        plan = .patch

        let installedChains = Dictionary(uniqueKeysWithValues: installed.chains.map { ($0.name, $0) })
        let desiredChainNames = Set(desired.chains.map(\.name))
        for chain in desired.chains {
            guard let current = installedChains[chain.name] else { addedChains.append(chain); continue }
            if current.hook != chain.hook {
                plan = .rebuild(reason: "chain \(chain.name) changes its hook")
                return
            }
            if current.rules != chain.rules { changedChains.append(chain) }
        }
        removedChains = installed.chains.map(\.name).filter { !desiredChainNames.contains($0) }

        let installedSets = Dictionary(uniqueKeysWithValues: installed.sets.map { ($0.name, $0) })
        let desiredSetNames = Set(desired.sets.map(\.name))
        for set in desired.sets {
            guard let current = installedSets[set.name] else { addedSets.append(set); continue }
            if current.definition != set.definition {
                plan = .rebuild(reason: "set \(set.name) changes its definition")
                return
            }
            if set.isDynamic || current.elements == set.elements { continue }
            let before = Set(current.elements)
            let after = Set(set.elements)
            let removed = current.elements.filter { !after.contains($0) }
            let added = set.elements.filter { !before.contains($0) }
            elementChanges.append(ElementChange(set: set.name, removed: removed, added: added))
        }
        removedSets = installed.sets.filter { !desiredSetNames.contains($0.name) }

        let pipapoDeletions = elementChanges.compactMap { change -> (removed: Int, setSize: Int)? in
            guard let set = installedSets[change.set], set.isPipapo else { return nil }
            return (change.removed.count, set.elements.count)
        }
        if let reason = Self.rebuildReason(pipapoDeletions: pipapoDeletions, tableElements: desired.elementCount) {
            plan = .rebuild(reason: reason)
            return
        }
        phased = elementChanges.map(phases(of:))
        if let reason = overflowReason(installed: { name in
            installedSets[name].flatMap { set in set.capacity.map { (set.elements.count, Int($0)) } }
        }) {
            plan = .rebuild(reason: reason)
        }
    }

    /// Why this patch would overfill a sized set, as a rebuild reason; `nil` when every set
    /// fits. `installed` gives a set's element count and size (nft's `size`) before the patch,
    /// `nil` for a set without a size or one the patch adds.
    ///
    /// A size is a hard cap: the kernel refuses one element more with ENFILE, counting the
    /// elements deleted earlier in the same transaction as free. A map's keys that disappear
    /// stay until the retire while its new keys arrive in the prepare or the switchover, so a
    /// map can overflow in between even when it ends no fuller (services leaving and others
    /// joining). `NamedSet.capacity(forElements:)` keeps a fifth free for this; a batch larger
    /// than that reserve gets a rebuild, which fills fresh sets.
    public func overflowReason(installed: (String) -> (count: Int, capacity: Int)?) -> String? {
        guard case .patch = plan else { return nil }
        for (change, phased) in zip(elementChanges, phased) {
            guard let (count, capacity) = installed(change.set) else { continue }
            let afterPrepare = count + phased.prepared.count
            let peak = max(afterPrepare, afterPrepare - phased.switchedOut.count + phased.switchedIn.count)
            if peak > capacity {
                return "\(change.set) would hold \(peak) elements before the retire, over its size \(capacity)"
            }
        }
        return nil
    }

    /// Why a patch with these deletions from pipapo sets should be a rebuild instead, or `nil`.
    public static func rebuildReason(pipapoDeletions: [(removed: Int, setSize: Int)], tableElements: Int) -> String? {
        let cost = pipapoDeletions.reduce(0) { $0 + $1.removed * $1.setSize }
        guard cost > rebuildCostPerElement * max(tableElements, 1) else { return nil }
        return "deleting \(pipapoDeletions.reduce(0) { $0 + $1.removed }) elements from interval maps costs more than rebuilding the table"
    }

    /// The kernel's cost model behind choosing a rebuild over a patch, in units of one element
    /// visited. A pipapo set (interval + concatenated key) rewrites its lookup tables on every
    /// deletion, so one deletion costs about one unit per element already in the set (measured
    /// here: 70–100 ms per deletion at 100,000 elements). Loading a whole table costs about 16
    /// units per element (10,000 services × 10 endpoints: ~1.5 s). Patching 90,000 deletions
    /// out of a 100,000-element pipapo set took 183 s; the rebuild it now gets takes ~1.5 s.
    static let rebuildCostPerElement = 16

    /// The transactions a delta is sent in, in order, each one atomic.
    ///
    /// One transaction is not enough for packets in flight. The kernel picks a packet's rules by
    /// the generation current when the packet enters a base chain, but each set lookup reads the
    /// generation current at the lookup, so a packet that straddles a commit runs the old rules
    /// against the new elements. Measured here (one namespace, 10,000 connections/s to a VIP,
    /// the weights switched 9:1 ↔ 2:1 by `turnout apply` in a loop, one transaction each): 4
    /// commits in 1,434 let a SYN through without DNAT, and the conntrack entry it left kept that client
    /// port's later SYNs from being translated too. Two things break such a packet: a map
    /// element pointing at a chain created in the same commit (the chain is empty in the old
    /// generation) and a key the old rules still draw (`numgen mod 10` with only 3 slots left).
    /// So a patch is sent as
    /// - ``prepare``: new sets and new chains with their rules, which nothing reaches yet;
    /// - ``switchover``: every element change and rule change that redirects traffic; map keys
    ///   that disappear stay, so old rules still find an endpoint;
    /// - ``retire``: those keys, then stale chains and sets, which nothing reaches any more.
    ///
    /// A create is one ``switchover``. A rebuild cannot be split that way (it deletes and adds
    /// the whole table), and a packet that crossed its commit inside the old table's chains
    /// could leave untranslated too: measured, 4 SYNs in 1,312 rebuilds under ~10,000
    /// connections/s (the kernel path was not traced; the old table's maps are deleted in that
    /// commit, and deleted map elements are inactive in the new generation). But NAT tries every
    /// NAT base chain of a hook in turn until one translates the packet, so a rebuild is
    /// - ``prepare``: the desired table under another name (``bridgeName(of:)``), whose chains
    ///   translate what falls through the old table's (they hook in after them);
    /// - ``switchover``: the table replaced in one transaction; what falls through its old
    ///   chains, or its new ones before the commit, the copy translates;
    /// - ``retire``: the copy deleted; what falls through it, the new table translates.
    ///
    /// Every pick chain has maps of its own (one modulus each), so a service whose modulus
    /// changes leaves one map and enters another: the old map keeps its slots until ``retire``;
    /// the new one gets them in ``switchover`` (a hash map, looked up only after the switchover's
    /// `service-ips` element), in ``prepare`` (an interval map), or with the map itself when the
    /// map is new and the delta compares whole tables. Interval
    /// maps (splits of more than 100 values) cannot keep a service's old ranges beside new ones
    /// of the same modulus, which overlap them; both cover every value drawn, so the switchover
    /// replaces them in one step (``RangeGroup``).
    public enum Phase: Sendable {
        case prepare, switchover, retire
    }

    /// The phases that have something to send, in order; empty when unchanged.
    public var phases: [Phase] {
        switch plan {
        case .unchanged: return []
        case .create: return [.switchover]
        case .rebuild: return [.prepare, .switchover, .retire]
        case .patch:
            var phases: [Phase] = []
            if !addedChains.isEmpty || !addedSets.isEmpty || phased.contains(where: { !$0.prepared.isEmpty }) { phases.append(.prepare) }
            if !changedChains.isEmpty || phased.contains(where: { !$0.switchedOut.isEmpty || !$0.switchedIn.isEmpty }) {
                phases.append(.switchover)
            }
            if phased.contains(where: { !$0.retired.isEmpty }) || !removedChains.isEmpty || !removedSets.isEmpty {
                phases.append(.retire)
            }
            return phases
        }
    }

    /// A change split by phase.
    /// - A set (and an rbtree interval set) switches every element over.
    /// - A map switches over the keys added again with other data; keys that disappear wait for
    ///   ``Phase/retire``, once no rule draws them.
    /// - A pipapo map works by service (``RangeGroup``): a service whose ranges are all new
    ///   gets them in ``Phase/prepare`` (the kernel shows a pipapo map's new elements a moment
    ///   after the generation flips, later than the hash map that leads to them), a service
    ///   that leaves keeps its ranges until the retire, and a service whose ranges change
    ///   (within one modulus, so old and new both cover every value drawn) switches them over.
    private func phases(of change: ElementChange) -> PhasedChange {
        guard let set = desired.set(named: change.set), set.isMap, !set.isInterval || set.isPipapo else {
            return PhasedChange(switchedOut: change.removed, switchedIn: change.added)
        }
        var phased = PhasedChange()
        guard set.isPipapo else {
            let readded = Set(change.added.map(\.key))
            for element in change.removed {
                if readded.contains(element.key) { phased.switchedOut.append(element) } else { phased.retired.append(element) }
            }
            phased.switchedIn = change.added
            return phased
        }
        let fields = set.concatFieldLengths
        let before = Set(change.removed.compactMap { RangeGroup(of: $0, fields: fields) })
        let after = Set(change.added.compactMap { RangeGroup(of: $0, fields: fields) })
        for element in change.removed {
            if let group = RangeGroup(of: element, fields: fields), !after.contains(group) {
                phased.retired.append(element)
            } else {
                phased.switchedOut.append(element)
            }
        }
        for element in change.added {
            if let group = RangeGroup(of: element, fields: fields), !before.contains(group) {
                phased.prepared.append(element)
            } else {
                phased.switchedIn.append(element)
            }
        }
        return phased
    }

    /// Appends one phase's messages to `batch`, in an order the kernel accepts: new chains
    /// before anything can jump to them, element removals before additions (a changed element is
    /// both), rules after the sets they look up, deletions last and references before referents.
    public func append(_ phase: Phase, to batch: NetlinkBatch) {
        let family = desired.family
        let table = desired.name
        switch (plan, phase) {
        case (.unchanged, _):
            return
        case (.create, .switchover):
            appendWholeTable(named: table, replacing: false, to: batch)
        case (.rebuild, .prepare):
            appendWholeTable(named: Self.bridgeName(of: table), replacing: true, to: batch)
        case (.rebuild, .switchover):
            appendWholeTable(named: table, replacing: true, to: batch)
        case (.rebuild, .retire):
            TableRemoval.append(family: family, name: Self.bridgeName(of: table), to: batch)
        case (.create, _):
            return
        case (.patch, .prepare):
            appendObjects(chains: addedChains, sets: addedSets, table: table, to: batch)
            appendElementChanges(of: .prepare, to: batch)
        case (.patch, .switchover):
            appendElementChanges(of: .switchover, to: batch)
            for chain in changedChains {
                ObjectEncoding.flushChain(batch, family: family, table: table, name: chain.name)
                addRules(of: chain, to: batch)
            }
        case (.patch, .retire):
            appendElementChanges(of: .retire, to: batch)
            // Rules of stale chains may jump to other stale chains or use stale sets: empty them
            // all before deleting any.
            for name in removedChains { ObjectEncoding.flushChain(batch, family: family, table: table, name: name) }
            for name in removedChains { ObjectEncoding.deleteChain(batch, family: family, table: table, name: name) }
            for set in removedSets { ObjectEncoding.deleteSet(batch, family: family, table: table, name: set.name) }
        }
    }

    /// `desired` under `name`: `add table` (after `delete table` when `replacing`, which then
    /// must follow an `add table` so that it deletes whether or not the table exists), then
    /// chains, sets, rules and elements.
    private func appendWholeTable(named name: String, replacing: Bool, to batch: NetlinkBatch) {
        let family = desired.family
        ObjectEncoding.addTable(batch, family: family, name: name)
        if replacing {
            ObjectEncoding.deleteTable(batch, family: family, name: name)
            ObjectEncoding.addTable(batch, family: family, name: name)
        }
        appendObjects(chains: desired.chains, sets: desired.sets, table: name, to: batch)
    }

    /// New chains and sets of `table` with their rules and elements, in the order the kernel
    /// checks least: chains (so rules may jump to any of them), sets without elements, rules,
    /// then elements. Binding a map to a rule walks every element already in it
    /// (nf_tables_bind_set), once per chain that looks it up; an empty map costs nothing.
    private func appendObjects(chains: [WireChain], sets: [WireSet], table: String, to batch: NetlinkBatch) {
        let family = desired.family
        for chain in chains { ObjectEncoding.addChain(batch, family: family, table: table, chain) }
        for set in sets { ObjectEncoding.addSet(batch, family: family, table: table, set, id: batch.makeSetID(), withElements: false) }
        for chain in chains { addRules(of: chain, to: batch, table: table) }
        for set in sets where !set.elements.isEmpty {
            ObjectEncoding.addElements(batch, family: family, table: table, set: set.name, set.elements)
        }
    }

    /// The table a rebuild of `table` stands up beside it for packets in flight (``Phase``):
    /// `turnout-bridge` for `turnout`.
    public static func bridgeName(of table: String) -> String { "\(table)-bridge" }

    /// The element deletions and additions one phase of a patch sends, set by set; empty for a
    /// create or rebuild, which send every set whole.
    public func elementChanges(in phase: Phase) -> [ElementChange] {
        guard case .patch = plan else { return [] }
        return zip(elementChanges, phased).compactMap { change, phased -> ElementChange? in
            let removed: [WireElement], added: [WireElement]
            switch phase {
            case .prepare: (removed, added) = ([], phased.prepared)
            case .switchover: (removed, added) = (phased.switchedOut, phased.switchedIn)
            case .retire: (removed, added) = (phased.retired, [])
            }
            return removed.isEmpty && added.isEmpty ? nil : ElementChange(set: change.set, removed: removed, added: added)
        }
    }

    /// A phase's element changes: every deletion before any addition, as a changed element is
    /// both and a service's new ranges may overlap the ones deleted beside them.
    private func appendElementChanges(of phase: Phase, to batch: NetlinkBatch) {
        let changes = elementChanges(in: phase)
        for change in changes where !change.removed.isEmpty {
            ObjectEncoding.deleteElements(batch, family: desired.family, table: desired.name, set: change.set, change.removed)
        }
        for change in changes where !change.added.isEmpty {
            ObjectEncoding.addElements(batch, family: desired.family, table: desired.name, set: change.set, change.added)
        }
    }

    /// Undoes ``Phase/prepare`` when the switchover after it was refused. For a rebuild, the
    /// copy is deleted. For a patch, the elements it added to maps that stay are deleted (an
    /// added map goes whole, with its elements), the added chains emptied (releasing the sets
    /// their rules look up), then the added sets deleted (releasing the chains their verdicts
    /// name), then the chains. Nothing reached them in between.
    public func appendUndoingPrepare(to batch: NetlinkBatch) {
        if case .rebuild = plan { TableRemoval.append(family: desired.family, name: Self.bridgeName(of: desired.name), to: batch) }
        guard case .patch = plan else { return }
        let added = Set(addedSets.map(\.name))
        for change in elementChanges(in: .prepare) where !added.contains(change.set) {
            ObjectEncoding.deleteElements(batch, family: desired.family, table: desired.name, set: change.set, change.added)
        }
        for chain in addedChains { ObjectEncoding.flushChain(batch, family: desired.family, table: desired.name, name: chain.name) }
        for set in addedSets { ObjectEncoding.deleteSet(batch, family: desired.family, table: desired.name, name: set.name) }
        for chain in addedChains { ObjectEncoding.deleteChain(batch, family: desired.family, table: desired.name, name: chain.name) }
    }

    /// Appends every phase to one `batch`: a single transaction, for callers that measure or
    /// check one batch (a create is one phase anyway). Not safe for packets in flight when it
    /// patches or rebuilds (see ``Phase``); a rebuild's copy is then added and deleted in vain.
    public func append(to batch: NetlinkBatch) {
        for phase in phases { append(phase, to: batch) }
    }

    private func addRules(of chain: WireChain, to batch: NetlinkBatch, table: String? = nil) {
        for (index, rule) in chain.rules.enumerated() {
            ObjectEncoding.addRule(batch, family: desired.family, table: table ?? desired.name, chain: chain.name, rule, index: index)
        }
    }
}

/// Deleting a table: what `flush` sends.
public enum TableRemoval {
    /// `add table` then `delete table` in one batch: deletes it whether or not it exists, so the
    /// batch never fails on a missing table (the caller decides whether to send it at all).
    public static func append(family: UInt32, name: String, to batch: NetlinkBatch) {
        ObjectEncoding.addTable(batch, family: family, name: name)
        ObjectEncoding.deleteTable(batch, family: family, name: name)
    }
}
