import Foundation
import Hashing
import PipelineStorage
import Synchronization
import Testing

@testable import Spool

@Suite struct FailedStreamTests {
    /// Writes two resources that must survive whatever happens next: one inline, one in a payload file.
    private func writeSurvivors(_ bundle: BundleWriter) async throws -> [(SpooledResource, [UInt8])] {
        let small = testBytes(500, seed: 1)
        let large = testBytes(200_000, seed: 2)
        return [
            (
                try await bundle.writeResource(
                    url: "https://e.com/small", contentType: "text/plain", statusCode: 200,
                    bytes: small), small
            ),
            (
                try await bundle.writeResource(
                    url: "https://e.com/large", contentType: "text/plain", statusCode: 200,
                    bytes: large), large
            ),
        ]
    }

    private func expectSurvivorsIntact(
        _ survivors: [(SpooledResource, [UInt8])], in storage: PipelineStorage, bundleID: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let listed = try await resources(of: bundleID, in: storage)
        #expect(listed.map(\.id) == survivors.map(\.0.id), sourceLocation: sourceLocation)
        for (resource, bytes) in survivors {
            #expect(try await storage.spool.payloadBytes(of: resource.id) == bytes, sourceLocation: sourceLocation)
        }
    }

    @Test func aLargeStreamThatThrowsLeavesNothingAndRethrowsTheProducersError() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            let bundle = try await storage.openBundle("failing")
            let survivors = try await writeSurvivors(bundle)
            let dataBefore = spool.dataFiles
            let rowsBefore = try spool.secondConnection().queryFirst("SELECT COUNT(*) FROM resources") { $0.int(0) }

            let stream = FailingChunks(failAfter: 2 << 20, watching: spool.temporaryDirectory)
            await #expect(throws: ProducerError(detail: "connection reset after \(2 << 20) bytes")) {
                try await bundle.writeResource(
                    url: "https://e.com/broken", contentType: "text/plain", statusCode: 200, stream: stream)
            }

            // The failure hit while a payload file was being written in tmp/ ...
            #expect(stream.temporaryFilesWhenFailing.count == 1)
            // ... and it is gone, nothing new reached data/, and no row appeared.
            #expect(spool.temporaryFiles.isEmpty)
            #expect(spool.dataFiles == dataBefore)
            let rowsAfter = try spool.secondConnection().queryFirst("SELECT COUNT(*) FROM resources") { $0.int(0) }
            #expect(rowsAfter == rowsBefore)
            #expect(try await storage.spool.bundle("failing")?.resourceCount == 2)
            try await expectSurvivorsIntact(survivors, in: storage, bundleID: "failing")

            // The failed write used no sequence number: the next one follows on.
            let next = try await bundle.writeResource(
                url: "https://e.com/next", contentType: "text/plain", statusCode: 200, bytes: [9])
            #expect(next.seq == 3)
        }
    }

    @Test func aSmallStreamThatThrowsLeavesNothing() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            let bundle = try await storage.openBundle("failing-small")
            let survivors = try await writeSurvivors(bundle)
            let dataBefore = spool.dataFiles

            let stream = FailingChunks(failAfter: 100, chunkSize: 30, watching: spool.temporaryDirectory)
            await #expect(throws: ProducerError(detail: "connection reset after 100 bytes")) {
                try await bundle.writeResource(
                    url: "https://e.com/broken", contentType: "text/plain", statusCode: 200, stream: stream)
            }
            #expect(stream.bytesYielded == 100)
            #expect(stream.temporaryFilesWhenFailing.isEmpty)
            #expect(spool.temporaryFiles.isEmpty)
            #expect(spool.dataFiles == dataBefore)
            try await expectSurvivorsIntact(survivors, in: storage, bundleID: "failing-small")
            #expect(try await storage.spool.status().heldBytes == 200_500)
        }
    }

    @Test func aByteStreamThatThrowsRethrowsUnchanged() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            let bundle = try await storage.openBundle("failing-bytes")
            let stream = AsyncThrowingStream<UInt8, any Error> { continuation in
                for byte in testBytes(70_000, seed: 5) { continuation.yield(byte) }
                continuation.finish(throwing: ProducerError(detail: "truncated body"))
            }
            await #expect(throws: ProducerError(detail: "truncated body")) {
                try await bundle.writeResource(
                    url: "https://e.com/broken", contentType: "text/plain", statusCode: 200, bytes: stream)
            }
            #expect(try await resources(of: "failing-bytes", in: storage).isEmpty)
            #expect(spool.temporaryFiles.isEmpty)
            #expect(spool.dataFiles.isEmpty)
        }
    }

    @Test(arguments: [false, true])
    func cancellingAWriteMidStreamLeavesNothing(afterFileStarted: Bool) async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            let bundle = try await storage.openBundle("cancelled")
            let survivors = try await writeSurvivors(bundle)
            let dataBefore = spool.dataFiles

            // A stream that delivers some bytes and then stalls, like a slow server. AsyncStream ends (returns nil)
            // when its consumer is cancelled: the writer must not mistake that for the end of the resource.
            let (stream, continuation) = AsyncStream<[UInt8]>.makeStream()
            let chunksTaken = Counter()
            let counted = stream.map { chunk -> [UInt8] in
                chunksTaken.increment()
                return chunk
            }
            // 3 MiB fill the 1 MiB write buffer three times: a payload file is being written. 10 kB stay in memory.
            let chunkCount = afterFileStarted ? 3 : 1
            let chunkSize = afterFileStarted ? 1 << 20 : 10_000
            for _ in 0..<chunkCount { continuation.yield(testBytes(chunkSize, seed: 7)) }
            let write = Task {
                try await bundle.writeResource(
                    url: "https://e.com/stalled", contentType: "application/octet-stream", statusCode: 200,
                    stream: counted)
            }
            // Wait until every chunk was taken (and, for the large case, a payload file exists in tmp/).
            let deadline = ContinuousClock.now + .seconds(10)
            while chunksTaken.value < chunkCount
                || (afterFileStarted && spool.temporaryFiles.isEmpty)
            {
                try #require(ContinuousClock.now < deadline, "the writer never consumed the stream")
                try await Task.sleep(for: .milliseconds(10))
            }
            try await Task.sleep(for: .milliseconds(50))
            #expect(spool.temporaryFiles.count == (afterFileStarted ? 1 : 0))

            write.cancel()
            await #expect(throws: CancellationError.self) { try await write.value }
            continuation.finish()

            #expect(spool.temporaryFiles.isEmpty)
            #expect(spool.dataFiles == dataBefore)
            try await expectSurvivorsIntact(survivors, in: storage, bundleID: "cancelled")
            #expect(try await storage.spool.bundle("cancelled")?.resourceCount == 2)
        }
    }
}
