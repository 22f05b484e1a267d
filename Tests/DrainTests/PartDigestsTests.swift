import Foundation
import Hashing
import Testing

@testable import Drain

@Suite("Part digests: up to four equal parts hashed side by side, each part's task gets its own digest")
struct PartDigestsTests {
    /// A payload file of `size` bytes and its parts of `partSize`.
    func payload(_ directory: TestDirectory, size: Int, partSize: Int64) throws -> (
        path: String, bytes: [UInt8], parts: [PartPlan]
    ) {
        try FileManager.default.createDirectory(atPath: directory.path, withIntermediateDirectories: true)
        let path = directory.path + "/payload"
        let bytes = content(size: size, seed: 4242)
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        let parts = MultipartPlan(path: path, size: Int64(size), partSize: partSize).parts
        return (path, bytes, parts)
    }

    @Test("Every part's SHA-256 and CRC32C match the part's bytes, whatever order the tasks ask in")
    func digestsMatch() async throws {
        try await withTestDirectory { directory in
            // 5 full parts and a short last one: groups (1-4), (5), (6) — the last differs in length.
            let partSize: Int64 = 300_000
            let (path, bytes, parts) = try payload(directory, size: 5 * 300_000 + 12_345, partSize: partSize)
            #expect(parts.count == 6)
            for order in [parts, parts.reversed(), [parts[1], parts[3], parts[0], parts[5], parts[2], parts[4]]] {
                let digests = PartDigests(path: path, parts: parts)
                let results = try await withThrowingTaskGroup(of: (Int, PayloadReader.Digest).self) { group in
                    for part in order { group.addTask { (part.number, try await digests.digest(of: part)) } }
                    return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
                }
                for part in parts {
                    let slice = Array(bytes[Int(part.offset)..<Int(part.offset + part.length)])
                    let digest = try #require(results[part.number])
                    #expect(digest.sha256 == SHA256Hasher.hexDigest(slice), "part \(part.number)")
                    #expect(digest.crc32c == CRC32C.checksum(slice), "part \(part.number)")
                    #expect(digest.size == part.length)
                }
            }
        }
    }

    @Test("A file cut short after the plan: every part of the group fails corrupt-payload")
    func truncatedFile() async throws {
        try await withTestDirectory { directory in
            let (path, _, parts) = try payload(directory, size: 8 * 100_000, partSize: 100_000)
            #expect(truncate(path, 750_000) == 0)
            let digests = PartDigests(path: path, parts: parts)
            for part in parts[4...7] {
                await #expect {
                    _ = try await digests.digest(of: part)
                } throws: { error in
                    (error as? PayloadError)?.code == "corrupt-payload"
                }
            }
            #expect(try await digests.digest(of: parts[0]).size == 100_000, "the first group is whole")
        }
    }
}
