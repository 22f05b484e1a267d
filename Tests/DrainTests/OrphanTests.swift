import Drain
import Foundation
import PipelineStorage
import S3
import Testing

@testable import LocalS3Support
@testable import Spool

@Suite("Orphans: payload files and multipart uploads no row references")
struct OrphanTests {
    @Test(
        "A drainer removes old unreferenced payload files and aborts recorded uploads no resource references; young files, referenced files and uploads it never started stay"
    )
    func sweep() async throws {
        try await withTestDirectory { directory in
            let fixture = try await TargetFixture.make(.versionedBucket, in: directory)
            let client = try #require(fixture.client)
            let spool = fixture.spool
            let resource = try await fixture.storage.withBundle("kept") { bundle in
                try await bundle.writeResource(
                    url: "https://example.com/kept", contentType: "application/octet-stream", statusCode: 200,
                    bytes: content(size: 200_000, seed: 800))
            }
            let referenced = try #require(try await spool.row(resource.id).payloadPath)

            // Files in data/: an old orphan (a crash between rename and commit, long ago), a young one (a writer may
            // be about to commit it), and the referenced payload, made old too.
            let old = directory.data + "/orphan-old"
            let young = directory.data + "/orphan-young"
            try writeFile(old, content(size: 5_000, seed: 801))
            try writeFile(young, content(size: 5_000, seed: 802))
            age(old, bySeconds: 3_600)
            age(directory.spool + "/" + referenced, bySeconds: 3_600)
            #expect(try await spool.orphanPayloadFiles(minimumAge: .seconds(60)) == ["data/orphan-old"])

            // Uploads: one this spool recorded but no resource references (a crash after the abort was decided, or
            // a resource discarded), and one some other client started, which is none of this spool's business.
            let destination = try #require(try await spool.destinations().first)
            let orphanKey = "data/kept/999999-orphan"
            let orphanUpload = try await client.createMultipartUpload(
                CreateMultipartUploadRequest(bucket: fixture.bucket, key: orphanKey))
            _ = try await client.uploadPart(
                bucket: fixture.bucket, key: orphanKey, uploadID: orphanUpload, partNumber: 1,
                body: .bytes(content(size: 1_000, seed: 803)))
            try await spool.recordUnreferencedUpload(orphanUpload, destinationID: destination.id, key: orphanKey)
            let foreignKey = "elsewhere/object"
            let foreignUpload = try await client.createMultipartUpload(
                CreateMultipartUploadRequest(bucket: fixture.bucket, key: foreignKey))
            #expect(try await client.listAllMultipartUploads(bucket: fixture.bucket).count == 2)

            var options = testDrainOptions()
            options.orphanFileMinimumAge = .seconds(60)
            let progress = try await drain(spool, options: options, fixture.resolve())
            #expect(progress.orphanFilesRemoved == 1)
            #expect(progress.orphanUploadsAborted == 1)
            #expect(progress.delivered == 2)

            #expect(!FileManager.default.fileExists(atPath: old), "the old orphan file is removed")
            #expect(FileManager.default.fileExists(atPath: young), "a young unreferenced file is left alone")
            #expect(directoryEntries(directory.data) == ["orphan-young"], "the delivered payload is removed too")
            let uploads = try await client.listAllMultipartUploads(bucket: fixture.bucket)
            #expect(uploads.map(\.uploadID) == [foreignUpload], "only the upload this spool never started remains")
            let recorded = try await spool.recordedUploads()
            #expect(recorded[orphanUpload]?.finished == true)
            #expect(recorded[orphanUpload]?.outcome == "aborted")
            #expect(try await spool.orphanedUploads().isEmpty)
            #expect(try await fixture.object(resource.objectKey).map(sha256Hex) == resource.sha256)
            try await client.abortMultipartUpload(bucket: fixture.bucket, key: foreignKey, uploadID: foreignUpload)
        }
    }
}
