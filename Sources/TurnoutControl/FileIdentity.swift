import Glibc

/// What identifies a file's contents without reading them: its inode, size and modification
/// time (`stat(2)`). A file replaced by rename (editors, `kubectl cp`, cert-manager's and
/// kubeadm's renewals) changes the inode, an edit in place the time or the size. A value.
struct FileIdentity: Sendable, Hashable {
    let inode: UInt64
    let size: Int64
    let modifiedSeconds: Int64
    let modifiedNanoseconds: Int64

    /// The identity of `path` now; nil when it cannot be `stat`ed.
    init?(_ path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modifiedSeconds = Int64(info.st_mtim.tv_sec)
        modifiedNanoseconds = Int64(info.st_mtim.tv_nsec)
    }
}
