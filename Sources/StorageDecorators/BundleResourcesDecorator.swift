import Foundation
import Hashing
import Spool
import Synchronization

/// Packs each bundle's resources into one zip resource, `bundle.zip`, written to the base bundle when the bundle
/// closes (SPEC §8). Inside, every resource is a member named `{seq:06}-{name}`, and `manifest.json` (the last
/// member) keeps what the zip format cannot: each member's URL, content type, status code, metadata, size and SHA-256,
/// plus the bundle's id and metadata.
///
/// Each resource is streamed to a private scratch file in the spool's `tmp/` (hashing it on the way), then deflated
/// into the bundle's zip (stored as is when its content type is compressed already); zip64 is used when sizes or
/// offsets need it. Memory stays flat whatever the sizes.
///
/// Durability moves to the close: a resource written here is on local disk but not in the spool until the bundle
/// closes and `bundle.zip` is spooled (a crash before that loses the bundle's zip, as it would lose an unsealed
/// producer's work in progress). If `withBundle`'s body throws, what was written is packed and spooled anyway and
/// the bundle left open. An empty bundle writes no zip.
public final class BundleResourcesDecorator<Base: ResourceStorage>: ResourceStorage {
    /// The storage `bundle.zip` goes to.
    public let base: Base
    /// How bundles are packed.
    public let options: BundleOptions

    /// Wraps `base`.
    ///
    /// - Throws: `SpoolError.invalidConfiguration` when an option is not acceptable.
    public init(base: Base, options: BundleOptions = BundleOptions()) throws {
        try options.validate()
        self.base = base
        self.options = options
    }

    /// The base storage's scratch directory.
    public var scratchDirectory: String { base.scratchDirectory }

    /// Opens the bundle in the base storage and returns it wrapped; resources written to it are packed.
    ///
    /// - Throws: as the base storage's `openBundle(_:metadata:)`.
    public func openBundle(_ id: String, metadata: [String: String]) async throws -> PackingBundle<Base.Bundle> {
        PackingBundle(
            base: try await base.openBundle(id, metadata: metadata), metadata: metadata, options: options,
            scratchDirectory: scratchDirectory)
    }
}

/// A bundle of `BundleResourcesDecorator`: collects resources into `bundle.zip`, spooled when it closes.
public final class PackingBundle<Base: ResourceBundle>: ResourceBundle {
    /// The bundle `bundle.zip` goes to.
    public let base: Base
    private let metadata: [String: String]
    private let options: BundleOptions
    private let scratchDirectory: String
    private let gate: WriteGate

    private struct State {
        /// The zip being assembled, started by the first write.
        var writer: Task<BundleZipWriter, any Error>?
        /// Packing and spooling `bundle.zip`, started by the first `close()` or `leaveOpen()`; others await it.
        var packing: Task<Void, any Error>?
        var packed = false
    }

    private let state = Mutex(State())

    init(base: Base, metadata: [String: String], options: BundleOptions, scratchDirectory: String) {
        self.base = base
        self.metadata = metadata
        self.options = options
        self.scratchDirectory = scratchDirectory
        gate = WriteGate(bundleID: base.id)
    }

    /// The bundle id.
    public var id: String { base.id }

    /// Streams the resource to a scratch file, then adds it to the bundle's zip and manifest.
    ///
    /// - Returns: the resource, placed as `.packed` (spooled with `bundle.zip` when the bundle closes).
    /// - Throws: validation errors of `ResourceDraft.validate()`; `SpoolError.bundleNotOpen` after `close()`;
    ///   `SpoolError.archiveLimitExceeded` past `BundleOptions.maxMembers`; `SpoolError.io`; the stream's own
    ///   error, unchanged (then nothing of the resource is kept).
    public func writeResource<Chunks: AsyncSequence>(
        _ draft: ResourceDraft, stream: Chunks
    ) async throws -> [StoredResource] where Chunks.Element: ContiguousBytes {
        try await gate.write {
            let name = try draft.validate()
            let writer = try await zipWriter()
            return try await ScratchFile.with(in: scratchDirectory, namePrefix: "bundle-member") { file in
                var hasher = SHA256Hasher()
                for try await chunk in stream {
                    try Task.checkCancellation()
                    chunk.withUnsafeBytes { hasher.update($0) }
                    try await file.append(chunk)
                }
                try await file.flush()
                let sha256 = hasher.finalize().hexString
                let member = try await writer.add(
                    draft, name: name, from: file, size: file.size, sha256: sha256, maxMembers: options.maxMembers)
                return [
                    StoredResource(
                        url: draft.url, contentType: draft.contentType, statusCode: draft.statusCode,
                        metadata: draft.metadata, size: file.size, sha256: sha256,
                        placement: .packed(bundleID: id, member: member))
                ]
            }
        }
    }

    /// Waits for writes in flight, spools `bundle.zip` (when anything was written), then closes the base bundle.
    /// A failed close can be retried: the zip is kept until it is spooled.
    ///
    /// - Throws: `SpoolError` from spooling `bundle.zip` or from the base bundle.
    public func close() async throws {
        try await pack()
        try await base.close()
    }

    /// Spools what was written as `bundle.zip`, and leaves the base bundle open.
    ///
    /// - Throws: `SpoolError` from spooling `bundle.zip` or from the base bundle.
    public func leaveOpen() async throws {
        try await pack()
        try await base.leaveOpen()
    }

    private func zipWriter() async throws -> BundleZipWriter {
        let task = state.withLock { state in
            if let writer = state.writer { return writer }
            let (id, metadata, directory) = (id, metadata, scratchDirectory)
            let writer = Task { try await BundleZipWriter.create(bundleID: id, metadata: metadata, in: directory) }
            state.writer = writer
            return writer
        }
        do {
            return try await task.value
        } catch {
            // Nothing was packed into a zip that could not be started: the next write starts afresh.
            state.withLock { state in
                if state.writer == task { state.writer = nil }
            }
            throw error
        }
    }

    private func pack() async throws {
        await gate.close()
        let task = state.withLock { state -> Task<Void, any Error>? in
            if state.packed { return nil }
            if let packing = state.packing { return packing }
            let writer = state.writer
            let packing = Task { try await spoolArchive(writer) }
            state.packing = packing
            return packing
        }
        guard let task else { return }
        do {
            try await task.value
            state.withLock { $0.packed = true }
        } catch {
            state.withLock { $0.packing = nil }  // let a later close try again
            throw error
        }
    }

    private func spoolArchive(_ writerTask: Task<BundleZipWriter, any Error>?) async throws {
        guard let writerTask else { return }
        let writer = try await writerTask.value
        guard writer.memberCount > 0 else {
            await writer.discard()
            return
        }
        let zipFile = try await writer.finish()
        let draft = ResourceDraft(
            url: "bundle://\(id)/\(options.archiveName)", contentType: "application/zip", statusCode: 200,
            metadata: [DecoratorMetadata.bundleMembers: String(writer.memberCount)], name: options.archiveName)
        _ = try await base.writeResource(draft, stream: FileChunks(path: zipFile.path))
        await writer.discard()
    }
}
