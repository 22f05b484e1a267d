/// Pseudo-random bytes from a seed (SplitMix64): reproducible content for load generators, benchmarks and tests,
/// generated on the fly so memory stays flat whatever the size.
public struct SeededBytes: AsyncSequence, Sendable {
    /// One chunk.
    public typealias Element = [UInt8]

    /// Total bytes.
    public let size: Int64
    /// The seed; the same seed and size give the same bytes.
    public let seed: UInt64
    /// Bytes per chunk.
    public let chunkBytes: Int

    /// A sequence of `size` bytes.
    public init(size: Int64, seed: UInt64, chunkBytes: Int = 256 << 10) {
        self.size = size
        self.seed = seed
        self.chunkBytes = Swift.max(8, chunkBytes & ~7)
    }

    /// Yields the chunks.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var generator: SplitMix64
        var remaining: Int64
        let chunkBytes: Int

        /// The next chunk.
        public mutating func next() async -> [UInt8]? {
            guard remaining > 0 else { return nil }
            let count = Int(Swift.min(Int64(chunkBytes), remaining))
            remaining -= Int64(count)
            var chunk = [UInt8](repeating: 0, count: (count + 7) & ~7)
            chunk.withUnsafeMutableBytes { raw in
                let words = raw.bindMemory(to: UInt64.self)
                for index in words.indices { words[index] = generator.next() }
            }
            chunk.removeLast(chunk.count - count)
            return chunk
        }
    }

    /// Starts generating.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(generator: SplitMix64(seed: seed), remaining: size, chunkBytes: chunkBytes)
    }
}

/// A small, fast, seedable generator.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// A generator starting from `seed`.
    public init(seed: UInt64) { state = seed }

    /// The next value.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
