import CNetfilter
import Glibc

/// One nf_tables transaction being built: `BATCH_BEGIN`, the messages, `BATCH_END`.
///
/// The kernel applies a batch as one transaction: all of it or none. Every message asks for an
/// acknowledgement, and its sequence number maps to a description of the object it carries, so a
/// kernel error (which names only the sequence number) becomes "add chain inet turnout services:
/// No such file or directory". Not thread-safe: build a batch on one thread, then commit it.
public final class NetlinkBatch {
    /// The bytes sent in one `sendmsg`.
    private(set) var bytes: [UInt8] = []
    /// seq → description of the message's object.
    private(set) var descriptions: [UInt32: String] = [:]
    /// Messages between begin and end (the ones that are acknowledged).
    public private(set) var objectMessages = 0
    private var nextSequence: UInt32
    private let firstSequence: UInt32
    private let scratch: UnsafeMutableRawBufferPointer
    private var finished = false
    /// Unique within the batch; names sets created in it for lookups that refer to them.
    private var nextSetID: UInt32 = 1

    /// The largest single message: an element chunk is sized to stay well below it.
    static let scratchSize = 1 << 20

    /// Starts a batch. With `generation`, the kernel refuses the whole batch (`ERESTART`) if any
    /// other transaction committed since that generation was read: optimistic concurrency.
    public init(generation: UInt32? = nil, firstSequence: UInt32 = 1) {
        self.firstSequence = firstSequence
        self.nextSequence = firstSequence
        scratch = .allocate(byteCount: Self.scratchSize, alignment: 16)
        let sequence = takeSequence()
        emit { buffer in
            let header = nftnl_batch_begin(buffer, sequence)!
            if let generation {
                mnl_attr_put_u32(header, UInt16(NFNL_BATCH_GENID.rawValue), generation.bigEndian)
            }
            return header
        }
        descriptions[sequence] = "begin transaction" + (generation.map { " (expecting ruleset generation \($0))" } ?? "")
    }

    deinit { scratch.deallocate() }

    /// All messages including begin and end.
    public var messageCount: Int { objectMessages + 2 }
    public var byteCount: Int { bytes.count }
    /// The object messages in the order they were appended, as errors name them
    /// (`add rule 3 to chain inet turnout services`).
    public var messageDescriptions: [String] { descriptions.sorted { $0.key < $1.key }.map(\.value) }
    var sequenceRange: ClosedRange<UInt32> { firstSequence...(nextSequence &- 1) }

    func makeSetID() -> UInt32 {
        defer { nextSetID += 1 }
        return nextSetID
    }

    /// Appends one nf_tables message of `type` (`NFT_MSG_*`); `build` writes its payload.
    func append(_ type: nf_tables_msg_types, family: UInt32, flags: Int32, _ description: String,
                build: (UnsafeMutablePointer<nlmsghdr>) -> Void) {
        precondition(!finished, "message appended to a finished batch")
        let sequence = takeSequence()
        emit { buffer in
            let header = nftnl_nlmsg_build_hdr(buffer, UInt16(type.rawValue), UInt16(family),
                                               UInt16(flags | NLM_F_ACK), sequence)!
            build(header)
            return header
        }
        descriptions[sequence] = description
        objectMessages += 1
    }

    /// Closes the batch. Called by the socket before sending.
    func finish() {
        guard !finished else { return }
        let sequence = takeSequence()
        emit { nftnl_batch_end($0, sequence)! }
        descriptions[sequence] = "end transaction"
        finished = true
    }

    func description(ofSequence sequence: UInt32) -> String {
        descriptions[sequence] ?? "message \(sequence)"
    }

    private func takeSequence() -> UInt32 {
        defer { nextSequence &+= 1 }
        return nextSequence
    }

    private func emit(_ write: (UnsafeMutablePointer<CChar>) -> UnsafeMutablePointer<nlmsghdr>) {
        let buffer = scratch.baseAddress!.assumingMemoryBound(to: CChar.self)
        let header = write(buffer)
        let length = Int(header.pointee.nlmsg_len)
        precondition(length <= Self.scratchSize, "netlink message of \(length) bytes overran its buffer")
        bytes.append(contentsOf: UnsafeRawBufferPointer(start: scratch.baseAddress, count: length))
    }
}
