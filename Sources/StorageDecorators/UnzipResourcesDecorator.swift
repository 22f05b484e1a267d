import Foundation
import Hashing
import Spool

/// Metadata keys the decorators add to the resources they write.
public enum DecoratorMetadata {
    /// On a resource made by `UnzipResourcesDecorator`: `gzip` (decompressed) or `zip` (a member). Such a resource
    /// is never expanded again, by this decorator or another one stacked on it: archives are expanded one level.
    public static let unzipSource = "unzip-source"
    /// On a zip member: its path in the archive, sanitised and percent-encoded (as in its URL).
    public static let unzipMember = "unzip-member"
    /// On a zip member: SHA-256 (hex) of the whole archive it came from.
    public static let unzipArchiveSHA256 = "unzip-archive-sha256"
    /// On an archive stored unchanged: why it was not expanded (corrupt, encrypted, unsupported method, empty).
    public static let unzipWarning = "unzip-warning"
    /// On a `bundle.zip`: how many resources it packs.
    public static let bundleMembers = "bundle-members"
}

/// Expands archives before they reach the base storage (SPEC §8).
///
/// - A gzip resource (`.gz`/`.tgz` name, `application/gzip` or `application/x-gzip`, or gzip's first bytes) is stored
///   decompressed: `.gz` is dropped from its URL and name (`.tgz` becomes `.tar`), its content type is guessed from
///   the remaining name when the original only said "gzip", and it gets `unzip-source: gzip`. Multi-member streams
///   are read whole. Streamed: memory stays flat whatever the size.
/// - A zip resource (`.zip` name, a zip content type, or zip's first bytes under a generic content type) is stored
///   as one resource per file member, with URL `{url}/{member}`, the archive's status code and metadata plus
///   `unzip-source: zip`, `unzip-member` and `unzip-archive-sha256`, and a content type guessed from the member's
///   extension. The archive is first copied to a private scratch file in the spool's `tmp/` (its central directory
///   is at the end), then members are expanded one chunk at a time.
/// - Member paths are sanitised; `..`, absolute paths, backslashes, NULs and symbolic links are refused
///   (`SpoolError.unsafeArchiveMember`) before anything is stored.
/// - Zip bombs are refused (`SpoolError.archiveLimitExceeded`) by the limits of `UnzipOptions`: total expanded
///   size, compression ratio, member count, overlapping members.
/// - A corrupt archive (or an encrypted one, or one using a compression method other than stored and deflate) is
///   stored unchanged with `unzip-warning` saying why. Damage found in a zip member after earlier members were
///   stored keeps those and stores the whole archive as well; nothing is ever dropped.
/// - Archives inside archives are stored as they are: one level only.
public final class UnzipResourcesDecorator<Base: ResourceStorage>: ResourceStorage {
    /// The storage the expanded resources go to.
    public let base: Base
    /// What is expanded, and the limits.
    public let options: UnzipOptions

    /// Wraps `base`.
    ///
    /// - Throws: `SpoolError.invalidConfiguration` when an option is out of range.
    public init(base: Base, options: UnzipOptions = UnzipOptions()) throws {
        try options.validate()
        self.base = base
        self.options = options
    }

    /// The base storage's scratch directory.
    public var scratchDirectory: String { base.scratchDirectory }

    /// Opens the bundle in the base storage and returns it wrapped.
    ///
    /// - Throws: as the base storage's `openBundle(_:metadata:)`.
    public func openBundle(_ id: String, metadata: [String: String]) async throws -> UnzippingBundle<Base.Bundle> {
        try UnzippingBundle(
            base: try await base.openBundle(id, metadata: metadata), options: options,
            scratchDirectory: scratchDirectory)
    }
}

/// A bundle of `UnzipResourcesDecorator`: expands archive resources on their way to the base bundle.
public final class UnzippingBundle<Base: ResourceBundle>: ResourceBundle {
    /// The bundle expanded resources go to.
    public let base: Base
    private let options: UnzipOptions
    private let scratchDirectory: String

    /// Wraps one bundle directly (`UnzipResourcesDecorator.openBundle` does this for every bundle it opens).
    ///
    /// - Parameters:
    ///   - base: The bundle expanded resources go to.
    ///   - options: What is expanded, and the limits.
    ///   - scratchDirectory: The spool's `tmp/` (`ResourceStorage.scratchDirectory`), for archives in transit.
    /// - Throws: `SpoolError.invalidConfiguration` when an option is out of range.
    public init(base: Base, options: UnzipOptions = UnzipOptions(), scratchDirectory: String) throws {
        try options.validate()
        self.base = base
        self.options = options
        self.scratchDirectory = scratchDirectory
    }

    /// The bundle id.
    public var id: String { base.id }

    /// Writes a resource, expanding it first when it is a gzip stream or a zip archive (see
    /// `UnzipResourcesDecorator`).
    ///
    /// - Returns: what the base bundle stored: one resource, or one per zip member (plus the archive itself when a
    ///   member turned out corrupt).
    /// - Throws: as the base bundle; `SpoolError.unsafeArchiveMember`, `SpoolError.archiveLimitExceeded`; the
    ///   stream's own error, unchanged.
    public func writeResource<Chunks: AsyncSequence>(
        _ draft: ResourceDraft, stream: Chunks
    ) async throws -> [StoredResource] where Chunks.Element: ContiguousBytes {
        _ = try draft.validate()
        let source = ChunkSource(stream)
        switch try await archiveKind(of: draft, source) {
        case nil: return try await base.writeResource(draft, stream: source.chunks)
        case .gzip: return try await gunzip(draft, source)
        case .zip: return try await unzip(draft, source)
        }
    }

    /// Seals the base bundle.
    ///
    /// - Throws: as the base bundle.
    public func close() async throws { try await base.close() }

    /// Leaves the base bundle open.
    ///
    /// - Throws: as the base bundle.
    public func leaveOpen() async throws { try await base.leaveOpen() }

    private enum ArchiveKind {
        case gzip
        case zip
    }

    private func archiveKind<S>(of draft: ResourceDraft, _ source: ChunkSource<S>) async throws -> ArchiveKind? {
        let marks = [DecoratorMetadata.unzipSource, DecoratorMetadata.unzipWarning, DecoratorMetadata.bundleMembers]
        if marks.contains(where: { draft.metadata[$0] != nil }) { return nil }
        let name = (draft.name ?? ObjectKey.name(fromURL: draft.url)).lowercased()
        let type = MediaTypes.essence(draft.contentType)
        if options.expandZip && (name.hasSuffix(".zip") || MediaTypes.zipTypes.contains(type)) { return .zip }
        if options.expandGzip
            && (name.hasSuffix(".gz") || name.hasSuffix(".tgz") || MediaTypes.gzipTypes.contains(type))
        {
            return .gzip
        }
        guard options.detectByContent, options.expandGzip || options.expandZip else { return nil }
        let magic = try await source.peek(4)
        if options.expandGzip && magic.starts(with: [0x1F, 0x8B, 0x08]) { return .gzip }
        if options.expandZip && magic == [0x50, 0x4B, 0x03, 0x04] && MediaTypes.genericTypes.contains(type)
            && !name.contains(".")
        {
            return .zip
        }
        return nil
    }

    // MARK: gzip

    private func gunzip<S>(_ draft: ResourceDraft, _ source: ChunkSource<S>) async throws -> [StoredResource] {
        try await ScratchFile.with(in: scratchDirectory, namePrefix: "unzip-gzip") { original in
            let limits = ExpansionLimits(options: options, subject: "gzip resource \(Validation.quoted(draft.url))")
            let pipe = try GunzipPipe(source: source, original: original, limits: limits)
            do {
                return try await base.writeResource(decompressed(draft), stream: pipe.chunks)
            } catch let corruption as ArchiveCorruption {
                try await pipe.copyRemainingInput()
                return try await storeUnchanged(
                    draft, from: original, warning: "gzip data is corrupt (\(corruption.reason)); stored unchanged")
            }
        }
    }

    /// The draft of the decompressed resource: `.gz` dropped, content type guessed when it only said "gzip".
    private func decompressed(_ draft: ResourceDraft) -> ResourceDraft {
        var result = draft
        result.url = Self.droppingGzipSuffix(draft.url)
        result.name = draft.name.map(Self.droppingGzipSuffix)
        let type = MediaTypes.essence(draft.contentType)
        if MediaTypes.gzipTypes.contains(type) || MediaTypes.genericTypes.contains(type) {
            result.contentType = MediaTypes.guess(fromName: result.name ?? ObjectKey.name(fromURL: result.url))
        }
        result.metadata[DecoratorMetadata.unzipSource] = "gzip"
        return result
    }

    /// `a.json.gz` → `a.json`, `a.tgz` → `a.tar`, in a name or in a URL's path (its query and fragment kept).
    static func droppingGzipSuffix(_ text: String) -> String {
        let split = text.firstIndex(where: { $0 == "?" || $0 == "#" }) ?? text.endIndex
        let path = text[..<split]
        let lowered = path.lowercased()
        var kept: Substring
        if lowered.hasSuffix(".tgz") {
            kept = path.dropLast(4) + ".tar"
        } else if lowered.hasSuffix(".gz") {
            kept = path.dropLast(3)
        } else {
            return text
        }
        // Nothing left of the last segment ("/.gz"): keep the original rather than invent a name.
        if kept.isEmpty || kept.hasSuffix("/") || kept.hasSuffix(":") { kept = path }
        return String(kept + text[split...])
    }

    // MARK: zip

    private func unzip<S>(_ draft: ResourceDraft, _ source: ChunkSource<S>) async throws -> [StoredResource] {
        try await ScratchFile.with(in: scratchDirectory, namePrefix: "unzip-zip") { archive in
            var hasher = SHA256Hasher()
            while let chunk = try await source.next() {
                chunk.withUnsafeBytes { hasher.update($0) }
                try await archive.append(chunk)
            }
            try await archive.flush()
            let plan: ZipPlan
            do {
                let directory = try await ZipDirectory.read(
                    archive, size: archive.size, maxMembers: options.maxMembers, archive: draft.url)
                plan = try ZipPlan(
                    directory, archive: draft, archiveSize: archive.size, archiveSHA256: hasher.finalize().hexString,
                    options: options)
            } catch let corruption as ArchiveCorruption {
                return try await storeUnchanged(
                    draft, from: archive, warning: "zip archive is corrupt (\(corruption.reason)); stored unchanged")
            }
            if let reason = plan.unsupported {
                return try await storeUnchanged(draft, from: archive, warning: "\(reason); stored unchanged")
            }
            var stored: [StoredResource] = []
            for member in plan.members {
                do {
                    stored += try await base.writeResource(
                        member.draft, stream: ZipMemberChunks(file: archive, entry: member.entry))
                } catch let corruption as ArchiveCorruption {
                    let before = stored.isEmpty ? "" : "; the \(stored.count) members before it were stored"
                    return try await stored
                        + storeUnchanged(
                            draft, from: archive,
                            warning: "zip archive is corrupt (\(corruption.reason)); stored unchanged\(before)")
                }
            }
            return stored
        }
    }

    /// Stores the archive's original bytes with a warning saying why it was not expanded.
    private func storeUnchanged(
        _ draft: ResourceDraft, from file: ScratchFile, warning: String
    ) async throws -> [StoredResource] {
        try await file.flush()
        var kept = draft
        kept.metadata[DecoratorMetadata.unzipWarning] = warning
        return try await base.writeResource(kept, stream: FileChunks(path: file.path))
    }
}

/// What to store of a zip archive, decided from its central directory before anything is stored: every check that
/// can refuse the archive (zip-slip, limits, URLs, metadata) runs here, so that a refused archive leaves nothing.
private struct ZipPlan {
    struct Member {
        var entry: ZipEntry
        var draft: ResourceDraft
    }

    var members: [Member] = []
    /// Why the archive is stored unchanged instead (encrypted, unsupported method, no files), if it is.
    var unsupported: String?

    /// - Throws: `SpoolError.unsafeArchiveMember`, `SpoolError.archiveLimitExceeded`, validation errors naming a
    ///   member's URL or metadata; `ArchiveCorruption` for a directory entry holding data.
    init(
        _ directory: ZipDirectory, archive: ResourceDraft, archiveSize: Int64, archiveSHA256: String,
        options: UnzipOptions
    ) throws {
        // Safety first, for every entry: a zip-slip member refuses the archive even next to an unreadable one.
        for entry in directory.entries {
            guard let path = try ArchiveMemberPath.sanitize(entry.name, archive: archive.url) else {
                if entry.uncompressedSize > 0 {
                    throw ArchiveCorruption(reason: "directory entry \(Validation.quoted(entry.name)) holds data")
                }
                continue
            }
            if entry.isSymbolicLink {
                throw SpoolError(
                    .unsafeArchiveMember,
                    "zip member \(Validation.quoted(entry.name)) of \(Validation.quoted(archive.url)) is a symbolic "
                        + "link; refused as a zip-slip attempt and nothing of the archive was stored: write it "
                        + "without unzipResources if it is wanted as it is")
            }
            var metadata = archive.metadata
            metadata[DecoratorMetadata.unzipSource] = "zip"
            metadata[DecoratorMetadata.unzipMember] = path
            metadata[DecoratorMetadata.unzipArchiveSHA256] = archiveSHA256
            let draft = ResourceDraft(
                url: ArchiveMemberPath.memberURL(archive: archive.url, encodedPath: path),
                contentType: MediaTypes.guess(fromName: entry.name), statusCode: archive.statusCode,
                metadata: metadata)
            _ = try draft.validate()
            members.append(Member(entry: entry, draft: draft))
        }
        if let entry = members.first(where: { $0.entry.isEncrypted })?.entry {
            unsupported = "zip member \(Validation.quoted(entry.name)) is encrypted"
            return
        }
        if let entry = members.first(where: { !$0.entry.isSupportedMethod })?.entry {
            unsupported =
                "zip member \(Validation.quoted(entry.name)) uses compression method \(entry.method); only stored "
                + "(0) and deflate (8) are expanded"
            return
        }
        if members.isEmpty {
            unsupported = "zip archive has no file members"
            return
        }
        var total: Int64 = 0
        for member in members {
            let entry = member.entry
            try ExpansionLimits(
                options: options,
                subject: "zip member \(Validation.quoted(entry.name)) of \(Validation.quoted(archive.url))"
            ).check(expanded: entry.uncompressedSize, compressed: entry.compressedSize)
            let (sum, overflow) = total.addingReportingOverflow(entry.uncompressedSize)
            total = overflow ? .max : sum
            try ExpansionLimits(options: options, subject: "zip archive \(Validation.quoted(archive.url))")
                .check(expanded: total, compressed: archiveSize)
        }
    }
}
