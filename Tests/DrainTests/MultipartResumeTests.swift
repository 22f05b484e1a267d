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
    /// The file was damaged meanwhile in a part not yet sent: the whole-file CRC32C, combined from the recorded
    /// checksums of the held parts and those of the parts sent now, does not match, so the upload is aborted.
    case damagedInAMissingPart
    /// The first drainer was killed before it recorded part 2: its checksum is read from the file.
    case heldPartNotRecorded
    /// As above, and the file was damaged in part 2 meanwhile: the checksum read from the file gives it away.
    case heldPartNotRecordedAndDamaged
    var testDescription: String { rawValue }
}

@Suite("Multipart uploads resume where they stopped")
struct MultipartResumeTests {
    @Test(
        "A drainer stopped after 2 of 4 parts; the next one sends only what is missing (checking the whole CRC32C with the held parts' recorded or re-read checksums), or starts afresh on NoSuchUpload",
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

            let path = directory.spool + "/" + (try #require(interrupted.payloadPath))
            /// Flips one bit of the spooled file (same size, different bytes).
            func damage(at offset: Int) throws {
                var bytes = try readFile(path)
                bytes[offset] ^= 0x04
                try writeFile(path, bytes)
            }
            switch scenario {
            case .resumed: break
            case .abortedBehindTheDrainersBack:
                try await client.abortMultipartUpload(bucket: fixture.bucket, key: key, uploadID: uploadID)
            case .damagedInAMissingPart:
                try damage(at: (10 << 20) + 777)
            case .heldPartNotRecorded:
                try await spool.forgetRecordedPart(resourceID: resource.id, partNumber: 2)
            case .heldPartNotRecordedAndDamaged:
                try await spool.forgetRecordedPart(resourceID: resource.id, partNumber: 2)
                try damage(at: (5 << 20) + 12_345)
            }

            // Second drainer, nothing failing but what the scenario damaged.
            let secondStore = Shared<InstrumentedStore?>(nil)
            let progress = try await drain(
                spool,
                fixture.resolve { base in
                    let store = InstrumentedStore(base)
                    secondStore.set(store)
                    return store
                })
            let store = try #require(secondStore.get())
            let row = try await spool.row(resource.id)
            #expect(store.count(.listParts, key: key) == 1, "it asked S3 what the upload holds")
            if scenario == .damagedInAMissingPart || scenario == .heldPartNotRecordedAndDamaged {
                #expect(progress.failed == 1)
                #expect(row.state == .failed && row.lastErrorCode == "corrupt-payload", "\(row)")
                #expect(store.partNumbers(key: key) == [3, 4], "only the missing parts were sent")
                #expect(store.count(.completeUpload, key: key) == 0)
                #expect(store.count(.abortUpload, key: key) == 1)
                #expect(try await spool.recordedUploads()[uploadID]?.outcome == "aborted")
                #expect(try await client.headObjectIfExists(bucket: fixture.bucket, key: key) == nil)
                #expect(try await client.listAllMultipartUploads(bucket: fixture.bucket).isEmpty)
                #expect(try await spool.bundle("resume")?.state == .sealed)
                return
            }
            #expect(progress.delivered == 2)
            #expect(row.state == .done)
            #expect(row.etag?.hasSuffix("-4") == true)
            let uploads = try await spool.recordedUploads()
            switch scenario {
            case .resumed, .heldPartNotRecorded:
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
            case .damagedInAMissingPart, .heldPartNotRecordedAndDamaged:
                Issue.record("a damaged payload was delivered")
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
