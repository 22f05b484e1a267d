import Foundation
import PipelineStorage
import Testing

@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

@Suite struct BundleLifecycleTests {
    @Test func withBundleSealsWhenTheBodyReturns() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage(prefix: "data/")
            let answer = try await storage.withBundle("sealed-on-return", metadata: ["source": "example.com"]) {
                bundle in
                for index in 1...3 {
                    try await bundle.writeResource(
                        url: "https://example.com/\(index).json", contentType: "application/json", statusCode: 200,
                        bytes: [UInt8(index)])
                }
                // Still open while the body runs.
                #expect(try await storage.spool.bundle("sealed-on-return")?.state == .open)
                return 42
            }
            #expect(answer == 42)

            let bundle = try #require(try await storage.spool.bundle("sealed-on-return"))
            #expect(bundle.state == .sealed)
            #expect(bundle.resourceCount == 3)
            #expect(bundle.sealedAt != nil)
            #expect(bundle.metadata == ["source": "example.com"])

            let rows = try await storage.spool.listResources(
                ResourceFilter(bundleID: "sealed-on-return", includeManifests: true))
            #expect(rows.count == 4)
            let manifests = rows.filter { $0.kind == .manifest }
            let manifest = try #require(manifests.first)
            #expect(manifests.count == 1)
            #expect(manifest.objectKey == "data/sealed-on-return/_bundle.json")
            #expect(manifest.state == .pending)
            #expect(manifest.payloadStorage == .pending)
            #expect(try await resources(of: "sealed-on-return", in: storage).map(\.seq) == [1, 2, 3])
            #expect(try await storage.spool.status().manifestsPending == 1)
        }
    }

    @Test func aThrowInsideWithBundleLeavesItOpenAndRethrows() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            let failure = ProducerError(detail: "fetcher gave up")
            await #expect(throws: failure) {
                try await storage.withBundle("left-open") { bundle in
                    try await bundle.writeResource(
                        url: "https://example.com/kept.json", contentType: "application/json", statusCode: 200,
                        bytes: [1, 2, 3])
                    throw failure
                }
            }
            let bundle = try #require(try await storage.spool.bundle("left-open"))
            #expect(bundle.state == .open)
            #expect(bundle.resourceCount == 1)
            #expect(bundle.writerPID == Int(getpid()))
            let rows = try await storage.spool.listResources(
                ResourceFilter(bundleID: "left-open", includeManifests: true))
            #expect(rows.map(\.kind) == [.resource])
            #expect(try await storage.spool.payloadBytes(of: rows[0].id) == [1, 2, 3])

            // The bundle can be continued afterwards, numbering on.
            try await storage.withBundle("left-open") { bundle in
                let next = try await bundle.writeResource(
                    url: "https://example.com/next.json", contentType: "application/json", statusCode: 200, bytes: [4])
                #expect(next.seq == 2)
            }
            #expect(try await storage.spool.bundle("left-open")?.state == .sealed)
            #expect(try await storage.spool.bundle("left-open")?.resourceCount == 2)
        }
    }

    @Test func writesAfterCloseAreRefused() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            let bundle = try await storage.openBundle("closed")
            try await bundle.writeResource(
                url: "https://e.com/1", contentType: "text/plain", statusCode: 200, bytes: [1])
            try await bundle.close()
            // Closing twice does nothing.
            try await bundle.close()

            await expectSpoolError(.bundleNotOpen, mentioning: ["'closed'"]) {
                try await bundle.writeResource(
                    url: "https://e.com/2", contentType: "text/plain", statusCode: 200, bytes: [2])
            }
            await expectSpoolError(.bundleNotOpen, mentioning: ["'closed'"]) {
                try await bundle.writeResource(
                    url: "https://e.com/3", contentType: "text/plain", statusCode: 200,
                    stream: chunkStream([testBytes(200_000, seed: 3)]))
            }
            #expect(try await resources(of: "closed", in: storage).count == 1)
            #expect(try await storage.spool.bundle("closed")?.resourceCount == 1)
            #expect(spool.dataFiles.isEmpty)
            #expect(spool.temporaryFiles.isEmpty)
        }
    }

    @Test func reopeningASealedBundleIsRefused() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            _ = try await storage.withBundle("done-with") { bundle in
                try await bundle.writeResource(
                    url: "https://e.com/1", contentType: "text/plain", statusCode: 200, bytes: [1])
            }
            await expectSpoolError(.bundleNotOpen, mentioning: ["'done-with'", "sealed"]) {
                _ = try await storage.openBundle("done-with")
            }
            // Another PipelineStorage on the same spool (another process, say) is refused the same way.
            let other = try spool.storage()
            await expectSpoolError(.bundleNotOpen, mentioning: ["'done-with'"]) {
                try await other.withBundle("done-with") { _ in }
            }
            #expect(try await storage.spool.bundle("done-with")?.resourceCount == 1)
        }
    }

    @Test func aWriterWhoseBundleWasSealedElsewhereKeepsNothing() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            let first = try await storage.openBundle("shared")
            let second = try await storage.openBundle("shared")
            try await first.writeResource(
                url: "https://e.com/1", contentType: "text/plain", statusCode: 200, bytes: [1])
            try await first.close()

            // The second writer does not know the bundle was sealed: the commit refuses it, and its payload file
            // (this one is above the inline threshold) is removed again.
            await expectSpoolError(.bundleNotOpen, mentioning: ["'shared'", "sealed"]) {
                try await second.writeResource(
                    url: "https://e.com/2", contentType: "text/plain", statusCode: 200,
                    bytes: testBytes(300_000, seed: 2))
            }
            #expect(try await resources(of: "shared", in: storage).count == 1)
            #expect(spool.dataFiles.isEmpty)
            #expect(spool.temporaryFiles.isEmpty)
        }
    }

    @Test func reopeningAnOpenBundleContinuesItsNumbering() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            // spool-put style: each call opens the bundle, writes one resource, and leaves it open.
            for index in 1...3 {
                let bundle = try await storage.openBundle("put-style", metadata: ["source": "shell"])
                let written = try await bundle.writeResource(
                    url: "https://e.com/\(index).txt", contentType: "text/plain", statusCode: 200,
                    bytes: [UInt8(index)])
                #expect(written.seq == index)
                #expect(written.objectKey == "data/put-style/00000\(index)-\(index).txt")
            }
            // A new PipelineStorage (a new spool-put process) continues too; empty metadata means "whatever it has".
            let later = try spool.storage()
            let bundle = try await later.openBundle("put-style")
            let fourth = try await bundle.writeResource(
                url: "https://e.com/4.txt", contentType: "text/plain", statusCode: 200, bytes: [4])
            #expect(fourth.seq == 4)
            try await bundle.close()
            let record = try #require(try await later.spool.bundle("put-style"))
            #expect(record.state == .sealed)
            #expect(record.resourceCount == 4)
            #expect(record.metadata == ["source": "shell"])
        }
    }

    @Test func reopeningWithDifferentMetadataOrPrefixConflicts() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage(prefix: "data/")
            _ = try await storage.openBundle("conflicted", metadata: ["source": "a.example"])

            await expectSpoolError(.bundleConflict, mentioning: ["'conflicted'", "metadata"]) {
                _ = try await storage.openBundle("conflicted", metadata: ["source": "b.example"])
            }
            await expectSpoolError(.bundleConflict, mentioning: ["'conflicted'"]) {
                _ = try await storage.openBundle("conflicted", metadata: ["source": "a.example", "extra": "1"])
            }
            let otherPrefix = try spool.storage(prefix: "elsewhere/")
            await expectSpoolError(.bundleConflict, mentioning: ["'conflicted'", "data/"]) {
                _ = try await otherPrefix.openBundle("conflicted", metadata: ["source": "a.example"])
            }
            let otherBucket = try PipelineStorage(
                bucket: "another-bucket", prefix: "data/", spool: .directory(spool.path))
            await expectSpoolError(.bundleConflict, mentioning: ["'conflicted'"]) {
                _ = try await otherBucket.openBundle("conflicted")
            }
            // The same metadata is fine, and nothing was changed by the refusals.
            _ = try await storage.openBundle("conflicted", metadata: ["source": "a.example"])
            let record = try #require(try await storage.spool.bundle("conflicted"))
            #expect(record.metadata == ["source": "a.example"])
            #expect(record.keyPrefix == "data/")
            #expect(record.state == .open)
        }
    }

    @Test func closeWaitsForWritesInFlight() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            let bundle = try await storage.openBundle("in-flight")
            let (stream, continuation) = AsyncStream<[UInt8]>.makeStream()
            let chunksTaken = Counter()
            let counted = stream.map { chunk -> [UInt8] in
                chunksTaken.increment()
                return chunk
            }
            let write = Task {
                try await bundle.writeResource(
                    url: "https://e.com/slow.bin", contentType: "application/octet-stream", statusCode: 200,
                    stream: counted)
            }
            continuation.yield(testBytes(1000, seed: 1))
            // Wait until the write has started (it has taken the first chunk: the bundle counts it in flight).
            let started = try await eventually(timeout: .seconds(30)) { chunksTaken.value == 1 }
            try #require(started, "the write never took the first chunk")
            let close = Task { try await bundle.close() }
            // Time for close to reach the write in flight; it must not seal the bundle while it waits.
            try await Task.sleep(for: .milliseconds(100))
            #expect(try await storage.spool.bundle("in-flight")?.state == .open)
            continuation.yield(testBytes(1000, seed: 2))
            continuation.finish()
            let written = try await write.value
            try await close.value
            let record = try #require(try await storage.spool.bundle("in-flight"))
            #expect(record.state == .sealed)
            #expect(record.resourceCount == 1)
            #expect(written.size == 2000)
        }
    }
}
