import Foundation
import Spool

/// Decompresses a producer's gzip stream chunk by chunk (multi-member streams included), keeping a copy of the
/// compressed bytes in a scratch file: if the stream turns out corrupt after part of it was handed on, the original
/// can still be stored unchanged. Memory stays flat: one input chunk, one output buffer, the scratch file's buffer.
///
/// Used by one task: not `Sendable`.
final class GunzipPipe<Base: AsyncSequence> where Base.Element: ContiguousBytes {
    /// Decompressed bytes are handed on in chunks of at most this size.
    static var outputChunkBytes: Int { 256 << 10 }

    private let source: ChunkSource<Base>
    private let original: ScratchFile
    private let inflater: ZlibInflater
    private let limits: ExpansionLimits
    private var input: Base.Element?
    private var inputOffset = 0
    private var inputEnded = false
    /// The last member ended and nothing was fed since: a clean end of the stream is allowed here.
    private var memberEnded = false
    private var compressedBytes: Int64 = 0
    private var expandedBytes: Int64 = 0
    private var output = [UInt8](repeating: 0, count: GunzipPipe.outputChunkBytes)

    /// - Parameters:
    ///   - source: The compressed stream.
    ///   - original: Receives every compressed byte taken from `source`.
    ///   - limits: The expansion limits, checked as bytes come out.
    init(source: ChunkSource<Base>, original: ScratchFile, limits: ExpansionLimits) throws {
        self.source = source
        self.original = original
        self.limits = limits
        inflater = try ZlibInflater(.gzip)
    }

    /// The decompressed bytes, for handing to the next storage layer. Iterate once.
    var chunks: Chunks { Chunks(pipe: self) }

    /// Reads what is left of the producer's stream into the copy of the original (after a corruption was found).
    ///
    /// - Throws: the producer's error; `SpoolError.io`.
    func copyRemainingInput() async throws {
        while let chunk = try await source.next() { try await original.append(chunk) }
        try await original.flush()
    }

    /// The next decompressed chunk, or nil at the clean end of the stream.
    ///
    /// - Throws: `ArchiveCorruption` (bad data, truncated stream, trailing garbage); `SpoolError.archiveLimitExceeded`;
    ///   the producer's error.
    func nextChunk() async throws -> [UInt8]? {
        while true {
            guard let chunk = input, inputOffset < chunk.withUnsafeBytes({ $0.count }) else {
                if inputEnded {
                    guard memberEnded else {
                        throw ArchiveCorruption(
                            reason: compressedBytes == 0
                                ? "the gzip stream is empty"
                                : "the gzip stream ends before its last member is complete (truncated)")
                    }
                    return nil
                }
                input = try await source.next()
                inputOffset = 0
                if let input { try await original.append(input) } else { inputEnded = true }
                continue
            }
            if memberEnded {
                // More bytes after a complete member: the next member of a multi-member stream (or garbage, which
                // the header check rejects).
                inflater.reset()
                memberEnded = false
            }
            let step = try chunk.withUnsafeBytes { bytes in
                try output.withUnsafeMutableBytes { room in
                    try inflater.inflate(UnsafeRawBufferPointer(rebasing: bytes[inputOffset...]), into: room)
                }
            }
            inputOffset += step.consumed
            compressedBytes += Int64(step.consumed)
            memberEnded = step.ended
            if step.produced > 0 {
                expandedBytes += Int64(step.produced)
                try limits.check(expanded: expandedBytes, compressed: compressedBytes)
                return Array(output[..<step.produced])
            }
            if step.consumed == 0 && !step.ended {
                throw ArchiveCorruption(reason: "zlib made no progress on the gzip data")
            }
        }
    }

    /// The decompressed chunks of a `GunzipPipe`.
    struct Chunks: AsyncSequence {
        typealias Element = [UInt8]
        let pipe: GunzipPipe

        struct AsyncIterator: AsyncIteratorProtocol {
            let pipe: GunzipPipe
            mutating func next() async throws -> [UInt8]? { try await pipe.nextChunk() }
        }

        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(pipe: pipe) }
    }
}

/// `UnzipOptions`' expansion limits, applied to one archive or member as it expands.
struct ExpansionLimits: Sendable {
    let options: UnzipOptions
    /// What expands, for messages: "gzip resource 'https://…'" or "zip member 'a/b.txt' of 'https://…'".
    let subject: String

    /// Throws when `expanded` bytes (from `compressed` bytes) pass the total size or ratio limit.
    ///
    /// - Throws: `SpoolError.archiveLimitExceeded` naming the subject, the limit and what to do.
    func check(expanded: Int64, compressed: Int64) throws {
        if expanded > options.maxExpandedBytes {
            throw SpoolError(
                .archiveLimitExceeded,
                "\(subject) expands to more than \(options.maxExpandedBytes) bytes, the limit "
                    + "(UnzipOptions.maxExpandedBytes); refused as a likely zip bomb and nothing of it was stored: "
                    + "raise the limit, or write the resource without unzipResources")
        }
        if expanded > options.ratioCheckMinimumBytes,
            expanded / max(compressed, 1) > Int64(options.maxCompressionRatio)
        {
            throw SpoolError(
                .archiveLimitExceeded,
                "\(subject) expands \(expanded / max(compressed, 1)) times (\(expanded) bytes from \(compressed)), "
                    + "past the limit of \(options.maxCompressionRatio) (UnzipOptions.maxCompressionRatio); refused "
                    + "as a likely zip bomb and nothing of it was stored: raise the limit, or write the resource "
                    + "without unzipResources")
        }
    }
}
