import Testing

@testable import Hashing

@Suite("SHA256MultiHasher: up to four messages hashed side by side give each message's plain SHA-256")
struct SHA256MultiTests {
    /// Both ways this machine can run: interleaved (when the CPU has the SHA extensions) and separate.
    static let engines = SHA256MultiHasher.isInterleaved ? [true, false] : [false]

    func digests(_ messages: [[UInt8]], pieceLengths: [Int], interleaved: Bool) -> [[UInt8]] {
        var hasher = SHA256MultiHasher(count: messages.count, interleaved: interleaved)
        var start = 0
        for length in pieceLengths {
            func feed(_ index: Int, _ pieces: [UnsafeRawBufferPointer]) {
                guard index < messages.count else { return hasher.update(pieces) }
                messages[index][start..<start + length].withUnsafeBytes { feed(index + 1, pieces + [$0]) }
            }
            feed(0, [])
            start += length
        }
        return hasher.finalize()
    }

    func randomMessages(_ count: Int, length: Int, using generator: inout SeededGenerator) -> [[UInt8]] {
        (0..<count).map { _ in randomBytes(length, using: &generator) }
    }

    @Test(
        "Every length from 0 to 300 bytes in one piece, 1 to 4 messages, against OpenSSL",
        arguments: engines, 1...4)
    func everyShortLength(interleaved: Bool, count: Int) {
        var generator = SeededGenerator(seed: 0x2A_256 + UInt64(count))
        for length in 0...300 {
            let messages = randomMessages(count, length: length, using: &generator)
            let result = digests(messages, pieceLengths: [length], interleaved: interleaved)
            #expect(result == messages.map { SHA256Hasher.hash($0) }, "\(count) messages of \(length) bytes")
        }
    }

    @Test("Known vectors: 'abc' beside others, a million 'a's beside a million others", arguments: engines)
    func knownVectors(interleaved: Bool) {
        let three = [Array("abc".utf8), Array("abd".utf8), Array("xyz".utf8), Array("abc".utf8)]
        let result = digests(three, pieceLengths: [3], interleaved: interleaved)
        #expect(result[0].hexString == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(result == three.map { SHA256Hasher.hash($0) })
        let millions = [UInt8(ascii: "a"), UInt8(ascii: "b")].map { [UInt8](repeating: $0, count: 1_000_000) }
        let big = digests(millions, pieceLengths: Array(repeating: 1000, count: 1000), interleaved: interleaved)
        #expect(big[0].hexString == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        #expect(big[1] == SHA256Hasher.hash(millions[1]))
    }

    @Test("Pieces of random lengths, empty ones included, up to 1 MiB messages", arguments: engines, [2, 3, 4])
    func randomPieces(interleaved: Bool, count: Int) {
        var generator = SeededGenerator(seed: 0x9A1E + UInt64(count))
        for length in [1, 63, 64, 65, 127, 4097, 65_536, 1_048_576 + 17] {
            let messages = randomMessages(count, length: length, using: &generator)
            let expected = messages.map { SHA256Hasher.hash($0) }
            for maxPiece in [1, 70, 4096, length] {
                var lengths: [Int] = []
                var left = length
                while left > 0 {
                    let piece = min(left, Int.random(in: 0...maxPiece, using: &generator))
                    lengths.append(piece)
                    left -= piece
                }
                let result = digests(messages, pieceLengths: lengths, interleaved: interleaved)
                #expect(result == expected, "\(count) × \(length) bytes in pieces of at most \(maxPiece)")
            }
        }
    }

    @Test("The same message in every lane gives the same digest in every lane")
    func identicalMessages() {
        var generator = SeededGenerator(seed: 7)
        let message = randomBytes(200_000, using: &generator)
        let result = digests(
            Array(repeating: message, count: 4), pieceLengths: [200_000], interleaved: SHA256MultiHasher.isInterleaved)
        #expect(result == Array(repeating: SHA256Hasher.hash(message), count: 4))
    }
}
