import Testing
import TurnoutNetlink
import TurnoutRules
import TurnoutTestSupport

/// The check behind the equivalence suites: a rule table installed by `nft -f` of its rendered
/// text in one fresh namespace and by Turnout's netlink batch in another reads back identical.
enum NftEquivalence {
    /// Installs `ruleTable` both ways and records an issue for every set, chain and rule that
    /// differs (one differing expression is easier to see on its own than a whole chain).
    static func check(_ ruleTable: RuleTable, namespacePrefix: String) throws {
        let desired = NftablesLowering.lower(ruleTable)
        let fromNft = try withNetworkNamespace(prefix: "\(namespacePrefix)-nft") { ns in
            let load = try ns.run("nft", ["-f", "-"], input: NftablesRenderer.render([ruleTable]))
            try #require(load.status == 0, "nft -f failed: \(load.standardError)")
            return try TableReader.read(family: desired.family, name: desired.name, from: NetfilterSocket(namespacePath: ns.path))
        }
        let fromTurnout = try withNetworkNamespace(prefix: "\(namespacePrefix)-turnout") { ns in
            let socket = try NetfilterSocket(namespacePath: ns.path)
            let batch = NetlinkBatch()
            TableDelta(installed: nil, desired: desired).append(to: batch)
            try socket.commit(batch)
            return try TableReader.read(family: desired.family, name: desired.name, from: socket)
        }
        let nft = try #require(fromNft)
        let turnout = try #require(fromTurnout)
        #expect(turnout.chains.count == ruleTable.chains.count && turnout.sets.count == ruleTable.sets.count)
        #expect(turnout.ruleCount == ruleTable.chains.reduce(0) { $0 + $1.rules.count })
        #expect(turnout == desired, "read back differs from what was written")
        #expect(nft.sets.map(\.name) == turnout.sets.map(\.name))
        for (left, right) in zip(nft.sets, turnout.sets) where left != right {
            Issue.record("set \(left.name) differs:\n nft:     \(left)\n turnout: \(right)")
        }
        #expect(nft.chains.map(\.name) == turnout.chains.map(\.name))
        for (left, right) in zip(nft.chains, turnout.chains) where left != right {
            if left.hook != right.hook {
                Issue.record("chain \(left.name): hook differs:\n nft:     \(String(describing: left.hook))\n turnout: \(String(describing: right.hook))")
            }
            guard left.rules.count == right.rules.count else {
                Issue.record("chain \(left.name): nft has \(left.rules.count) rules, turnout \(right.rules.count)")
                continue
            }
            for (index, (nftRule, turnoutRule)) in zip(left.rules, right.rules).enumerated() where nftRule != turnoutRule {
                Issue.record("chain \(left.name), rule \(index) differs:\n nft:     \(nftRule)\n turnout: \(turnoutRule)")
            }
        }
    }
}
