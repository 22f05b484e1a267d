import Drain
import Foundation
import PipelineStorage
import S3
import Testing

@testable import LocalS3Support
@testable import Spool

@Suite("Lost answers and conditional-write collisions on S3")
struct LostAnswerTests {
    @Test(
        "A PutObject or CompleteMultipartUpload that succeeded but whose answer was lost: the retry finds our object and records done, one version"
    )
    func lostAnswers() async throws {
        try await withTestDirectory { directory in
            let fixture = try await TargetFixture.make(.versionedBucket, in: directory)
            let client = try #require(fixture.client)
            let small = content(size: 50_000, seed: 900)
            let large = content(size: (10 << 20) + 17, seed: 901)
            let (smallResource, largeResource) = try await fixture.storage.withBundle("lost-answers") { bundle in
                (
                    try await bundle.writeResource(
                        url: "https://example.com/small", contentType: "text/plain", statusCode: 200, bytes: small),
                    try await bundle.writeResource(
                        url: "https://example.com/large", contentType: "application/octet-stream", statusCode: 200,
                        bytes: large)
                )
            }

            // The request reaches S3 and succeeds; the drainer hears a connection reset instead.
            final class AnswerLosingStore: ObjectStore {
                let base: any ObjectStore
                let lost = Shared<Set<String>>([])
                let calls = Shared<[String]>([])
                init(_ base: any ObjectStore) { self.base = base }
                var displayName: String { base.displayName }
                var supportsMultipart: Bool { base.supportsMultipart }
                func loseFirstAnswer(_ what: String) throws {
                    let first = lost.update { $0.insert(what).inserted }
                    if first {
                        throw ObjectStoreError(.transient, code: "ConnectionReset", message: "answer lost (test)")
                    }
                }
                func put(_ object: ObjectWrite) async throws -> StoredObject {
                    calls.update { $0.append("put " + object.key) }
                    let stored = try await base.put(object)
                    if !object.key.hasSuffix("_bundle.json") { try loseFirstAnswer("put " + object.key) }
                    return stored
                }
                func head(key: String) async throws -> ExistingObject? {
                    calls.update { $0.append("head " + key) }
                    return try await base.head(key: key)
                }
                func createUpload(for object: ObjectWrite) async throws -> String {
                    calls.update { $0.append("create " + object.key) }
                    return try await base.createUpload(for: object)
                }
                func uploadPart(
                    key: String, uploadID: String, number: Int, body: PayloadBody, crc32c: UInt32, sha256: String
                ) async throws -> StoredPart {
                    try await base.uploadPart(
                        key: key, uploadID: uploadID, number: number, body: body, crc32c: crc32c, sha256: sha256)
                }
                func listParts(key: String, uploadID: String) async throws -> [StoredPart] {
                    calls.update { $0.append("list-parts " + key) }
                    return try await base.listParts(key: key, uploadID: uploadID)
                }
                func completeUpload(key: String, uploadID: String, parts: [StoredPart]) async throws -> StoredObject {
                    calls.update { $0.append("complete " + key) }
                    let stored = try await base.completeUpload(key: key, uploadID: uploadID, parts: parts)
                    try loseFirstAnswer("complete " + key)
                    return stored
                }
                func abortUpload(key: String, uploadID: String) async throws {
                    try await base.abortUpload(key: key, uploadID: uploadID)
                }
                func listUploads(key: String) async throws -> [String] { try await base.listUploads(key: key) }
            }
            let store = Shared<AnswerLosingStore?>(nil)
            let progress = try await drain(
                fixture.spool,
                fixture.resolve { base in
                    let losing = AnswerLosingStore(base)
                    store.set(losing)
                    return losing
                })
            #expect(progress.retriesScheduled == 2)
            #expect(progress.failed == 0)
            let calls = try #require(store.get()).calls.get()

            for (resource, bytes) in [(smallResource, small), (largeResource, large)] {
                let row = try await fixture.spool.row(resource.id)
                #expect(row.state == .done)
                #expect(row.attempts == 1, "one attempt counted for the lost answer")
                let versions = try await fixture.versions(resource.objectKey)
                #expect(versions.count == 1, "the retry wrote no second version")
                #expect(row.versionID == versions.first)
                #expect(try await fixture.object(resource.objectKey) == bytes)
                let notes = try await fixture.spool.resourceDetail(resource.id).events.compactMap { $0.detail["note"] }
                #expect(notes.contains { $0.contains("answer was lost") })
            }
            // The small object: a second PUT met 412 and HEAD settled it. The large one: the recorded upload was gone
            // (completed), HEAD settled it, and no second upload was started.
            #expect(calls.filter { $0 == "put " + smallResource.objectKey }.count == 2)
            #expect(calls.contains("head " + smallResource.objectKey))
            #expect(calls.filter { $0 == "create " + largeResource.objectKey }.count == 1)
            #expect(calls.contains("list-parts " + largeResource.objectKey))
            #expect(calls.contains("head " + largeResource.objectKey))
            #expect(try await client.listAllMultipartUploads(bucket: fixture.bucket).isEmpty)
            #expect(try await fixture.spool.bundle("lost-answers")?.state == .delivered)
        }
    }

    @Test(
        "409 ConditionalRequestConflict on CompleteMultipartUpload: that upload is aborted, the retry makes a new one")
    func conditionalConflict() async throws {
        try await withTestDirectory { directory in
            let fixture = try await TargetFixture.make(.versionedBucket, in: directory)
            let client = try #require(fixture.client)
            let bytes = content(size: (6 << 20) + 1, seed: 910)
            let resource = try await fixture.storage.withBundle("collide") { bundle in
                try await bundle.writeResource(
                    url: "https://example.com/collide", contentType: "application/octet-stream", statusCode: 200,
                    bytes: bytes)
            }
            let collided = Shared(false)
            let store = Shared<InstrumentedStore?>(nil)
            let progress = try await drain(
                fixture.spool,
                fixture.resolve { base in
                    let instrumented = InstrumentedStore(base) { call, _, _ in
                        guard call == .completeUpload,
                            collided.update({ flag -> Bool in
                                defer { flag = true }
                                return !flag
                            })
                        else { return }
                        throw ObjectStoreError(
                            .conflict, code: "ConditionalRequestConflict", message: "a concurrent write (test)")
                    }
                    store.set(instrumented)
                    return instrumented
                })
            #expect(progress.retriesScheduled == 1)
            let instrumented = try #require(store.get())
            #expect(instrumented.count(.createUpload, key: resource.objectKey) == 2, "a new upload for the retry")
            #expect(instrumented.count(.abortUpload, key: resource.objectKey) == 1)
            let row = try await fixture.spool.row(resource.id)
            #expect(row.state == .done)
            #expect(row.attempts == 1)
            let uploads = try await fixture.spool.recordedUploads()
            #expect(uploads.values.map(\.outcome).sorted { ($0 ?? "") < ($1 ?? "") } == ["aborted", "completed"])
            #expect(try await fixture.object(resource.objectKey) == bytes)
            #expect(try await fixture.versions(resource.objectKey).count == 1)
            #expect(try await client.listAllMultipartUploads(bucket: fixture.bucket).isEmpty)
        }
    }
}
