import Foundation
import PipelineStorage
import Testing

@testable import Spool

@Suite struct SpoolFullTests {
    static let limit: Int64 = 1 << 20

    private func limitedOptions(wait: Duration) -> SpoolOptions {
        var options = SpoolOptions()
        options.maxSpoolBytes = Self.limit
        options.spoolFullWait = wait
        return options
    }

    /// Fills the spool to exactly `limit`: two payload files of 256 KiB and eight inline resources of 64 KiB.
    private func fill(_ bundle: BundleWriter) async throws -> [(SpooledResource, [UInt8])] {
        var written: [(SpooledResource, [UInt8])] = []
        for index in 0..<2 {
            let bytes = testBytes(256 << 10, seed: UInt64(index))
            written.append(
                (
                    try await bundle.writeResource(
                        url: "https://e.com/file-\(index)", contentType: "application/octet-stream",
                        statusCode: 200, bytes: bytes), bytes
                ))
        }
        for index in 0..<8 {
            let bytes = testBytes(64 << 10, seed: UInt64(100 + index))
            written.append(
                (
                    try await bundle.writeResource(
                        url: "https://e.com/inline-\(index)", contentType: "application/octet-stream",
                        statusCode: 200, bytes: bytes), bytes
                ))
        }
        return written
    }

    @Test(arguments: [1, 100_000, 3 << 20])
    func writesUpToTheLimitSucceedAndTheNextOneFailsAfterTheWait(nextSize: Int) async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage(spoolOptions: limitedOptions(wait: .milliseconds(300)))
            let bundle = try await storage.openBundle("full")
            let written = try await fill(bundle)
            #expect(try await storage.spool.status().heldBytes == Self.limit)

            let clock = ContinuousClock()
            let start = clock.now
            await expectSpoolError(
                .spoolFull, mentioning: ["maxSpoolBytes", "\(Self.limit)", "'https://e.com/one-more'"]
            ) {
                try await bundle.writeResource(
                    url: "https://e.com/one-more", contentType: "application/octet-stream", statusCode: 200,
                    stream: chunkStream(oddChunks(testBytes(nextSize, seed: 999))))
            }
            let elapsed = clock.now - start
            #expect(elapsed >= .milliseconds(300), "gave up after \(elapsed), before spoolFullWait")
            // It gives up, rather than waiting on: loose, for a machine busy with the whole suite.
            #expect(elapsed < .seconds(60), "took \(elapsed)")

            #expect(spool.temporaryFiles.isEmpty)
            #expect(spool.dataFiles.count == 2)
            let listed = try await resources(of: "full", in: storage)
            #expect(listed.map(\.id) == written.map(\.0.id))
            for (resource, bytes) in written {
                #expect(try await storage.spool.payloadBytes(of: resource.id) == bytes)
            }
            #expect(try await storage.spool.status().heldBytes == Self.limit)
        }
    }

    @Test func aWaitingWriteSucceedsOnceTheDrainerFreesSpace() async throws {
        try await withTemporarySpool { spool in
            // A long wait, so that a write finishing well before it was woken by the freed space, not by the deadline.
            let storage = try spool.storage(spoolOptions: limitedOptions(wait: .seconds(60)))
            let bundle = try await storage.openBundle("waiting")
            let written = try await fill(bundle)
            let payload = testBytes(200_000, seed: 42)

            let finished = Counter()
            let clock = ContinuousClock()
            let start = clock.now
            let write = Task {
                defer { finished.increment() }
                return try await bundle.writeResource(
                    url: "https://e.com/patient", contentType: "application/octet-stream", statusCode: 200,
                    bytes: payload)
            }
            try await Task.sleep(for: .milliseconds(200))
            #expect(finished.value == 0, "the write did not wait for room")

            // What a drainer does after delivering: the payloads of the two files no longer count.
            let ids = written.prefix(2).map(\.0.id)
            let drainer = try spool.secondConnection()
            let freed = try drainer.execute(
                "UPDATE resources SET state = 'done', payload_storage = 'removed' WHERE id IN (?, ?)",
                [.integer(ids[0]), .integer(ids[1])])
            #expect(freed == 2)

            let resource = try await write.value
            let elapsed = clock.now - start
            #expect(elapsed >= .milliseconds(200))
            #expect(elapsed < .seconds(30), "not woken when space was freed: took \(elapsed)")
            #expect(try await storage.spool.payloadBytes(of: resource.id) == payload)
            #expect(resource.seq == written.count + 1)
            #expect(spool.temporaryFiles.isEmpty)
        }
    }

    @Test func aFreeDiskFloorThatCannotBeMetMakesTheSpoolFull() async throws {
        try await withTemporarySpool { spool in
            var options = SpoolOptions()
            options.minFreeDiskBytes = Int64.max / 2
            options.spoolFullWait = .milliseconds(100)
            let storage = try spool.storage(spoolOptions: options)
            let bundle = try await storage.openBundle("floor")
            for size in [1, 200_000] {
                await expectSpoolError(.spoolFull, mentioning: ["minFreeDiskBytes", "\(Int64.max / 2)"]) {
                    try await bundle.writeResource(
                        url: "https://e.com/x", contentType: "text/plain", statusCode: 200,
                        bytes: testBytes(size, seed: 1))
                }
            }
            #expect(try await resources(of: "floor", in: storage).isEmpty)
            #expect(spool.temporaryFiles.isEmpty)
            #expect(spool.dataFiles.isEmpty)
        }
    }

    @Test func aLargeStreamIsRefusedBeforeItFillsTheDisk() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage(spoolOptions: limitedOptions(wait: .milliseconds(100)))
            let bundle = try await storage.openBundle("huge")
            let stream = FailingChunks(failAfter: 64 << 20, chunkSize: 1 << 20, watching: spool.temporaryDirectory)
            await expectSpoolError(.spoolFull, mentioning: ["maxSpoolBytes"]) {
                try await bundle.writeResource(
                    url: "https://e.com/huge", contentType: "application/octet-stream", statusCode: 200, stream: stream)
            }
            // It stopped reading long before the stream's 64 MiB.
            #expect(stream.bytesYielded <= 8 << 20)
            #expect(spool.temporaryFiles.isEmpty)
            #expect(spool.dataFiles.isEmpty)
        }
    }
}
