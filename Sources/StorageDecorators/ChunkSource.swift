import Foundation

/// A producer's byte stream, read once, whose first bytes can be looked at before deciding what to do with it (gzip
/// and zip are recognised by their magic bytes). Chunks looked at are kept and handed on first, unchanged and
/// uncopied; the rest come straight from the producer's sequence.
///
/// Used by one task: not `Sendable`.
final class ChunkSource<Base: AsyncSequence> where Base.Element: ContiguousBytes {
    private var iterator: Base.AsyncIterator
    private var pending: [Base.Element] = []
    private var finished = false

    init(_ base: Base) {
        iterator = base.makeAsyncIterator()
    }

    /// Up to `count` of the first bytes (fewer when the stream is shorter), without consuming them.
    ///
    /// - Throws: the producer's error.
    func peek(_ count: Int) async throws -> [UInt8] {
        var bytes = prefixBytes(count)
        while bytes.count < count, !finished {
            guard let chunk = try await iterator.next() else {
                finished = true
                break
            }
            pending.append(chunk)
            bytes = prefixBytes(count)
        }
        return bytes
    }

    /// The next chunk, or nil at the end.
    ///
    /// - Throws: the producer's error.
    func next() async throws -> Base.Element? {
        if !pending.isEmpty { return pending.removeFirst() }
        if finished { return nil }
        guard let chunk = try await iterator.next() else {
            finished = true
            return nil
        }
        return chunk
    }

    /// The remaining chunks as an async sequence, for handing the stream on unchanged. Iterate it once.
    var chunks: Chunks { Chunks(source: self) }

    /// The remaining chunks of a `ChunkSource`.
    struct Chunks: AsyncSequence {
        typealias Element = Base.Element
        let source: ChunkSource

        struct AsyncIterator: AsyncIteratorProtocol {
            let source: ChunkSource
            mutating func next() async throws -> Base.Element? { try await source.next() }
        }

        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(source: source) }
    }

    private func prefixBytes(_ count: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        for chunk in pending where bytes.count < count {
            chunk.withUnsafeBytes { bytes.append(contentsOf: $0.prefix(count - bytes.count)) }
        }
        return bytes
    }
}
