/// How many bytes of splice pipes the proxy may hold at once, over all its workers.
///
/// The kernel charges every pipe's whole capacity to the uid that made it, whether bytes sit in
/// it or not. An unprivileged uid may hold `fs.pipe-user-pages-soft` pages (64 MiB by default);
/// past that, new pipes come out at 8 KiB and `F_SETPIPE_SZ` is refused. A proxy run as the mesh's
/// proxy uid would then relay every bulk stream through 8 KiB pipes. The budget keeps the proxy
/// inside the uid's allowance instead: pipes of `--pipe-size` while at most half of it is in use,
/// then pipes of the kernel's default 64 KiB, and once it is spent a bulk direction copies
/// through the worker's buffer (`recv`/`send`), as HAProxy does past `maxpipes`.
public enum PipeBudget: Sendable, Hashable {
    /// Three quarters of the uid's allowance (the rest is left to the uid's other processes);
    /// no limit when the proxy is exempt from it (`CAP_SYS_RESOURCE` or `CAP_SYS_ADMIN`) or the
    /// allowance is off (`fs.pipe-user-pages-soft` = 0).
    case automatic
    /// No limit but the kernel's.
    case unlimited
    /// At most this many bytes; 0 means never splice (every byte is copied).
    case bytes(Int)

    /// The limit in bytes that `.automatic` comes to; nil for none. The corresponding kernel
    /// check is `too_many_pipe_buffers_soft` in fs/pipe.c.
    static func automaticLimit(softPages: Int?, pageSize: Int, privileged: Bool) -> Int? {
        guard !privileged, let softPages, softPages > 0 else { return nil }
        return softPages * pageSize / 4 * 3
    }

    /// The limit in bytes for this machine and process; nil for none. Reads /proc for
    /// `.automatic`.
    func resolved() -> Int? {
        switch self {
        case .automatic:
            return Self.automaticLimit(softPages: Syscalls.procInteger("/proc/sys/fs/pipe-user-pages-soft"),
                                       pageSize: Syscalls.pageSize, privileged: Syscalls.isExemptFromPipeLimits())
        case .unlimited: return nil
        case .bytes(let bytes): return max(0, bytes)
        }
    }
}
