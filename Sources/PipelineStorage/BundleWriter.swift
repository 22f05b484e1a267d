import Foundation
import Synchronization

/// An open bundle: write resources into it from any number of tasks, then `close()` it.
public final class BundleWriter: Sendable {
    /// The bundle id.
    public let id: String
    private let spool: SpoolStore

    private struct State {
        var closed = false
        var writesInFlight = 0
        var drained: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    init(id: String, spool: SpoolStore) {
        self.id = id
        self.spool = spool
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
        try beginWrite()
        defer { endWrite() }
        return try await spool.writeResource(
            bundleID: id,
            draft: ResourceDraft(
                url: url, contentType: contentType, statusCode: statusCode, metadata: metadata, name: name),
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
        try beginWrite()
        defer { endWrite() }
        return try await spool.writeResource(
            bundleID: id,
            draft: ResourceDraft(
                url: url, contentType: contentType, statusCode: statusCode, metadata: metadata, name: name),
            bytes: bytes)
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
    /// - Throws: as the chunked variant; `SpoolError.io` when the file cannot be read.
    @discardableResult
    public func writeResource(
        url: String, contentType: String, statusCode: Int, metadata: [String: String] = [:], name: String? = nil,
        contentsOf file: URL
    ) async throws -> SpooledResource {
        guard file.isFileURL else {
            throw SpoolError(
                .invalidConfiguration, "'\(file.absoluteString)' is not a file URL; pass URL(fileURLWithPath:)")
        }
        return try await writeResource(
            url: url, contentType: contentType, statusCode: statusCode, metadata: metadata, name: name,
            stream: FileChunks(path: file.path))
    }

    /// Seals the bundle: waits for writes still in flight, then records that no more resources come, which queues
    /// its `_bundle.json` for delivery after the last resource. Closing twice does nothing.
    ///
    /// - Throws: `SpoolError` from the index.
    public func close() async throws {
        let mustWait = state.withLock { state -> Bool in
            state.closed = true
            return state.writesInFlight > 0
        }
        if mustWait {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    if state.writesInFlight == 0 { return true }
                    state.drained.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
        try await spool.sealBundle(id)
    }

    private func beginWrite() throws {
        try state.withLock { state in
            guard !state.closed else {
                throw SpoolError(
                    .bundleNotOpen, "bundle '\(id)' was closed by this writer; write to a new bundle instead")
            }
            state.writesInFlight += 1
        }
    }

    private func endWrite() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.writesInFlight -= 1
            guard state.writesInFlight == 0 else { return [] }
            defer { state.drained.removeAll() }
            return state.drained
        }
        for waiter in waiters { waiter.resume() }
    }
}

/// One in-memory buffer as a one-element async sequence.
struct SingleChunk<Chunk: ContiguousBytes & Sendable>: AsyncSequence, Sendable {
    typealias Element = Chunk
    let chunk: Chunk

    struct AsyncIterator: AsyncIteratorProtocol {
        var chunk: Chunk?
        mutating func next() async -> Chunk? {
            defer { chunk = nil }
            return chunk
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(chunk: chunk) }
}
