import Foundation
import Spool

/// Where producers write resources: the spool itself (`PipelineStorage`) or a decorator over another storage
/// (`UnzipResourcesDecorator`, `BundleResourcesDecorator`, composed by
/// `createStorageStack(base:bundleResources:unzipResources:)`).
///
/// A storage hands out bundles; a bundle takes resources from any number of tasks and is closed once. Code written
/// against this protocol works the same over the plain spool and over any stack of decorators.
public protocol ResourceStorage: Sendable {
    /// The bundles this storage hands out.
    associatedtype Bundle: ResourceBundle

    /// A private directory on the spool's own filesystem for temporary files: the spool's `tmp/`. Files there must
    /// stay locked while in use (the spool removes unlocked ones when it opens); decorators use `ScratchFile`.
    var scratchDirectory: String { get }

    /// Opens a bundle for writing (creating it, or continuing one that is still open). Close it when done.
    ///
    /// - Parameters:
    ///   - id: The bundle id (see `PipelineStorage.newBundleID()`).
    ///   - metadata: Bundle metadata, kept in `_bundle.json`.
    /// - Throws: `SpoolError` with `.invalidBundleID`, `.invalidMetadata`, `.bundleNotOpen`, `.bundleConflict`.
    func openBundle(_ id: String, metadata: [String: String]) async throws -> Bundle
}

/// An open bundle of some `ResourceStorage`: write resources into it, then `close()` it.
///
/// `writeResource(_:stream:)` is the one primitive every layer implements; the familiar overloads
/// (`writeResource(url:contentType:statusCode:metadata:name:stream:)`, `data:`, `bytes:`, `contentsOf:`) are built on
/// it in an extension.
public protocol ResourceBundle: Sendable {
    /// The bundle id.
    var id: String { get }

    /// Writes a resource from an async sequence of byte chunks, consumed one chunk at a time, and returns what was
    /// stored: one resource, several (a zip's members), or one packed into `bundle.zip`.
    ///
    /// - Parameters:
    ///   - draft: What the producer says about the resource (url, content type, status, metadata, name).
    ///   - stream: The bytes.
    /// - Throws: `SpoolError` (validation codes, `.bundleNotOpen`, `.spoolFull`, `.io`, `.database`, and the
    ///   decorators' `.unsafeArchiveMember`, `.archiveLimitExceeded`); or the stream's own error, unchanged.
    func writeResource<Chunks: AsyncSequence>(_ draft: ResourceDraft, stream: Chunks) async throws -> [StoredResource]
    where Chunks.Element: ContiguousBytes

    /// Seals the bundle once writes in flight are done: no more resources come. Closing twice does nothing.
    ///
    /// - Throws: `SpoolError`.
    func close() async throws

    /// Stops writing to the bundle without sealing it, after the producer failed: what was written stays (a
    /// decorator that holds resources back stores them now) and the bundle stays open, to be continued, sealed or
    /// discarded (`spool-inspect`). `withBundle` calls this when its body throws.
    ///
    /// - Throws: `SpoolError` when held-back resources cannot be stored.
    func leaveOpen() async throws
}

/// One resource as a storage layer stored it.
public struct StoredResource: Sendable, Hashable {
    /// Where the bytes went.
    public enum Placement: Sendable, Hashable {
        /// Into the spool as a resource of its own, delivered as one object.
        case spooled(SpooledResource)
        /// Into the bundle's `bundle.zip` (written when the bundle closes), as this member.
        case packed(bundleID: String, member: String)
    }

    /// The resource's URL (for a zip member, `{archive url}/{member}`).
    public var url: String
    /// Its media type.
    public var contentType: String
    /// The HTTP status of the fetch.
    public var statusCode: Int
    /// Its metadata, including what decorators added (`unzip-source`, `unzip-member`, `unzip-warning`, ...).
    public var metadata: [String: String]
    /// Its size in bytes.
    public var size: Int64
    /// SHA-256 of its bytes, lowercase hex.
    public var sha256: String
    /// Where it went.
    public var placement: Placement

    /// Describes a stored resource.
    public init(
        url: String, contentType: String, statusCode: Int, metadata: [String: String], size: Int64, sha256: String,
        placement: Placement
    ) {
        self.url = url
        self.contentType = contentType
        self.statusCode = statusCode
        self.metadata = metadata
        self.size = size
        self.sha256 = sha256
        self.placement = placement
    }

    /// A resource written to the spool as `draft` describes it.
    public init(_ draft: ResourceDraft, spooled resource: SpooledResource) {
        self.init(
            url: draft.url, contentType: draft.contentType, statusCode: draft.statusCode, metadata: draft.metadata,
            size: resource.size, sha256: resource.sha256, placement: .spooled(resource))
    }

    /// The spool resource, when it went into the spool as one.
    public var spooled: SpooledResource? {
        if case .spooled(let resource) = placement { return resource }
        return nil
    }
}

extension ResourceStorage {
    /// Opens a bundle without metadata.
    ///
    /// - Throws: as `openBundle(_:metadata:)`.
    public func openBundle(_ id: String) async throws -> Bundle {
        try await openBundle(id, metadata: [:])
    }

    /// Opens a bundle, runs `body` with it, and closes it when `body` returns. If `body` throws, the bundle is left
    /// open (`ResourceBundle.leaveOpen()`: resources already written are kept) and the error is rethrown.
    ///
    /// - Throws: what `openBundle` and `body` throw, or `SpoolError` from closing. When keeping what was written
    ///   fails after `body` threw, that failure is thrown, with `body`'s error as its `underlying` cause.
    @discardableResult
    public func withBundle<T>(
        _ id: String, metadata: [String: String] = [:], _ body: (Bundle) async throws -> T
    ) async throws -> T {
        let bundle = try await openBundle(id, metadata: metadata)
        let result: T
        do {
            result = try await body(bundle)
        } catch {
            do {
                try await bundle.leaveOpen()
            } catch var keeping as SpoolError {
                keeping.message += "; this happened while keeping what was written after the producer failed"
                keeping.underlying = SendableErrorDescription(error)
                throw keeping
            }
            throw error
        }
        try await bundle.close()
        return result
    }
}

extension ResourceBundle {
    /// Writes a resource from an async sequence of byte chunks (`[UInt8]`, `Data`, `ArraySlice<UInt8>`, ...).
    ///
    /// - Parameters:
    ///   - url: Where the resource was fetched from (absolute URL).
    ///   - contentType: Its media type.
    ///   - statusCode: The HTTP status of the fetch (100...599).
    ///   - metadata: Per-resource metadata, kept in `_bundle.json`.
    ///   - name: The key segment after the sequence number; nil derives it from the URL.
    ///   - stream: The bytes.
    /// - Throws: as `writeResource(_:stream:)`.
    @discardableResult
    public func writeResource<Chunks: AsyncSequence>(
        url: String, contentType: String, statusCode: Int, metadata: [String: String] = [:], name: String? = nil,
        stream: Chunks
    ) async throws -> [StoredResource] where Chunks.Element: ContiguousBytes {
        try await writeResource(
            ResourceDraft(url: url, contentType: contentType, statusCode: statusCode, metadata: metadata, name: name),
            stream: stream)
    }

    /// Writes a resource from an async sequence of single bytes (e.g. `URLSession.AsyncBytes`).
    ///
    /// - Throws: as `writeResource(_:stream:)`.
    @discardableResult
    public func writeResource<Bytes: AsyncSequence>(
        url: String, contentType: String, statusCode: Int, metadata: [String: String] = [:], name: String? = nil,
        bytes: Bytes
    ) async throws -> [StoredResource] where Bytes.Element == UInt8 {
        try await writeResource(
            url: url, contentType: contentType, statusCode: statusCode, metadata: metadata, name: name,
            stream: RechunkedBytes(base: bytes))
    }

    /// Writes a resource held in memory.
    ///
    /// - Throws: as `writeResource(_:stream:)`.
    @discardableResult
    public func writeResource(
        url: String, contentType: String, statusCode: Int, metadata: [String: String] = [:], name: String? = nil,
        data: Data
    ) async throws -> [StoredResource] {
        try await writeResource(
            url: url, contentType: contentType, statusCode: statusCode, metadata: metadata, name: name,
            stream: SingleChunk(chunk: data))
    }

    /// Writes a resource held in memory.
    ///
    /// - Throws: as `writeResource(_:stream:)`.
    @discardableResult
    public func writeResource(
        url: String, contentType: String, statusCode: Int, metadata: [String: String] = [:], name: String? = nil,
        bytes: [UInt8]
    ) async throws -> [StoredResource] {
        try await writeResource(
            url: url, contentType: contentType, statusCode: statusCode, metadata: metadata, name: name,
            stream: SingleChunk(chunk: bytes))
    }

    /// Writes a resource from a local file, streamed (never loaded whole).
    ///
    /// - Throws: as `writeResource(_:stream:)`; `SpoolError.invalidConfiguration` for a URL that is not a file URL,
    ///   `SpoolError.io` when the file cannot be read.
    @discardableResult
    public func writeResource(
        url: String, contentType: String, statusCode: Int, metadata: [String: String] = [:], name: String? = nil,
        contentsOf file: URL
    ) async throws -> [StoredResource] {
        try await writeResource(
            url: url, contentType: contentType, statusCode: statusCode, metadata: metadata, name: name,
            stream: try FileChunks(fileURL: file))
    }
}

/// An error's description, as a `Sendable` cause of a `SpoolError` (the error itself may not be `Sendable`).
struct SendableErrorDescription: Error, Sendable, CustomStringConvertible {
    var description: String

    init(_ error: any Error) { description = String(describing: error) }
}
