@_spi(Testing) import Hashing
import Testing

@Suite struct CRC32CTests {
    @Test func checkValue() {
        #expect(CRC32C.checksum("123456789".utf8) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8]()) == 0)
        #expect(CRC32C().value == 0)
    }

    // RFC 3720 §B.4 (iSCSI) test vectors.
    @Test func rfc3720Vectors() {
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum(UInt8(0)...UInt8(31)) == 0x46DD_794E)
    }

    @Test func checksumHeaderValue() {
        var crc = CRC32C()
        crc.update("hello world".utf8)
        #expect(crc.value == 0xC994_65AA)
        #expect(crc.base64BigEndian == "yZRlqg==")
        #expect(CRC32C(resuming: 0).base64BigEndian == "AAAAAA==")
        #expect(CRC32C(resuming: 0xE306_9283).base64BigEndian == "4waSgw==")
    }

    @Test func incrementalMatchesOneShot() {
        var generator = SeededGenerator(seed: 0xC3C)
        for _ in 0..<500 {
            let data = randomBytes(Int.random(in: 0...5000, using: &generator), using: &generator)
            let split = Int.random(in: 0...data.count, using: &generator)
            var crc = CRC32C()
            crc.update(data[..<split])
            crc.update(data[split...])
            #expect(crc.value == CRC32C.checksum(data), "length \(data.count), split \(split)")

            var resumed = CRC32C(resuming: CRC32C.checksum(data[..<split]))
            resumed.update(data[split...])
            #expect(resumed == crc)
        }
    }

    @Test func manyPiecesMatchOneShot() {
        var generator = SeededGenerator(seed: 0xC3C2)
        let data = randomBytes(200_000, using: &generator)
        var crc = CRC32C()
        for piece in randomPieces(data, maxPiece: 30_000, using: &generator) {
            crc.update(piece)
        }
        #expect(crc.value == CRC32C.checksum(data))
        #expect(crc.value == data.withUnsafeBytes { CRC32C.portableUpdate(0, $0) })
    }

    /// The dispatching path (SSE4.2 here when available) against the tables, over every alignment and across the
    /// 3 × 256 and 3 × 8192 byte thresholds where the interleaved hardware loops start.
    @Test func hardwareMatchesPortable() {
        var generator = SeededGenerator(seed: 0x5E42)
        let pool = randomBytes(120_000, using: &generator)
        pool.withUnsafeBytes { pool in
            var lengths = Array(0...80) + [767, 768, 769, 24_575, 24_576, 24_577, 100_000]
            lengths += (0..<300).map { _ in Int.random(in: 0...5000, using: &generator) }
            lengths += (0..<50).map { _ in Int.random(in: 0...110_000, using: &generator) }
            for length in lengths {
                let offset = Int.random(in: 0...15, using: &generator)
                let slice = UnsafeRawBufferPointer(rebasing: pool[offset..<(offset + length)])
                let seed = UInt32.random(in: .min ... .max, using: &generator)
                var crc = CRC32C(resuming: seed)
                crc.update(slice)
                #expect(crc.value == CRC32C.portableUpdate(seed, slice), "length \(length), offset \(offset)")
            }
        }
    }

    @Test func emptyBuffersAreNoOps() {
        var crc = CRC32C(resuming: 0x1234_5678)
        crc.update(UnsafeRawBufferPointer(start: nil, count: 0))
        crc.update([UInt8]())
        #expect(crc.value == 0x1234_5678)
        #expect(CRC32C.portableUpdate(7, UnsafeRawBufferPointer(start: nil, count: 0)) == 7)
    }

    @Test("combine gives the checksum of the concatenation, for every split including empty pieces")
    func combineMatchesStraightChecksum() {
        var generator = SeededGenerator(seed: 0xC0B1)
        for _ in 0..<300 {
            let data = randomBytes(Int.random(in: 0...3000, using: &generator), using: &generator)
            let split = Int.random(in: 0...data.count, using: &generator)
            let first = CRC32C.checksum(data[..<split])
            let second = CRC32C.checksum(data[split...])
            let combined = CRC32C.combine(first, second, secondLength: Int64(data.count - split))
            #expect(combined == CRC32C.checksum(data), "length \(data.count), split \(split)")
        }
        #expect(CRC32C.combine(0, 0, secondLength: 0) == 0)
        let hello = CRC32C.checksum("hello world".utf8)
        #expect(CRC32C.combine(hello, 0, secondLength: 0) == hello)
        #expect(CRC32C.combine(0, hello, secondLength: 11) == hello)
    }

    @Test(
        "Part checksums folded with append(checksum:length:) equal one pass over the file, as a multipart upload uses them"
    )
    func partsFoldIntoTheWholeChecksum() {
        var generator = SeededGenerator(seed: 0xC0B2)
        let data = randomBytes(3 << 20 | 12_345, using: &generator)
        for partSize in [4096, 1 << 20, (1 << 20) + 1, 3 << 20, 4 << 20] {
            var folded = CRC32C()
            for start in stride(from: 0, to: data.count, by: partSize) {
                let part = data[start..<min(data.count, start + partSize)]
                folded.append(checksum: CRC32C.checksum(part), length: Int64(part.count))
            }
            #expect(folded.value == CRC32C.checksum(data), "part size \(partSize)")
        }
        var byteByByte = CRC32C()
        for byte in data.prefix(100) { byteByByte.append(checksum: CRC32C.checksum([byte]), length: 1) }
        #expect(byteByByte.value == CRC32C.checksum(data.prefix(100)))
    }

    @Test("combine over lengths no test can hold in memory: runs of zeros, and lengths past 4 GiB")
    func combineOverLongLengths() {
        var generator = SeededGenerator(seed: 0xC0B3)
        let head = randomBytes(1000, using: &generator)
        for length in [1, 7, 8, 8191, 8192, 65_537, (8 << 20) + 3] {
            let zeros = [UInt8](repeating: 0, count: length)
            let combined = CRC32C.combine(CRC32C.checksum(head), CRC32C.checksum(zeros), secondLength: Int64(length))
            #expect(combined == CRC32C.checksum(head + zeros), "length \(length)")
        }
        // Combining is associative whatever the lengths; past 4 GiB that only holds if no length is cut to 32 bits.
        for (first, second) in [(Int64(3) << 30, Int64(3) << 30), (Int64(5) << 30, 12_345), (1, Int64(1) << 40)] {
            let a = UInt32.random(in: .min ... .max, using: &generator)
            let b = UInt32.random(in: .min ... .max, using: &generator)
            let c = UInt32.random(in: .min ... .max, using: &generator)
            let left = CRC32C.combine(CRC32C.combine(a, b, secondLength: first), c, secondLength: second)
            let right = CRC32C.combine(a, CRC32C.combine(b, c, secondLength: second), secondLength: first + second)
            #expect(left == right, "lengths \(first) and \(second)")
            let past4GiB = CRC32C.combine(a, b, secondLength: first + (Int64(1) << 32))
            #expect(past4GiB != CRC32C.combine(a, b, secondLength: first), "a length cut to 32 bits")
        }
    }

    @Test("base64BigEndian round-trips; anything but base64 of four bytes is refused")
    func parsesTheHeaderForm() {
        var generator = SeededGenerator(seed: 0xC0B4)
        for value in [0, 1, 0xFFFF_FFFF, 0xC994_65AA, 0xE306_9283]
            + (0..<200).map({ _ in
                UInt32.random(in: .min ... .max, using: &generator)
            })
        {
            let text = CRC32C(resuming: value).base64BigEndian
            #expect(CRC32C(base64BigEndian: text)?.value == value, "\(text)")
        }
        #expect(CRC32C(base64BigEndian: "yZRlqg==")?.value == 0xC994_65AA)
        for bad in ["", "yZRlqg=", "yZRlqg===", "yZRlqgAA", "yZRl!g==", "yZRlqh==", "yZRlqg==\n", "AAAAAAAA"] {
            #expect(CRC32C(base64BigEndian: bad) == nil, "\(bad)")
        }
    }

    @Test func reportsTheImplementation() {
        // Nothing to assert portably; recorded so a log shows which path the comparison above exercised.
        print("CRC32C hardware accelerated: \(CRC32C.isHardwareAccelerated)")
    }
}
