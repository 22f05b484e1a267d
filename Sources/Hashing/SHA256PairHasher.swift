import CSHA256x2

/// Two SHA-256 digests computed side by side over two messages that grow by the same number of bytes at a time —
/// two equal parts of a multipart upload, for instance.
///
/// With the CPU's SHA extensions the two messages are interleaved (`CSHA256x2`), which hashes ~1.25× the bytes per
/// second of one message at a time; without them it is two `SHA256Hasher`s. Either way the digests are plain
/// SHA-256: only the speed differs.
///
/// ```swift
/// var pair = SHA256PairHasher()
/// pair.update(firstPiece, secondPiece)   // equal lengths
/// let (first, second) = pair.finalize()
/// ```
public struct SHA256PairHasher: Sendable {
    /// Whether this process hashes the two messages interleaved (the CPU has the SHA extensions).
    public static let isInterleaved = pipeline_sha256x2_available() != 0

    private enum Engine: Sendable {
        case interleaved(pipeline_sha256x2)
        case separate(SHA256Hasher, SHA256Hasher)
    }

    private var engine: Engine

    /// Two empty messages.
    public init() {
        self.init(interleaved: Self.isInterleaved)
    }

    /// Two empty messages, hashed interleaved or not; `interleaved: true` requires ``isInterleaved``. For tests that
    /// compare the two ways on the same machine.
    init(interleaved: Bool) {
        precondition(!interleaved || Self.isInterleaved, "this CPU has no SHA extensions")
        if interleaved {
            var context = pipeline_sha256x2()
            pipeline_sha256x2_init(&context)
            engine = .interleaved(context)
        } else {
            engine = .separate(SHA256Hasher(), SHA256Hasher())
        }
    }

    /// Feeds `first` to the first message and `second` to the second.
    ///
    /// - Precondition: both buffers have the same length.
    public mutating func update(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) {
        precondition(first.count == second.count, "SHA256PairHasher: pieces of \(first.count) and \(second.count) bytes")
        guard !first.isEmpty else { return }
        switch engine {
        case .interleaved(var context):
            pipeline_sha256x2_update(&context, first.baseAddress, second.baseAddress, first.count)
            engine = .interleaved(context)
        case .separate(var one, var two):
            one.update(first)
            two.update(second)
            engine = .separate(one, two)
        }
    }

    /// The 32-byte digests of the two messages.
    public func finalize() -> (first: [UInt8], second: [UInt8]) {
        switch engine {
        case .interleaved(var context):
            var first = [UInt8](repeating: 0, count: SHA256Hasher.digestByteCount)
            var second = first
            first.withUnsafeMutableBufferPointer { one in
                second.withUnsafeMutableBufferPointer { two in
                    pipeline_sha256x2_final(&context, one.baseAddress!, two.baseAddress!)
                }
            }
            return (first, second)
        case .separate(let one, let two):
            return (one.finalize(), two.finalize())
        }
    }
}
