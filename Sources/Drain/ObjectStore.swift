/// Bytes to deliver: in memory, or a range of a spool file.
public enum PayloadBody: Sendable {
    /// In memory (inline payloads, manifests).
    case bytes([UInt8])
    /// A range of a file.
    case file(path: String, offset: Int64, length: Int64)
}

/// One object to write: the key, the bytes, their digests (for the store to verify), and what goes with them.
public struct ObjectWrite: Sendable {
    /// The object key.
    public var key: String
    /// The bytes.
    public var body: PayloadBody
    /// Size in bytes.
    public var size: Int64
    /// Hex SHA-256 of the bytes.
    public var sha256: String
    /// CRC32C of the bytes.
    public var crc32c: UInt32
    /// `Content-Type`.
    public var contentType: String
    /// Object metadata (`x-amz-meta-*` on S3); `sha256` is among it, so a later HEAD can tell our object.
    public var metadata: [String: String]
}

/// What a store answered to a write.
public struct StoredObject: Sendable, Hashable {
    /// The ETag.
    public var etag: String
    /// The version id, when the store versions objects.
    public var versionID: String?
}

/// An object found at a key.
public struct ExistingObject: Sendable, Hashable {
    /// Its size.
    public var size: Int64
    /// The SHA-256 it carries (its `sha256` metadata, or computed for local files), when known.
    public var sha256: String?
    /// Its ETag.
    public var etag: String
    /// Its version id.
    public var versionID: String?
}

/// A part of a multipart upload, as the store holds it.
public struct StoredPart: Sendable, Hashable {
    /// 1...10,000.
    public var number: Int
    /// The part's ETag.
    public var etag: String
    /// Size in bytes.
    public var size: Int64
    /// Base64 CRC32C, when sent.
    public var checksumCRC32C: String?
}

/// Why a store operation failed, in the terms delivery decides on.
public struct ObjectStoreError: Error, Sendable, CustomStringConvertible {
    /// What delivery should do about it.
    public enum Kind: Sendable, Hashable {
        /// The key exists (412 on a create-only write): HEAD and compare.
        case alreadyExists
        /// A concurrent conditional write collided (409): try again (a new upload for multipart).
        case conflict
        /// The multipart upload is gone (aborted or completed): HEAD decides.
        case noSuchUpload
        /// Configuration or permissions (no bucket, access denied, bad credentials): pause the destination.
        case configuration
        /// Worth another attempt later (5xx, throttling, network).
        case transient
        /// Will not get better by trying again.
        case permanent
    }

    /// What to do.
    public var kind: Kind
    /// A short, value-free code (S3's error code or ours), safe as a metric label.
    public var code: String
    /// What happened, for people.
    public var message: String

    /// Creates an error.
    public init(_ kind: Kind, code: String, message: String) {
        self.kind = kind
        self.code = code
        self.message = message
    }

    /// `code: message`.
    public var description: String { "\(code): \(message)" }
}

/// Where delivered objects go. Every write is create-only-if-absent; the same delivery logic runs against S3 and a
/// local directory.
public protocol ObjectStore: Sendable {
    /// A short name for logs: `s3://bucket`, `file:///path`.
    var displayName: String { get }
    /// Whether large objects go up as multipart uploads (S3) or in one write (a local directory).
    var supportsMultipart: Bool { get }

    /// Writes an object only if the key is free.
    ///
    /// - Throws: `ObjectStoreError` (`alreadyExists` when the key is taken).
    func put(_ object: ObjectWrite) async throws -> StoredObject

    /// The object at a key, or nil.
    ///
    /// - Throws: `ObjectStoreError`.
    func head(key: String) async throws -> ExistingObject?

    /// Starts a multipart upload for an object (`object.body` is ignored) and returns its id.
    ///
    /// - Throws: `ObjectStoreError`.
    func createUpload(for object: ObjectWrite) async throws -> String

    /// Uploads one part.
    ///
    /// - Throws: `ObjectStoreError` (`noSuchUpload`).
    func uploadPart(key: String, uploadID: String, number: Int, body: PayloadBody, crc32c: UInt32, sha256: String)
        async throws -> StoredPart

    /// The parts the store holds for an upload.
    ///
    /// - Throws: `ObjectStoreError` (`noSuchUpload`).
    func listParts(key: String, uploadID: String) async throws -> [StoredPart]

    /// Completes an upload, only if the key is free.
    ///
    /// - Throws: `ObjectStoreError` (`alreadyExists`, `noSuchUpload`).
    func completeUpload(key: String, uploadID: String, parts: [StoredPart]) async throws -> StoredObject

    /// Aborts an upload.
    ///
    /// - Throws: `ObjectStoreError` (`noSuchUpload` when already gone).
    func abortUpload(key: String, uploadID: String) async throws

    /// Unfinished uploads of exactly this key.
    ///
    /// - Throws: `ObjectStoreError`.
    func listUploads(key: String) async throws -> [String]
}
