import Foundation
import Hashing

/// What a producer says about a resource before handing over its bytes.
public struct ResourceDraft: Sendable {
    /// The URL the resource was fetched from.
    public var url: String
    /// Its media type, e.g. `application/json`.
    public var contentType: String
    /// The HTTP status of the fetch.
    public var statusCode: Int
    /// Per-resource metadata (kept in `_bundle.json`).
    public var metadata: [String: String]
    /// The key segment after the sequence number; nil derives it from the URL.
    public var name: String?

    /// Describes a resource.
    public init(
        url: String, contentType: String, statusCode: Int, metadata: [String: String] = [:], name: String? = nil
    ) {
        self.url = url
        self.contentType = contentType
        self.statusCode = statusCode
        self.metadata = metadata
        self.name = name
    }

    /// Checks every field; returns the resource name to use.
    ///
    /// - Throws: `SpoolError` with `.invalidURL`, `.invalidContentType`, `.invalidStatusCode`, `.invalidMetadata` or
    ///   `.invalidResourceName`, naming the value.
    public func validate() throws -> String {
        try Validation.checkURL(url)
        try Validation.checkContentType(contentType)
        try Validation.checkStatusCode(statusCode)
        try Validation.checkMetadata(metadata, owner: "resource")
        if let name {
            try Validation.checkResourceName(name)
            return name
        }
        return ObjectKey.name(fromURL: url)
    }
}

extension SpoolStore {
    /// Bytes go to payload files in writes of this size.
    static let writeBufferBytes = 1 << 20
    /// Room is reserved against `maxSpoolBytes` in steps of this size while a large stream is written.
    static let reservationStepBytes: Int64 = 4 << 20
    /// How often a writer that met a full disk looks for room again.
    static let diskFullPollInterval: Duration = .milliseconds(100)

    /// Appends a resource to an open bundle, consuming `chunks` one at a time (memory stays flat whatever the size),
    /// computing SHA-256 and CRC32C on the way, and returns once the resource is durable.
    ///
    /// Small payloads (up to `inlineThresholdBytes`) are kept in the index; larger ones are written to `tmp/`,
    /// fsynced, and moved into `data/`. If the stream throws, the task is cancelled or the commit fails, nothing of the
    /// resource stays visible and no file is left behind; the stream's own error is rethrown unchanged.
    ///
    /// - Throws: `SpoolError` with a validation code (see `ResourceDraft.validate()`), `.bundleNotFound`,
    ///   `.bundleNotOpen`, `.spoolFull`, `.io`, `.database`; or the stream's error; or `CancellationError`.
    public func writeResource<Chunks: AsyncSequence>(
        bundleID: String, draft: ResourceDraft, chunks: Chunks
    ) async throws -> SpooledResource where Chunks.Element: ContiguousBytes {
        let name = try draft.validate()
        let writer = ResourceWriter(store: self, bundleID: bundleID, url: draft.url)
        committer.writerStarted()
        defer { committer.writerFinished() }
        do {
            for try await chunk in chunks {
                try Task.checkCancellation()
                let total = chunk.withUnsafeBytes { $0.count }
                var offset = 0
                while offset < total {
                    offset += chunk.withUnsafeBytes { writer.take(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
                    if writer.bufferIsFull { try await writer.flush() }
                }
            }
            try Task.checkCancellation()
            return try await writer.commit(draft: draft, name: name)
        } catch {
            await writer.abandon()
            throw error
        }
    }

    /// Appends a resource whose bytes arrive one at a time (e.g. `URLSession.AsyncBytes`); see the chunked variant.
    public func writeResource<Bytes: AsyncSequence>(
        bundleID: String, draft: ResourceDraft, bytes: Bytes
    ) async throws -> SpooledResource where Bytes.Element == UInt8 {
        try await writeResource(bundleID: bundleID, draft: draft, chunks: RechunkedBytes(base: bytes))
    }
}

/// Groups a byte-at-a-time sequence into 64 KiB chunks.
package struct RechunkedBytes<Base: AsyncSequence>: AsyncSequence where Base.Element == UInt8 {
    package typealias Element = [UInt8]
    let base: Base

    package init(base: Base) { self.base = base }

    package struct AsyncIterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        var finished = false

        package mutating func next() async throws -> [UInt8]? {
            guard !finished else { return nil }
            var chunk: [UInt8] = []
            chunk.reserveCapacity(64 << 10)
            while chunk.count < 64 << 10 {
                guard let byte = try await base.next() else {
                    finished = true
                    break
                }
                chunk.append(byte)
            }
            return chunk.isEmpty ? nil : chunk
        }
    }

    package func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator()) }
}

/// One resource being written: hashes, buffers, spills to a payload file past the inline threshold, commits.
private final class ResourceWriter {
    private let store: SpoolStore
    private let bundleID: String
    private let url: String
    private var sha256 = SHA256Hasher()
    private var crc32c = CRC32C()
    private var size: Int64 = 0
    private let buffer: WriteBuffer
    private var file: PayloadFile?
    private var reserved: Int64 = 0
    /// When this resource stops waiting for a full disk to get room.
    private var diskFullDeadline: ContinuousClock.Instant?

    init(store: SpoolStore, bundleID: String, url: String) {
        self.store = store
        self.bundleID = bundleID
        self.url = url
        self.buffer = store.writeBuffers.take()
    }

    deinit { store.writeBuffers.give(buffer) }

    var bufferIsFull: Bool { buffer.isFull }

    /// Buffers as much of `bytes` as fits; returns how much it took. The bytes are hashed when the buffer is written
    /// (or committed inline), at the same time as the write.
    func take(_ bytes: UnsafeRawBufferPointer) -> Int {
        let taken = UnsafeRawBufferPointer(rebasing: bytes.prefix(buffer.remainingCapacity))
        buffer.append(taken)
        size += Int64(taken.count)
        return taken.count
    }

    /// SHA-256 and CRC32C over what the buffer holds.
    private func hashBuffered() {
        let bytes = UnsafeRawBufferPointer(start: buffer.base, count: buffer.count)
        sha256.update(bytes)
        crc32c.update(bytes)
    }

    /// Writes the buffer to the payload file (creating it on first use), hashing it meanwhile: the write(2) runs on a
    /// blocking-I/O thread and the CRC32C in a child task while this task computes the SHA-256 of the same bytes, so a
    /// chunk costs the longest of them rather than their sum (on a disk as fast as SHA-256, about half the time).
    func flush() async throws {
        guard buffer.count > 0 else { return }
        try await reserve(upTo: size)
        if file == nil {
            let (layout, prefix) = (store.layout, bundleID)
            file = try await waitingForDiskSpace { try await PayloadFile.create(in: layout, namePrefix: prefix) }
        }
        let file = file!
        let buffer = buffer
        var firstFailure: (any Error)?
        // The child computes the CRC32C too (a tenth of SHA-256's cost), which evens out the two sides.
        let crcBefore = crc32c.value
        async let checksum: CRC32C = {
            var crc = CRC32C(resuming: crcBefore)
            crc.update(UnsafeRawBufferPointer(start: buffer.base, count: buffer.count))
            return crc
        }()
        async let written: Void = file.write(buffer)
        sha256.update(UnsafeRawBufferPointer(start: buffer.base, count: buffer.count))
        crc32c = await checksum
        do {
            try await written
        } catch {
            firstFailure = error
        }
        if firstFailure != nil {
            // A full disk: wait for room and write the rest (the file resumes where the failed write stopped).
            try await waitingForDiskSpace {
                if let failure = firstFailure {
                    firstFailure = nil
                    throw failure
                }
                try await file.write(buffer)
            }
        }
        buffer.removeAll()
    }

    func commit(draft: ResourceDraft, name: String) async throws -> SpooledResource {
        let payload: CommitItem.Payload
        if file == nil && size <= Int64(store.options.inlineThresholdBytes) {
            try await reserve(upTo: size)
            hashBuffered()
            payload = .inline(buffer)
        } else {
            try await flush()
            payload = .file(relativePath: try await file!.publish())
        }
        let item = CommitItem(
            bundleID: bundleID, name: name, url: draft.url, contentType: draft.contentType,
            statusCode: draft.statusCode, metadataJSON: MetadataJSON.encode(draft.metadata), size: size,
            sha256: sha256.finalize().hexString, crc32c: crc32c.value, payload: payload)
        let committer = store.committer
        // A commit that SQLite refused with SQLITE_FULL was rolled back whole: trying it again cannot make two rows.
        // (Not after a failed fsync: whether those WAL frames count is not known.)
        let resource = try await waitingForDiskSpace(
            retrying: { ($0.underlying as? SQLiteResultError)?.isDiskFull == true }
        ) { try await committer.commit(item) }
        store.capacity.release(reserved, committedBytes: size)
        reserved = 0
        return resource
    }

    /// Drops whatever was written: the payload file (in tmp/ or data/) and the reservation.
    func abandon() async {
        if let file { await file.discard() }
        store.capacity.release(reserved, committedBytes: 0)
        reserved = 0
    }

    /// Runs `operation`; while it fails because the disk is full, waits for room (a drainer delivering and removing
    /// payloads) and tries again, for up to `spoolFullWait` from the first failure in this resource. Then the
    /// failure is thrown as `spoolFull`, saying how long it waited.
    private func waitingForDiskSpace<T>(
        retrying: (SpoolError) -> Bool = { _ in true }, _ operation: () async throws -> T
    ) async throws -> T {
        while true {
            do {
                return try await operation()
            } catch let error as SpoolError where error.code == .spoolFull && retrying(error) {
                let wait = store.options.spoolFullWait
                let deadline = diskFullDeadline ?? ContinuousClock.now + wait
                diskFullDeadline = deadline
                let layout = store.layout
                while ContinuousClock.now < deadline {
                    try await Task.sleep(for: SpoolStore.diskFullPollInterval)
                    let needed = Int64(buffer.count)
                    if await BlockingIO.value({ layout.diskHasRoomForWriters(needing: needed) }) { break }
                }
                guard ContinuousClock.now < deadline else {
                    throw SpoolError(
                        .spoolFull,
                        "the disk holding spool '\(layout.root)' is full and nothing was freed within \(wait); the "
                            + "resource for \(Validation.quoted(url)) was not kept. Run spool-drain, purge delivered "
                            + "payloads, or free space on the disk", underlying: error)
                }
            }
        }
    }

    private func reserve(upTo total: Int64) async throws {
        guard store.capacity.isLimited, total > reserved else { return }
        let needed = total - reserved
        // A stream headed for a file reserves ahead in steps (fewer checks), but is only refused for what it needs.
        let step = max(SpoolStore.reservationStepBytes, needed)
        let amount = file == nil && total <= Int64(store.options.inlineThresholdBytes) ? needed : step
        reserved += try await store.capacity.reserve(amount, atLeast: needed, for: url)
    }
}
