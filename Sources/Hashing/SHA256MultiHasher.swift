import CSHA256Multi

/// SHA-256 digests of up to four messages that grow by the same number of bytes at a time — equal parts of a
/// multipart upload, for instance — computed side by side.
///
/// With the CPU's SHA extensions the messages are interleaved (`CSHA256Multi`): four hash at ~1.75× the bytes per
/// second of one at a time (two at ~1.25×). Without them it is one `SHA256Hasher` per message. Either way the digests
/// are plain SHA-256: only the speed differs.
///
/// ```swift
/// var hasher = SHA256MultiHasher(count: 2)
/// hasher.update([firstPiece, secondPiece])   // equal lengths
/// let digests = hasher.finalize()            // [first, second]
/// ```
public struct SHA256MultiHasher: Sendable {
    /// The most messages one hasher takes.
    public static let maximumCount = Int(PIPELINE_SHA256_MULTI_LANES)

    /// Whether this process hashes the messages interleaved (the CPU has the SHA extensions).
    public static let isInterleaved = pipeline_sha256_multi_available() != 0

    private enum Engine: Sendable {
        case interleaved(pipeline_sha256_multi)
        case separate([SHA256Hasher])
    }

    private var engine: Engine

    /// How many messages.
    public let count: Int

    /// `count` (1 to ``maximumCount``) empty messages.
    public init(count: Int) {
        self.init(count: count, interleaved: Self.isInterleaved)
    }

    /// `count` empty messages, hashed interleaved or not; `interleaved: true` requires ``isInterleaved``. For tests
    /// that compare the two ways on the same machine.
    init(count: Int, interleaved: Bool) {
        precondition((1...Self.maximumCount).contains(count), "SHA256MultiHasher: \(count) messages")
        precondition(!interleaved || Self.isInterleaved, "this CPU has no SHA extensions")
        self.count = count
        if interleaved {
            var context = pipeline_sha256_multi()
            pipeline_sha256_multi_init(&context, Int32(count))
            engine = .interleaved(context)
        } else {
            engine = .separate(Array(repeating: SHA256Hasher(), count: count))
        }
    }

    /// Feeds `pieces[i]` to message i.
    ///
    /// - Precondition: one piece per message, all of the same length.
    public mutating func update(_ pieces: [UnsafeRawBufferPointer]) {
        precondition(pieces.count == count, "SHA256MultiHasher: \(pieces.count) pieces for \(count) messages")
        let length = pieces[0].count
        precondition(pieces.allSatisfy { $0.count == length }, "SHA256MultiHasher: pieces of different lengths")
        guard length > 0 else { return }
        switch engine {
        case .interleaved(var context):
            let pointers: [UnsafeRawPointer?] = pieces.map { $0.baseAddress }
            pointers.withUnsafeBufferPointer { pipeline_sha256_multi_update(&context, $0.baseAddress, length) }
            engine = .interleaved(context)
        case .separate(var hashers):
            for (index, piece) in pieces.enumerated() { hashers[index].update(piece) }
            engine = .separate(hashers)
        }
    }

    /// The 32-byte digests of the messages, in order.
    public func finalize() -> [[UInt8]] {
        switch engine {
        case .interleaved(var context):
            var bytes = [UInt8](repeating: 0, count: SHA256Hasher.digestByteCount * count)
            bytes.withUnsafeMutableBufferPointer { pipeline_sha256_multi_final(&context, $0.baseAddress!) }
            return (0..<count).map { Array(bytes[$0 * 32..<($0 + 1) * 32]) }
        case .separate(let hashers):
            return hashers.map { $0.finalize() }
        }
    }
}
