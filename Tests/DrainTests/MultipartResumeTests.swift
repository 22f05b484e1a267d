import Drain
import Foundation
import PipelineStorage
import S3
import Testing

@testable import LocalS3Support
@testable import Spool

enum InterruptedUpload: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// The upload is still there: only the missing parts are sent.
    case resumed
    /// Someone aborted it meanwhile: a fresh upload is made.
    case abortedBehindTheDrainersBack
    var testDescription: String { rawValue }
}

@Suite("Multipart uploads resume where they stopped")
struct MultipartResumeTests {
    @Test("A drainer stopped after 2 of 4 parts; the next one sends only what is missing, or starts afresh on NoSuchUpload",
        arguments: InterruptedUpload.allCases)
    func resume(scenario: InterruptedUpload) async throws {
        try await withTestDirectory { directory in
            let fixture = try await TargetFixture.make(.versionedBucket, in: directory)
            let client = try #require(fixture.client)
            let spool = fixture.spool
            let size = (15 << 20) + 123_457  // parts of 5, 5, 5 MiB and 120.6 KiB
            let chunks = contentChunks(size: size, seed: 700)
            let resource = try await fixture.storage.withBundle("resume") { bundle in
                try await bundle.writeResource(
                    url: "https://example.com/big.bin", contentType: "application/octet-stream", statusCode: 200,
                    stream: chunkStream(chunks))
            }
            let key = resource.objectKey

            // First drainer: parts 1 and 2 go up; parts 3 and 4 wait for them, then the drainer is stopped.
            let firstDrainer = Shared<Drainer?>(nil)
            let firstStore = Shared<InstrumentedStore?>(nil)
            let drainer = Drainer(
                spool: spool, options: testDrainOptions(untilDone: true), logger: testLogger(),
                resolveStore: fixture.resolve { base in
                    let store = InstrumentedStore(base) { call, _, part in
                        guard call == .uploadPart, let part, part > 2 else { return }
                        while (firstStore.get()?.completedCount(.uploadPart) ?? 0) < 2 {
                            try await Task.sleep(for: .milliseconds(10))
                        }
                        firstDrainer.get()?.stop()
                        throw CancellationError()
                    }
                    firstStore.set(store)
                    return store
                })
            firstDrainer.set(drainer)
            _ = try await drainer.run()

            let interrupted = try await spool.row(resource.id)
            #expect(interrupted.state == .pending, "released, not failed")
            #expect(interrupted.attempts == 0)
            let uploadID = try #require(interrupted.uploadID, "the upload id was recorded")
            let recorded = try await spool.resourceDetail(resource.id).parts
            #expect(recorded.map(\.partNumber) == [1, 2])
            #expect(recorded.allSatisfy { $0.uploadID == uploadID && $0.size == 5 << 20 && !$0.etag.isEmpty })
            let held = try await client.listAllParts(bucket: fixture.bucket, key: key, uploadID: uploadID)
            #expect(held.map(\.partNumber) == [1, 2])
            #expect(try await client.headObjectIfExists(bucket: fixture.bucket, key: key) == nil)

            if scenario == .abortedBehindTheDrainersBack {
                try await client.abortMultipartUpload(bucket: fixture.bucket, key: key, uploadID: uploadID)
            }

            // Second drainer, nothing failing.
            let secondStore = Shared<InstrumentedStore?>(nil)
            let progress = try await drain(
                spool,
                fixture.resolve { base in
                    let store = InstrumentedStore(base)
                    secondStore.set(store)
                    return store
                })
            #expect(progress.delivered == 2)
            let store = try #require(secondStore.get())
            let row = try await spool.row(resource.id)
            #expect(row.state == .done)
            #expect(row.etag?.hasSuffix("-4") == true)
            #expect(store.count(.listParts, key: key) == 1, "it asked S3 what the upload holds")
            let uploads = try await spool.recordedUploads()
            switch scenario {
            case .resumed:
                #expect(store.partNumbers(key: key) == [3, 4], "parts 1 and 2 were not sent again")
                #expect(store.count(.createUpload, key: key) == 0)
                #expect(row.uploadID == uploadID)
                #expect(uploads.count == 1)
                #expect(uploads[uploadID]?.outcome == "completed")
            case .abortedBehindTheDrainersBack:
                #expect(store.partNumbers(key: key) == [1, 2, 3, 4], "a fresh upload sends every part")
                #expect(store.count(.createUpload, key: key) == 1)
                let fresh = try #require(row.uploadID)
                #expect(fresh != uploadID)
                #expect(uploads.count == 2)
                #expect(uploads[uploadID]?.outcome == "gone")
                #expect(uploads[fresh]?.outcome == "completed")
            }
            #expect(store.count(.completeUpload, key: key) == 1)

            let (bytes, metadata) = try await client.getObjectBytes(bucket: fixture.bucket, key: key)
            #expect(bytes.count == size)
            #expect(sha256Hex(bytes) == resource.sha256)
            #expect(sha256Hex(bytes) == sha256Hex(chunks: chunks))
            #expect(metadata.metadata["sha256"] == resource.sha256)
            #expect(try await fixture.versions(key).count == 1)
            #expect(try await client.listAllMultipartUploads(bucket: fixture.bucket).isEmpty)
            #expect(try await spool.bundle("resume")?.state == .delivered)
        }
    }
}
