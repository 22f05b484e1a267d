#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// The headroom file: disk space set aside so that a drainer can still commit when the disk is full.
//
// A drainer frees space by delivering: it claims rows, records their delivery and then removes their payloads — every
// one of those steps is an SQLite commit, and a commit needs room in the WAL (and a checkpoint needs room to grow
// spool.db). On a disk that writers (or anything else) filled to the last block, no commit succeeds, so nothing is
// ever freed. `<spool>/headroom` holds `headroomBytes` of real blocks; a drainer whose claim fails with `spoolFull`
// deletes it and carries on, and it is made again once the disk has room. Writers leave that room alone: after a full
// disk they resume only when the headroom's worth is free beyond what they need while the file is missing.

extension SpoolLayout {
    /// The size of `<spool>/headroom`: room for a WAL checkpoint (SQLite's 1000 pages of 4 KiB) and for a drainer's
    /// commits while deliveries free the payloads.
    public static let headroomBytes: Int64 = 8 << 20

    /// `<spool>/headroom`.
    public var headroomPath: String { root + "/headroom" }

    /// Whether the headroom file is in place.
    public var hasHeadroom: Bool {
        var info = stat()
        return stat(headroomPath, &info) == 0 && Int64(info.st_size) >= Self.headroomBytes
    }

    /// Free bytes on the spool's filesystem for this user; nil when the filesystem cannot be asked.
    public func freeDiskBytes() -> Int64? {
        var info = statvfs()
        guard statvfs(root, &info) == 0 else { return nil }
        return Int64(info.f_bavail) * Int64(info.f_frsize)
    }

    /// Whether a writer that met a full disk may try again: room for what it needs, and, while the headroom file is
    /// missing (a drainer is spending that room), the headroom's worth more.
    func diskHasRoomForWriters(needing bytes: Int64) -> Bool {
        guard let free = freeDiskBytes() else { return true }
        let reserve = hasHeadroom ? 0 : Self.headroomBytes
        return free >= reserve + max(bytes, 64 << 10)
    }

    /// Makes the headroom file when it is missing and the disk has room for it and as much again.
    ///
    /// Best effort: a spool on a nearly full disk simply has none until space is freed.
    /// - Returns: whether the file is in place now.
    @discardableResult
    public func ensureHeadroom() -> Bool {
        if hasHeadroom { return true }
        guard let free = freeDiskBytes(), free >= 2 * Self.headroomBytes else { return false }
        let temporary = temporaryDirectory + "/headroom-" + randomHex(bytes: 8)
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, Self.fileMode)
        guard descriptor >= 0 else { return false }
        // Locked like a payload in progress, so that another process's crash cleanup leaves it alone.
        _ = flock(descriptor, LOCK_EX)
        // Allocated blocks, not a sparse file: the point is that they can be given back. No fsync: a crash may lose
        // the file, and the next open makes it again.
        let complete = posix_fallocate(descriptor, 0, off_t(Self.headroomBytes)) == 0
        close(descriptor)
        guard complete, rename(temporary, headroomPath) == 0 else {
            unlink(temporary)
            return false
        }
        return true
    }

    /// Deletes the headroom file, giving its space to whoever commits next (a drainer that found the disk full).
    ///
    /// - Returns: whether there was a file to delete.
    @discardableResult
    public func releaseHeadroom() -> Bool {
        unlink(headroomPath) == 0
    }
}
