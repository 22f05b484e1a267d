import Foundation
import StorageDecorators

/// An open bundle: write resources into it from any number of tasks, then `close()` it.
public final class BundleWriter: Sendable {
    /// The bundle id.
    public let id: String
    private let spool: SpoolStore
    private let gate: WriteGate

    /// A writer for bundle `id`, already open in `spool` (`SpoolStore.openBundle`): for tools that open bundles on
    /// the spool directly, as `spool-put` does. Producers use `PipelineStorage.openBundle(_:metadata:)`.
    public init(id: String, spool: SpoolStore) {
        self.id = id
        self.spool = spool
        gate = WriteGate(bundleID: id)
    }

    /// Writes a resource from an async sequence of byte chunks (`[UInt8]`, `Data`, `ArraySlice<UInt8>`, ...),
    /// consumed one chunk at a time, and returns once it is durable in the spool.
    ///
    /// - Parameters:
    ///   - url: Where the resource was fetched from (absolute URL).
    ///   - contentType: Its media type.
    ///   - statusCode: The HTTP status of the fetch (100...599).
    ///   - metadata: Per-resource metadata, kept in `_bundle.json`.
    ///   - name: The key segment after the sequence number; nil derives it from the URL.
    ///   - stream: The bytes.
    /// - Throws: `SpoolError` with `.invalidURL`, `.invalidContentType`, `.invalidStatusCode`, `.invalidMetadata`,
    ///   `.invalidResourceName`, `.bundleNotOpen`, `.spoolFull`, `.io`, `.database`; or the stream's own error (then
    ///   nothing of the resource is kept).
    @discardableResult
    public func writeResource<Chunks: AsyncSequence>(
        url: String, contentType: String, statusCode: Int, metadata: [String: String] = [:], name: String? = nil,
        stream: Chunks
    ) async throws -> SpooledResource where Chunks.Element: ContiguousBytes {
        try await write(
            ResourceDraft(url: url, contentType: contentType, statusCode: statusCode, metadata: metadata, name: name),
            chunks: stream)
    }

    /// Writes a resource from an async sequence of single bytes (e.g. `URLSession.AsyncBytes`).
    ///
    /// - Throws: as the chunked variant.
    @discardableResult
    public func writeResource<Bytes: AsyncSequence>(
        url: String, contentType: String, statusCode: Int, metadata: [String: String] = [:], name: String? = nil,
        bytes: Bytes
    ) async throws -> SpooledResource where Bytes.Element == UInt8 {
        try await write(
            ResourceDraft(url: url, contentType: contentType, statusCode: statusCode, metadata: metadata, name: name),
            chunks: RechunkedBytes(base: bytes))
    }

    /// Writes a resource held in memory.
    ///
    /// - Throws: as the chunked variant.
    @discardableResult
    public func writeResource(
        url: String, contentType: String, statusCode: Int, metadata: [String: String] = [:], name: String? = nil,
        data: Data
    ) async throws -> SpooledResource {
        try await writeResource(
            url: url, contentType: contentType, statusCode: statusCode, metadata: metadata, name: name,
            stream: SingleChunk(chunk: data))
    }

    /// Writes a resource held in memory.
    ///
    /// - Throws: as the chunked variant.
    @discardableResult
    public func writeResource(
        url: String, contentType: String, statusCode: Int, metadata: [String: String] = [:], name: String? = nil,
        bytes: [UInt8]
    ) async throws -> SpooledResource {
        try await writeResource(
            url: url, contentType: contentType, statusCode: statusCode, metadata: metadata, name: name,
            stream: SingleChunk(chunk: bytes))
    }

    /// Writes a resource from a local file, streamed (never loaded whole).
    ///
    /// - Throws: as the chunked variant; `SpoolError.invalidConfiguration` for a URL that is not a file URL,
    ///   `SpoolError.io` when the file cannot be read.
    @discardableResult
    public func writeResource(
        url: String, contentType: String, statusCode: Int, metadata: [String: String] = [:], name: String? = nil,
        contentsOf file: URL
    ) async throws -> SpooledResource {
        try await writeResource(
            url: url, contentType: contentType, statusCode: statusCode, metadata: metadata, name: name,
            stream: try FileChunks(fileURL: file))
    }

    /// Seals the bundle: waits for writes still in flight, then records that no more resources come, which queues
    /// its `_bundle.json` for delivery after the last resource. Closing twice does nothing.
    ///
    /// - Throws: `SpoolError` from the index.
    public func close() async throws {
        await gate.close()
        try await spool.sealBundle(id)
    }

    private func write<Chunks: AsyncSequence>(_ draft: ResourceDraft, chunks: Chunks) async throws -> SpooledResource
    where Chunks.Element: ContiguousBytes {
        try await gate.write { try await spool.writeResource(bundleID: id, draft: draft, chunks: chunks) }
    }
}

extension BundleWriter: ResourceBundle {
    /// Writes a resource into the spool; the one primitive of `ResourceBundle`.
    ///
    /// - Returns: the spooled resource.
    /// - Throws: as `writeResource(url:contentType:statusCode:metadata:name:stream:)`.
    public func writeResource<Chunks: AsyncSequence>(
        _ draft: ResourceDraft, stream: Chunks
    ) async throws -> [StoredResource] where Chunks.Element: ContiguousBytes {
        [StoredResource(draft, spooled: try await write(draft, chunks: stream))]
    }

    /// Nothing to do: every resource written is already durable in the spool, and the bundle stays open until it is
    /// closed, sealed with `spool-inspect seal`, or discarded.
    public func leaveOpen() async throws {}
}
