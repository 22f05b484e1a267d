import PipelineStorage
import Testing

@testable import Spool

@Suite struct BundleIDTests {
    static let crockford = Set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")

    @Test func aNewBundleIDIsAValidSortableULID() throws {
        let id = PipelineStorage.newBundleID()
        #expect(id.count == 26)
        #expect(id.utf8.count == 26)
        #expect(id.allSatisfy { Self.crockford.contains($0) })
        // 128 bits in 26 base-32 digits: the first digit holds only 3 bits.
        #expect("01234567".contains(id.first!))
        try Validation.checkBundleID(id)
    }

    @Test func tenThousandIDsAreUniqueAndSortInGenerationOrder() throws {
        let ids = (0..<10_000).map { _ in PipelineStorage.newBundleID() }
        #expect(Set(ids).count == 10_000)
        #expect(ids == ids.sorted())
        for id in ids.prefix(100) { try Validation.checkBundleID(id) }
    }

    @Test func theTimePartIsTheCurrentTime() throws {
        let before = SystemClock().nowMilliseconds()
        let id = PipelineStorage.newBundleID()
        let after = SystemClock().nowMilliseconds()
        // The first 10 digits are the 48-bit millisecond timestamp, big-endian base 32.
        let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
        var milliseconds: Int64 = 0
        for character in id.prefix(10) {
            milliseconds = milliseconds * 32 + Int64(try #require(alphabet.firstIndex(of: character)))
        }
        // A few seconds either side: the wall clock can be stepped back while the test runs (NTP), and the generator
        // never goes back in time, so its stamp may then be a little after `after`. Still the current time.
        let tolerance: Int64 = 5_000
        #expect(
            (before - tolerance...after + tolerance).contains(milliseconds), "\(milliseconds) in \(before)...\(after)")
    }

    @Test func idsFromConcurrentTasksAreUnique() async {
        let ids = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<8 {
                group.addTask { (0..<1_000).map { _ in PipelineStorage.newBundleID() } }
            }
            var all: [String] = []
            for await batch in group {
                // Each task's own ids come out in order.
                #expect(batch == batch.sorted())
                all += batch
            }
            return all
        }
        #expect(Set(ids).count == 8_000)
    }

    @Test func aGeneratedIDOpensABundle() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            let id = PipelineStorage.newBundleID()
            let written = try await storage.withBundle(id) { bundle in
                try await bundle.writeResource(
                    url: "https://e.com/x.txt", contentType: "text/plain", statusCode: 200, bytes: [1])
            }
            #expect(written.objectKey == "data/\(id)/000001-x.txt")
        }
    }
}
