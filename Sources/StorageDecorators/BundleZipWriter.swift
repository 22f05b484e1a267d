import Foundation
import Spool
import ZIPFoundation

/// Assembles one bundle's `bundle.zip` in a scratch file with ZIPFoundation (zip64 when sizes or offsets need it),
/// and its `manifest.json` in a second scratch file, one entry per member as it is added, so that neither the
/// members nor the manifest are ever held in memory.
///
/// ZIPFoundation is synchronous and its `Archive` is not thread-safe: every call runs on one serial queue of its own,
/// off Swift's cooperative pool.
final class BundleZipWriter: @unchecked Sendable {
    // @unchecked: `archive`, `memberCount` and the scratch files are touched only on `queue`.
    private let queue = DispatchQueue(label: "pipeline-storage.bundle-zip")
    private let zipFile: ScratchFile
    private let manifestFile: ScratchFile
    private var archive: Archive?
    private(set) var memberCount = 0
    /// Why the zip cannot be trusted any more: a member failed half-way (a full disk, say), and ZIPFoundation does not
    /// take a half-written member back out.
    private var damage: SpoolError?
    private let bundleID: String

    /// The name of the manifest inside the zip.
    static let manifestName = "manifest.json"
    /// Members are read from their scratch files, and deflated, in chunks of this size.
    static let chunkBytes = 256 << 10

    private init(bundleID: String, zipFile: ScratchFile, manifestFile: ScratchFile, archive: Archive) {
        self.bundleID = bundleID
        self.zipFile = zipFile
        self.manifestFile = manifestFile
        self.archive = archive
    }

    /// Starts an empty zip and the manifest's opening for bundle `bundleID`.
    ///
    /// - Throws: `SpoolError.io`.
    static func create(bundleID: String, metadata: [String: String], in directory: String) async throws
        -> BundleZipWriter
    {
        let zipFile = try await ScratchFile.create(in: directory, namePrefix: "bundle-zip")
        let manifestFile = try await ScratchFile.create(in: directory, namePrefix: "bundle-manifest")
        // An empty archive is just an end of central directory record; ZIPFoundation then opens it for update.
        try await zipFile.append([0x50, 0x4B, 0x05, 0x06] + [UInt8](repeating: 0, count: 18))
        try await zipFile.flush()
        let header: [String: Any] = [
            "format": 1, "bundle_id": bundleID, "metadata": metadata,
            "created_at": BundleManifest.isoTimestamp(Int64(Date().timeIntervalSince1970 * 1000)),
        ]
        // The document is written in three parts (opening, one entry per member, closing) so it never sits in memory.
        var opening = try encodeJSON(header)
        opening.removeLast()  // the closing brace; "members" follows
        try await manifestFile.append(opening + Array(#","members":["#.utf8))
        do {
            let archive = try Archive(url: URL(fileURLWithPath: zipFile.path), accessMode: .update)
            return BundleZipWriter(bundleID: bundleID, zipFile: zipFile, manifestFile: manifestFile, archive: archive)
        } catch {
            throw SpoolError(
                .io, "could not start bundle.zip of bundle '\(bundleID)' at '\(zipFile.path)'",
                underlying: SendableErrorDescription(error))
        }
    }

    /// Adds a member from a scratch file holding its bytes, and its manifest entry.
    ///
    /// - Parameters:
    ///   - name: The resource's name; the member's path is `{seq:06}-{name}`, unique in the zip.
    ///   - maxMembers: The most members allowed.
    /// - Returns: the member's path.
    /// - Throws: `SpoolError.archiveLimitExceeded` past `maxMembers`; `SpoolError.io`.
    func add(
        _ draft: ResourceDraft, name: String, from file: ScratchFile, size: Int64, sha256: String, maxMembers: Int
    ) async throws -> String {
        try await onQueue { [self] in
            guard let archive else {
                throw SpoolError(.bundleNotOpen, "bundle '\(bundleID)' was already packed; write to a new bundle")
            }
            if let damage { throw damage }
            guard memberCount < maxMembers else {
                throw SpoolError(
                    .archiveLimitExceeded,
                    "bundle '\(bundleID)' already packs \(memberCount) resources, the limit "
                        + "(BundleOptions.maxMembers); write the rest to a new bundle")
            }
            let seq = memberCount + 1
            let digits = String(seq)
            let path = String(repeating: "0", count: max(0, 6 - digits.count)) + digits + "-" + name
            do {
                try archive.addEntry(
                    with: path, type: .file, uncompressedSize: size,
                    compressionMethod: MediaTypes.isCompressed(draft.contentType) ? .none : .deflate,
                    bufferSize: Self.chunkBytes,
                    provider: { position, count in Data(try file.readBlocking(at: position, count: count)) })
            } catch {
                throw damaged("add '\(path)' to", by: error)
            }
            memberCount = seq
            let entry: [String: Any] = [
                "seq": seq, "path": path, "url": draft.url, "content_type": draft.contentType,
                "status_code": draft.statusCode, "metadata": draft.metadata, "size": size, "sha256": sha256,
            ]
            do {
                let bytes = (seq == 1 ? [] : Array(",".utf8)) + Array("\n".utf8) + (try Self.encodeJSON(entry))
                try bytes.withUnsafeBytes { try manifestFile.appendBlocking($0) }
            } catch {
                throw damaged("record '\(path)' in the manifest of", by: error)
            }
            return path
        }
    }

    /// Closes the manifest, adds it as the last member and closes the zip.
    ///
    /// - Returns: the finished zip's scratch file (removed with `discard()`).
    /// - Throws: `SpoolError.io`.
    func finish() async throws -> ScratchFile {
        try await onQueue { [self] in
            guard let archive else { return zipFile }
            if let damage { throw damage }
            do {
                let closing = #"],"member_count":\#(memberCount)}"# + "\n"
                try Array(closing.utf8).withUnsafeBytes { try manifestFile.appendBlocking($0) }
                try manifestFile.flushBlocking()
                let size = try manifestFile.sizeOnDisk()
                try archive.addEntry(
                    with: Self.manifestName, type: .file, uncompressedSize: size, compressionMethod: .deflate,
                    bufferSize: Self.chunkBytes,
                    provider: { position, count in Data(try manifestFile.readBlocking(at: position, count: count)) })
            } catch {
                throw damaged("add manifest.json to", by: error)
            }
            self.archive = nil  // closes ZIPFoundation's file handle: the zip is complete on disk
            return zipFile
        }
    }

    /// Removes both scratch files.
    func discard() async {
        await withCheckedContinuation { continuation in
            queue.async { [self] in
                archive = nil
                continuation.resume()
            }
        }
        await zipFile.remove()
        await manifestFile.remove()
    }

    /// Records that the zip can no longer be trusted, and returns the error that says so (on `queue` only).
    private func damaged(_ what: String, by error: any Error) -> SpoolError {
        let cause = (error as? SpoolError)?.description ?? String(describing: error)
        let failure = SpoolError(
            .io,
            "could not \(what) bundle.zip of bundle '\(bundleID)' at '\(zipFile.path)' (\(cause)); the zip is "
                + "unusable: this bundle's \(memberCount) packed resources cannot be spooled, write them again to a "
                + "new bundle")
        damage = failure
        return failure
    }

    private func onQueue<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }

    private static func encodeJSON(_ object: [String: Any]) throws -> [UInt8] {
        Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
    }
}
