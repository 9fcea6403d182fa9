import CNetfilter
import Glibc
import TurnoutModel

/// Puts a host address on the loopback interface over rtnetlink, as
/// `ip address add ADDRESS/128 dev lo` does.
///
/// `turnout init` needs `::6` on `lo`: the proxy passes inbound IPv6 connections through to the
/// app from that source (Istio's convention, which the capture rules exempt), and unlike
/// `127.0.0.6` inside `127.0.0.0/8` it is not local until it is added. Adding is idempotent:
/// an address already there is left as it is. The loopback device is interface 1 in every
/// network namespace (the kernel's `LOOPBACK_IFINDEX`), so no name lookup is needed, which also
/// works for a namespace the caller is not in. Needs CAP_NET_ADMIN; errors carry the errno.
public enum LoopbackAddress {
    /// What `add` did.
    public enum Outcome: Sendable, Equatable {
        case added
        case alreadyPresent
    }

    private static let loopbackIndex: UInt32 = 1

    /// Adds `address` with a full-length prefix to `lo` in the caller's namespace, or in the one
    /// at `namespacePath`. The corresponding netlink request is `RTM_NEWADDR` with
    /// `NLM_F_CREATE | NLM_F_EXCL` (EEXIST means it is already there).
    public static func add(_ address: IPAddress, namespacePath: String? = nil) throws(NetlinkError) -> Outcome {
        let socket = if let namespacePath {
            try Syscalls.openNetlinkSocket(NETLINK_ROUTE, inNamespace: namespacePath)
        } else {
            try Syscalls.openNetlinkSocket(NETLINK_ROUTE)
        }
        defer { mnl_socket_close(socket) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8192, alignment: 16)
        defer { buffer.deallocate() }

        let sequence = UInt32(truncatingIfNeeded: time(nil))
        let header = mnl_nlmsg_put_header(buffer.baseAddress)!
        header.pointee.nlmsg_type = UInt16(RTM_NEWADDR)
        header.pointee.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
        header.pointee.nlmsg_seq = sequence
        let message = mnl_nlmsg_put_extra_header(header, MemoryLayout<ifaddrmsg>.size)!.assumingMemoryBound(to: ifaddrmsg.self)
        message.pointee.ifa_family = UInt8(address.family == .ipv4 ? AF_INET : AF_INET6)
        message.pointee.ifa_prefixlen = UInt8(address.family.bitCount)
        message.pointee.ifa_flags = UInt8(IFA_F_NODAD)
        message.pointee.ifa_scope = UInt8(RT_SCOPE_UNIVERSE.rawValue)
        message.pointee.ifa_index = loopbackIndex
        let bytes = address.bytes
        bytes.withUnsafeBytes { raw in
            mnl_attr_put(header, UInt16(IFA_LOCAL), raw.count, raw.baseAddress)
            mnl_attr_put(header, UInt16(IFA_ADDRESS), raw.count, raw.baseAddress)
        }
        let call = "add \(address) to lo"
        try Syscalls.send(socket, UnsafeRawBufferPointer(start: buffer.baseAddress, count: Int(header.pointee.nlmsg_len)))

        let fd = mnl_socket_get_fd(socket)
        while true {
            guard let count = try Syscalls.receive(fd, into: buffer, wait: true) else { continue }
            var remaining = Int32(count)
            var reply: UnsafeMutablePointer<nlmsghdr>? = buffer.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)
            while let current = reply, mnl_nlmsg_ok(current, remaining) {
                if current.pointee.nlmsg_seq == sequence, Int32(current.pointee.nlmsg_type) == NLMSG_ERROR {
                    let error = -mnl_nlmsg_get_payload(current)!.assumingMemoryBound(to: nlmsgerr.self).pointee.error
                    switch error {
                    case 0: return .added
                    case EEXIST: return .alreadyPresent
                    default: throw NetlinkError(call: call, errno: error)
                    }
                }
                reply = mnl_nlmsg_next(current, &remaining)
            }
        }
    }
}
