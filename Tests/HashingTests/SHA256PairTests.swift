import Hashing
import Testing

@testable import Hashing

@Suite("SHA256PairHasher: two messages hashed side by side give each message's plain SHA-256")
struct SHA256PairTests {
    /// Both ways this machine can run: interleaved (when the CPU has the SHA extensions) and separate.
    static let engines = SHA256PairHasher.isInterleaved ? [true, false] : [false]

    func pairDigests(
        _ first: [UInt8], _ second: [UInt8], pieceLengths: [Int], interleaved: Bool
    ) -> (first: [UInt8], second: [UInt8]) {
        var pair = SHA256PairHasher(interleaved: interleaved)
        var start = 0
        for length in pieceLengths {
            first[start..<start + length].withUnsafeBytes { one in
                second[start..<start + length].withUnsafeBytes { two in pair.update(one, two) }
            }
            start += length
        }
        return pair.finalize()
    }

    @Test("Every length from 0 to 300 bytes in one piece, against OpenSSL", arguments: engines)
    func everyShortLength(interleaved: Bool) {
        var generator = SeededGenerator(seed: 0x2A_256)
        for length in 0...300 {
            let first = randomBytes(length, using: &generator)
            let second = randomBytes(length, using: &generator)
            let digests = pairDigests(first, second, pieceLengths: [length], interleaved: interleaved)
            #expect(digests.first == SHA256Hasher.hash(first), "first message, \(length) bytes")
            #expect(digests.second == SHA256Hasher.hash(second), "second message, \(length) bytes")
        }
    }

    @Test("Known vectors: 'abc' beside 'abd', and a million 'a's beside a million 'b's", arguments: engines)
    func knownVectors(interleaved: Bool) {
        let abc = pairDigests(Array("abc".utf8), Array("abd".utf8), pieceLengths: [3], interleaved: interleaved)
        #expect(abc.first.hexString == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(abc.second == SHA256Hasher.hash("abd".utf8))
        let million = pairDigests(
            [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000),
            [UInt8](repeating: UInt8(ascii: "b"), count: 1_000_000),
            pieceLengths: Array(repeating: 1000, count: 1000), interleaved: interleaved)
        #expect(million.first.hexString == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        #expect(million.second == SHA256Hasher.hash([UInt8](repeating: UInt8(ascii: "b"), count: 1_000_000)))
    }

    @Test("Pieces of random lengths, empty ones included, up to 1 MiB messages", arguments: engines)
    func randomPieces(interleaved: Bool) {
        var generator = SeededGenerator(seed: 0x9A1E)
        for length in [1, 63, 64, 65, 127, 4097, 65_536, 1_048_576 + 17] {
            let first = randomBytes(length, using: &generator)
            let second = randomBytes(length, using: &generator)
            for maxPiece in [1, 70, 4096, length] {
                var lengths: [Int] = []
                var left = length
                while left > 0 {
                    let piece = min(left, Int.random(in: 0...maxPiece, using: &generator))
                    lengths.append(piece)
                    left -= piece
                }
                let digests = pairDigests(first, second, pieceLengths: lengths, interleaved: interleaved)
                #expect(digests.first == SHA256Hasher.hash(first), "\(length) bytes in pieces of at most \(maxPiece)")
                #expect(digests.second == SHA256Hasher.hash(second), "\(length) bytes in pieces of at most \(maxPiece)")
            }
        }
    }

    @Test("The same message twice gives the same digest twice")
    func identicalMessages() {
        var generator = SeededGenerator(seed: 7)
        let message = randomBytes(200_000, using: &generator)
        let digests = pairDigests(message, message, pieceLengths: [200_000], interleaved: SHA256PairHasher.isInterleaved)
        #expect(digests.first == digests.second)
        #expect(digests.first == SHA256Hasher.hash(message))
    }
}
