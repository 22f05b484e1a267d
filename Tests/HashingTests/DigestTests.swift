import Foundation
import Hashing
import Testing

@Suite struct SHA256Tests {
    @Test func knownVectors() {
        #expect(
            SHA256Hasher.hexDigest([UInt8]())
                == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(
            SHA256Hasher.hexDigest("abc".utf8) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256Hasher().finalize().hexString == SHA256Hasher.hexDigest([UInt8]()))
    }

    @Test func millionAs() {
        let expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        #expect(SHA256Hasher.hexDigest([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)) == expected)

        var hasher = SHA256Hasher()
        let thousand = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 {
            hasher.update(thousand)
        }
        #expect(hasher.finalize().hexString == expected)
    }

    @Test func oddSizedPiecesMatchOneShot() {
        var generator = SeededGenerator(seed: 0x5A256)
        for length in [0, 1, 55, 56, 63, 64, 65, 1000, 100_003] {
            let data = randomBytes(length, using: &generator)
            let expected = SHA256Hasher.hash(data)
            for maxPiece in [1, 7, 63, 65, 4099] {
                var hasher = SHA256Hasher()
                for piece in randomPieces(data, maxPiece: maxPiece, using: &generator) {
                    hasher.update(piece)
                }
                #expect(hasher.finalize() == expected, "length \(length), pieces up to \(maxPiece)")
            }
        }
    }

    @Test func inputKindsAgree() {
        let bytes = [UInt8](0...255)
        let expected = SHA256Hasher.hash(bytes)
        #expect(expected.count == SHA256Hasher.digestByteCount)
        #expect(SHA256Hasher.hash(Data(bytes)) == expected)
        #expect(SHA256Hasher.hash(UInt8(0)...UInt8(255)) == expected)  // no contiguous storage
        #expect(bytes.withUnsafeBytes { SHA256Hasher.hash($0) } == expected)

        var hasher = SHA256Hasher()
        hasher.update(UnsafeRawBufferPointer(start: nil, count: 0))
        hasher.update(bytes[..<100])
        hasher.update(Data(bytes[100...]))
        #expect(hasher.finalize() == expected)
    }

    @Test func finalizeLeavesTheHasherUsable() {
        var hasher = SHA256Hasher()
        hasher.update("ab".utf8)
        let early = hasher.finalize()
        #expect(hasher.finalize() == early)
        hasher.update("c".utf8)
        #expect(hasher.finalize() == SHA256Hasher.hash("abc".utf8))
        #expect(early == SHA256Hasher.hash("ab".utf8))
    }

    @Test func copiesAreIndependent() {
        var original = SHA256Hasher()
        original.update("common prefix ".utf8)
        var fork = original
        fork.update("fork".utf8)
        original.update("original".utf8)
        #expect(fork.finalize() == SHA256Hasher.hash("common prefix fork".utf8))
        #expect(original.finalize() == SHA256Hasher.hash("common prefix original".utf8))
    }

    @Test func copiesCanBeUpdatedOnManyTasksAtOnce() async {
        var prefix = SHA256Hasher()
        prefix.update("shared ".utf8)
        let shared = prefix
        let digests = await withTaskGroup(of: (Int, [UInt8]).self) { group in
            for task in 0..<16 {
                group.addTask {
                    var hasher = shared
                    for _ in 0..<200 {
                        hasher.update("\(task)".utf8)
                    }
                    return (task, hasher.finalize())
                }
            }
            var digests: [Int: [UInt8]] = [:]
            for await (task, digest) in group {
                digests[task] = digest
            }
            return digests
        }
        for task in 0..<16 {
            let message = "shared " + String(repeating: "\(task)", count: 200)
            #expect(digests[task] == SHA256Hasher.hash(message.utf8), "task \(task)")
        }
        #expect(shared.finalize() == SHA256Hasher.hash("shared ".utf8))
    }
}

@Suite struct MD5Tests {
    @Test func knownVectors() {
        #expect(MD5Hasher.hash([UInt8]()).hexString == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(MD5Hasher().finalize().hexString == "d41d8cd98f00b204e9800998ecf8427e")
        let fox = "The quick brown fox jumps over the lazy dog"
        #expect(MD5Hasher.hash(fox.utf8).hexString == "9e107d9d372bb6826bd81d3542a419d6")
        #expect(MD5Hasher.hash(fox.utf8).count == MD5Hasher.digestByteCount)
    }

    @Test func contentMD5HeaderForm() {
        #expect(Data(MD5Hasher.hash([UInt8]())).base64EncodedString() == "1B2M2Y8AsgTpgAmY7PhCfg==")
    }

    @Test func piecesMatchOneShot() {
        var generator = SeededGenerator(seed: 0x3D5)
        let data = randomBytes(10_007, using: &generator)
        var hasher = MD5Hasher()
        for piece in randomPieces(data, maxPiece: 97, using: &generator) {
            hasher.update(piece)
        }
        #expect(hasher.finalize() == MD5Hasher.hash(data))
    }
}
