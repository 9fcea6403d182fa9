import CNetfilter
import Glibc

/// A `NETLINK_NETFILTER` socket: commits batches, reads the ruleset generation, dumps objects.
///
/// Owns its socket and closes it on deinit. Not thread-safe: one caller at a time. Opened in the
/// caller's network namespace, or in another one by path (the socket keeps that namespace).
public final class NetfilterSocket {
    private let socket: OpaquePointer
    private let fd: Int32
    private var sequence: UInt32
    private let receiveBuffer: UnsafeMutableRawBufferPointer

    /// The receive buffer a commit asks for; `nil` sizes it for one acknowledgement per message.
    /// Tests set it small to make the kernel drop acknowledgements (`ENOBUFS`) on purpose.
    public var acknowledgementBufferBytes: Int32?

    /// Opens a socket in the calling thread's network namespace, or in the one at `namespacePath`
    /// (`/run/netns/NAME`). Throws `NetlinkError` (EPERM without CAP_NET_ADMIN is reported later,
    /// by the first request, since opening needs no privilege).
    public init(namespacePath: String? = nil) throws(NetlinkError) {
        if let namespacePath {
            socket = try Syscalls.openNetlinkSocket(inNamespace: namespacePath)
        } else {
            socket = try Syscalls.openNetlinkSocket()
        }
        fd = mnl_socket_get_fd(socket)
        sequence = UInt32(truncatingIfNeeded: time(nil))
        receiveBuffer = .allocate(byteCount: 1 << 20, alignment: 16)
    }

    deinit {
        mnl_socket_close(socket)
        receiveBuffer.deallocate()
    }

    /// The ruleset generation: the kernel increments it on every committed nf_tables transaction
    /// in this namespace (any table, any program).
    public func generation() throws(NetlinkError) -> UInt32 {
        var result: UInt32 = 0
        try request(NFT_MSG_GETGEN, family: UInt32(NFPROTO_UNSPEC), flags: 0, "read ruleset generation", build: { _ in }) { header in
            let gen = nftnl_gen_alloc()!
            defer { nftnl_gen_free(gen) }
            if nftnl_gen_nlmsg_parse(header, gen) == 0 { result = nftnl_gen_get_u32(gen, attribute(NFTNL_GEN_ID)) }
        }
        return result
    }

    /// What a commit did, for reports and tests.
    public struct CommitResult: Sendable, Equatable {
        /// Messages sent, batch begin and end included.
        public var messages: Int
        public var bytes: Int
        /// True when some acknowledgements were lost to a full receive queue (`ENOBUFS`) and the
        /// commit was confirmed by the ruleset generation instead.
        public var confirmedByGeneration: Bool
    }

    /// Sends the batch and waits for the kernel's verdict on it.
    ///
    /// Throws `NetlinkError` naming the first object the kernel refused; then nothing of the batch
    /// was applied. `ENOBUFS` while reading acknowledgements means replies were dropped, not that
    /// the transaction failed: the kernel commits inside `sendmsg`. The outcome is then decided by
    /// the ruleset generation, which only a commit advances (`expectedGeneration` is the one the
    /// batch was built against).
    @discardableResult
    public func commit(_ batch: NetlinkBatch, expectedGeneration: UInt32? = nil) throws(NetlinkError) -> CommitResult {
        batch.finish()
        // The kernel refuses a message larger than the socket's send buffer (EMSGSIZE); nft bumps
        // it the same way. Acknowledgements are capped (no echoed request) and the receive buffer
        // sized for all of them (~1 KiB of truesize each), so a big batch's replies fit.
        try Syscalls.setOption(fd, level: SOL_SOCKET, name: SO_SNDBUFFORCE, value: Int32(clamping: batch.byteCount + 65_536), "SO_SNDBUFFORCE")
        try Syscalls.setOption(fd, level: SOL_NETLINK, name: NETLINK_CAP_ACK, value: 1, "NETLINK_CAP_ACK")
        try Syscalls.setOption(fd, level: SOL_SOCKET, name: SO_RCVBUFFORCE,
                               value: acknowledgementBufferBytes ?? Int32(clamping: min(max(1 << 20, batch.messageCount * 1024), 1 << 30)),
                               "SO_RCVBUFFORCE")
        let sent: NetlinkError? = batch.bytes.withUnsafeBytes { raw in
            do throws(NetlinkError) { try Syscalls.send(socket, raw); return nil } catch { return error }
        }
        if let sent { throw sent }

        // nfnetlink runs the whole transaction inside sendmsg: every reply is queued by now.
        var acknowledged = 0
        var firstError: NetlinkError?
        var lostReplies = false
        let range = batch.sequenceRange
        while acknowledged < batch.objectMessages {
            let count: Int?
            do throws(NetlinkError) {
                count = try Syscalls.receive(fd, into: receiveBuffer, wait: false)
            } catch where error.errno == ENOBUFS {
                lostReplies = true
                continue
            }
            guard let count else { break }
            forEachMessage(count) { header in
                guard Int32(header.pointee.nlmsg_type) == NLMSG_ERROR, range.contains(header.pointee.nlmsg_seq) else { return }
                let error = mnl_nlmsg_get_payload(header)!.assumingMemoryBound(to: nlmsgerr.self).pointee.error
                acknowledged += 1
                if error != 0 && firstError == nil {
                    firstError = NetlinkError(call: batch.description(ofSequence: header.pointee.nlmsg_seq), errno: -error)
                }
            }
        }
        if let firstError { throw firstError }
        if lostReplies || acknowledged < batch.objectMessages {
            // An error reply may have been among the lost ones: ask the kernel whether it committed.
            let now = try generation()
            guard let expectedGeneration else {
                throw NetlinkError(call: "commit: \(batch.objectMessages - acknowledged) acknowledgements lost and no generation to confirm the commit by", errno: ENOBUFS)
            }
            guard now == expectedGeneration &+ 1 else {
                throw NetlinkError(call: "commit: acknowledgements lost and the ruleset generation moved from \(expectedGeneration) to \(now), so the batch did not apply", errno: ENOBUFS)
            }
            return CommitResult(messages: batch.messageCount, bytes: batch.byteCount, confirmedByGeneration: true)
        }
        return CommitResult(messages: batch.messageCount, bytes: batch.byteCount, confirmedByGeneration: false)
    }

    /// Sends one request (a dump when `flags` has `NLM_F_DUMP`) and hands every reply message to
    /// `handle` until the kernel says it is done. `ENOENT` and friends are thrown as `NetlinkError`
    /// with `description` as the call.
    func request(_ type: nf_tables_msg_types, family: UInt32, flags: Int32, _ description: String,
                 build: (UnsafeMutablePointer<nlmsghdr>) -> Void,
                 handle: (UnsafeMutablePointer<nlmsghdr>) -> Void) throws(NetlinkError) {
        sequence &+= 1
        let mySequence = sequence
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { scratch.deallocate() }
        let header = nftnl_nlmsg_build_hdr(scratch.baseAddress!.assumingMemoryBound(to: CChar.self), UInt16(type.rawValue),
                                           UInt16(family), UInt16(flags | NLM_F_ACK), mySequence)!
        build(header)
        try Syscalls.send(socket, UnsafeRawBufferPointer(start: scratch.baseAddress, count: Int(header.pointee.nlmsg_len)))
        var done = false
        var failure: NetlinkError?
        while !done {
            guard let count = try Syscalls.receive(fd, into: receiveBuffer, wait: true) else { continue }
            forEachMessage(count) { reply in
                guard reply.pointee.nlmsg_seq == mySequence else { return }
                switch Int32(reply.pointee.nlmsg_type) {
                case NLMSG_DONE:
                    done = true
                case NLMSG_ERROR:
                    let error = mnl_nlmsg_get_payload(reply)!.assumingMemoryBound(to: nlmsgerr.self).pointee.error
                    if error != 0 && failure == nil { failure = NetlinkError(call: description, errno: -error) }
                    done = true
                default:
                    handle(reply)
                }
            }
        }
        if let failure { throw failure }
    }

    private func forEachMessage(_ count: Int, _ body: (UnsafeMutablePointer<nlmsghdr>) -> Void) {
        var remaining = Int32(count)
        var header: UnsafeMutablePointer<nlmsghdr>? = receiveBuffer.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)
        while let current = header, mnl_nlmsg_ok(current, remaining) {
            body(current)
            header = mnl_nlmsg_next(current, &remaining)
        }
    }
}
