/// An error from the spool: what was asked, what went wrong, and what to do about it.
///
/// `code` is stable and value-free, safe to use as a metric label or to switch on; `message` is for people and names
/// the offending value. `underlying` keeps the cause (an `errno`, an SQLite result code) when there is one.
public struct SpoolError: Error, Sendable, CustomStringConvertible {
    /// A stable, extensible identifier of the kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
        /// The code's text, e.g. `"invalid-bundle-id"`.
        public let rawValue: String

        /// Creates a code from its text.
        public init(_ rawValue: String) { self.rawValue = rawValue }

        /// Creates a code from a string literal.
        public init(stringLiteral value: String) { self.rawValue = value }

        /// The code's text.
        public var description: String { rawValue }

        /// A bundle id is empty, too long, or has characters that cannot be an S3 key segment.
        public static let invalidBundleID: Code = "invalid-bundle-id"
        /// A resource name is empty, too long, or has characters that cannot be an S3 key segment.
        public static let invalidResourceName: Code = "invalid-resource-name"
        /// A resource URL is not an absolute URL, is too long, or holds control characters.
        public static let invalidURL: Code = "invalid-url"
        /// A metadata key or value has forbidden characters, or the metadata is too large.
        public static let invalidMetadata: Code = "invalid-metadata"
        /// A content type is not `type/subtype[; parameters]`.
        public static let invalidContentType: Code = "invalid-content-type"
        /// A status code is outside 100...599.
        public static let invalidStatusCode: Code = "invalid-status-code"
        /// A destination (bucket, directory, prefix, region, endpoint) or an option value is not acceptable.
        public static let invalidConfiguration: Code = "invalid-configuration"
        /// The spool directory cannot be created, written or locked.
        public static let spoolUnwritable: Code = "spool-unwritable"
        /// The spool was created by a newer version of PipelineStorage.
        public static let schemaTooNew: Code = "schema-too-new"
        /// The spool's size limit or the disk's free-space floor was reached and stayed reached.
        public static let spoolFull: Code = "spool-full"
        /// There is no spool at the path (and it was not to be created).
        public static let spoolNotFound: Code = "spool-not-found"
        /// The bundle does not exist.
        public static let bundleNotFound: Code = "bundle-not-found"
        /// The bundle exists but no longer accepts resources (sealed, delivered or discarded).
        public static let bundleNotOpen: Code = "bundle-not-open"
        /// The bundle exists with a different destination, prefix or metadata.
        public static let bundleConflict: Code = "bundle-conflict"
        /// The resource does not exist.
        public static let resourceNotFound: Code = "resource-not-found"
        /// The producer's byte stream threw; nothing of the resource was kept.
        public static let streamFailed: Code = "stream-failed"
        /// A file operation failed.
        public static let io: Code = "io"
        /// SQLite reported an error.
        public static let database: Code = "database"
        /// The database stayed locked by another process for longer than the busy timeout.
        public static let databaseBusy: Code = "database-busy"
        /// The spool's files are damaged (integrity check, missing or altered payload).
        public static let corrupt: Code = "corrupt"
        /// An operation is not allowed in the current state.
        public static let invalidState: Code = "invalid-state"
        /// A zip member's path would climb out of the archive or is not a plain file: `..`, an absolute path, a
        /// backslash, a NUL, a symbolic link (zip-slip). Nothing of the archive was stored (`UnzipResourcesDecorator`).
        public static let unsafeArchiveMember: Code = "unsafe-archive-member"
        /// An archive expands past the `UnzipOptions` limits (total expanded bytes, compression ratio, member count,
        /// overlapping members), or a bundle past `BundleOptions.maxMembers`: a likely zip bomb, refused.
        public static let archiveLimitExceeded: Code = "archive-limit-exceeded"
    }

    /// What kind of failure this is.
    public var code: Code
    /// A sentence for people: names the value, says what went wrong and what to do.
    public var message: String
    /// The cause, when there is one.
    public var underlying: (any Error & Sendable)?

    /// Creates an error.
    public init(_ code: Code, _ message: String, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    /// The message, followed by the cause when there is one.
    public var description: String {
        guard let underlying else { return message }
        return "\(message) (\(underlying))"
    }
}

/// A failed system call, as the cause of a `SpoolError`.
public struct SystemCallError: Error, Sendable, CustomStringConvertible {
    /// The call that failed, e.g. `"fsync"`.
    public var call: String
    /// The `errno` it set.
    public var errno: Int32

    /// The call and the system's description of `errno`.
    public var description: String {
        "\(call): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension SpoolError {
    /// An I/O error naming the path and the failed call, from the current `errno`. A full disk (`ENOSPC`, `EDQUOT`)
    /// is `.spoolFull`, like a spool limit: the caller's remedy is the same (let the drainer free space).
    static func io(_ what: String, path: String, call: String, errno code: Int32 = errno) -> SpoolError {
        let hint: String
        switch code {
        case EACCES, EPERM: hint = "; check the spool directory's owner and permissions"
        case ENOSPC, EDQUOT: hint = "; the disk is full: free space or let spool-drain deliver and purge"
        case EROFS: hint = "; the filesystem is read-only"
        default: hint = ""
        }
        return SpoolError(
            code == ENOSPC || code == EDQUOT ? .spoolFull : .io,
            "could not \(what) '\(path)' (\(String(cString: strerror(code))))\(hint)",
            underlying: SystemCallError(call: call, errno: code))
    }
}
