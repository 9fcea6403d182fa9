import Foundation
import Testing
import TurnoutModel
import TurnoutNetlink
import TurnoutRules
import TurnoutTestSupport

/// The kernel commits a batch inside `sendmsg`; its acknowledgements can still be dropped when
/// the socket's receive queue is full (`ENOBUFS`). That must never be reported as "not applied"
/// when it was, nor as applied when it was not: the ruleset generation decides.
@Suite("Lost acknowledgements (ENOBUFS) are resolved by the ruleset generation",
       .enabled(if: KernelLab.isEnabled, Comment(rawValue: KernelLab.skipReason)))
struct LostAcknowledgementTests {
    /// 400 services: a create batch of a few hundred messages, far more acknowledgements than a
    /// 4 KiB receive buffer holds.
    static func largeTable() throws -> WireTable {
        let services = (0..<400).map { index in
            """
              - name: bench/svc-\(index)
                addresses: [10.100.\(index / 250).\(index % 250 + 1)]
                ports: [{port: 80, targetPort: 8080}]
                endpoints: [{address: 10.200.\(index / 250).\(index % 250 + 1), weight: \(index % 7 + 1)}, {address: 10.201.\(index / 250).\(index % 250 + 1)}]
            """
        }
        let table = try TableDecoder.decode("services:\n" + services.joined(separator: "\n"), name: "large.yaml")
        return NftablesLowering.lower(NftablesServiceCompiler.compile(table))
    }

    @Test("committed batch, acknowledgements dropped → success, confirmed by the generation")
    func committedBatchIsReportedApplied() throws {
        try withNetworkNamespace(prefix: "ack-lost") { ns in
            let desired = try Self.largeTable()
            let socket = try NetfilterSocket(namespacePath: ns.path)
            socket.acknowledgementBufferBytes = 4096
            let generation = try socket.generation()
            let batch = NetlinkBatch(generation: generation)
            TableDelta(installed: nil, desired: desired).append(to: batch)
            let result = try socket.commit(batch, expectedGeneration: generation)
            #expect(result.confirmedByGeneration, "expected the small buffer to drop acknowledgements (\(batch.messageCount) messages)")
            #expect(try socket.generation() == generation &+ 1)
            #expect(try TableReader.read(family: desired.family, name: desired.name, from: socket) == desired)
        }
    }

    @Test("rejected batch, acknowledgements dropped → error, nothing applied")
    func rejectedBatchIsReportedFailed() throws {
        try withNetworkNamespace(prefix: "ack-lost") { ns in
            var desired = try Self.largeTable()
            let last = desired.chains.count - 1
            desired.chains[last].rules.append(WireRule([.immediateVerdict(WireVerdict(code: WireVerdict.jumpCode, chain: "no-such-chain"))]))
            let socket = try NetfilterSocket(namespacePath: ns.path)
            socket.acknowledgementBufferBytes = 4096
            let generation = try socket.generation()
            let batch = NetlinkBatch(generation: generation)
            TableDelta(installed: nil, desired: desired).append(to: batch)
            #expect(throws: NetlinkError.self) { try socket.commit(batch, expectedGeneration: generation) }
            #expect(try socket.generation() == generation)
            #expect(try TableReader.read(family: desired.family, name: desired.name, from: socket) == nil)
        }
    }
}
