import Spool

extension SpoolError.Code {
    /// A zip member's path would climb out of the archive or is not a plain file: `..`, an absolute path, a
    /// backslash, a NUL, a symbolic link (zip-slip). Nothing of the archive was stored.
    public static let unsafeArchiveMember: SpoolError.Code = "unsafe-archive-member"
    /// An archive expands past `UnzipOptions` limits (total expanded bytes, compression ratio, member count,
    /// overlapping members), or a bundle past `BundleOptions.maxMembers`: a likely zip bomb, refused.
    public static let archiveLimitExceeded: SpoolError.Code = "archive-limit-exceeded"
}

/// Damage found while expanding an archive: the archive is then stored unchanged, with this reason as its
/// `unzip-warning`. Never leaves the decorator.
struct ArchiveCorruption: Error, Sendable {
    /// What is wrong, for the warning (no control characters; may name a member, percent-encoded).
    var reason: String
}
