import Drain
import Foundation
import PipelineStorage
import S3
import Testing

@testable import LocalS3Support
@testable import Spool

@Suite("Paused destinations: no attempts burned, resumed by a probe once the cause is fixed")
struct PausedDestinationTests {
    /// Spools `count` small resources and one of 6 MiB (a multipart upload) for `bucket`.
    func spoolWork(_ storage: PipelineStorage, count: Int) async throws -> [SpooledResource] {
        try await storage.withBundle("paused") { bundle in
            var spooled: [SpooledResource] = []
            for index in 0..<count {
                spooled.append(
                    try await bundle.writeResource(
                        url: "https://example.com/paused/\(index)", contentType: "text/plain", statusCode: 200,
                        bytes: content(size: 100 + index * 1_000, seed: 300 + index)))
            }
            spooled.append(
                try await bundle.writeResource(
                    url: "https://example.com/paused/large", contentType: "application/octet-stream", statusCode: 200,
                    bytes: content(size: (6 << 20) + 5, seed: 399)))
            return spooled
        }
    }

    /// Runs `drainer` in a task until paused with one of `codes`, checks that nothing burned an attempt over a few
    /// probes, calls `fix`, then waits for everything to be delivered and the destination resumed.
    func pauseThenFix(
        spool: SpoolStore, drainer: Drainer, expected: [SpooledResource], codes: Set<String>,
        fix: () async throws -> Void
    ) async throws {
        let run = Task { try await drainer.run() }
        defer { drainer.stop() }

        // Generous waits: moto can take seconds per request while the whole suite runs on two cores.
        let paused = try await eventually(timeout: .seconds(60)) {
            try await spool.status().pausedDestinations.contains { codes.contains($0.errorCode) }
        }
        try #require(paused, "the destination was not paused with \(codes)")
        let pause = try #require(try await spool.status().pausedDestinations.first)
        #expect(pause.destination.hasPrefix("s3://"))
        #expect(!pause.message.isEmpty)
        // Probes go on while paused (one claim per recheck), without burning attempts.
        let probed = try await eventually(timeout: .seconds(60)) {
            try await spool.auditEvents(action: "resource.claimed").filter { $0.detail["probe"] == "true" }.count >= 3
        }
        #expect(probed, "the paused destination was probed again and again")
        for row in try await spool.allRows() where row.kind == .resource {
            #expect(row.attempts == 0, "\(row.objectKey): \(row.attempts) attempts burned while paused")
            #expect(row.state == .pending || row.state == .uploading)
        }
        #expect(try await spool.status().count(.failed) == 0)

        try await fix()

        let delivered = try await eventually(timeout: .seconds(120)) {
            let status = try await spool.status()
            return status.count(.done) == expected.count && status.bundles(.delivered) == 1
        }
        #expect(delivered, "the destination did not resume by itself")
        drainer.stop()
        let progress = try await run.value
        #expect(progress.failed == 0)
        #expect(progress.pauses >= 1)

        let status = try await spool.status()
        #expect(status.pausedDestinations.isEmpty, "the destination is no longer paused")
        for row in try await spool.allRows() {
            #expect(row.state == .done)
            #expect(row.attempts == 0, "\(row.objectKey): no attempt was counted for the pause")
        }
        #expect(try await spool.auditEvents(action: "destination.paused").count == 1)
        #expect(try await spool.auditEvents(action: "destination.resumed").count == 1)
    }

    @Test("NoSuchBucket pauses the destination; creating the bucket resumes delivery without a restart")
    func missingBucket() async throws {
        try await withTestDirectory { directory in
            let server = try await LocalS3.shared.server()
            let client = localClient(server)
            let bucket = newBucketName()
            let storage = try PipelineStorage(
                bucket: bucket, prefix: "p/", region: server.region, endpoint: server.endpoint,
                options: testStorageOptions(), spool: .directory(directory.spool))
            let spooled = try await spoolWork(storage, count: 12)
            let drainer = Drainer(
                spool: storage.spool, options: testDrainOptions(untilDone: false), logger: testLogger(),
                resolveStore: resolver(server: server))
            try await pauseThenFix(
                spool: storage.spool, drainer: drainer, expected: spooled, codes: ["NoSuchBucket"]
            ) {
                try await client.createBucket(bucket)
            }
            let objects = try await client.listAllObjects(bucket: bucket, prefix: "p/")
            #expect(Set(objects.map(\.key)) == Set(spooled.map(\.objectKey) + ["p/paused/_bundle.json"]))
            for resource in spooled {
                let bytes = try await client.getObjectBytes(bucket: bucket, key: resource.objectKey).bytes
                #expect(sha256Hex(bytes) == resource.sha256)
            }
            #expect(try await client.listAllMultipartUploads(bucket: bucket).isEmpty)
        }
    }

    @Test("A wrong secret pauses the destination; fixing the credentials resumes delivery in the same drainer")
    func wrongCredentials() async throws {
        try await withTestDirectory { directory in
            let server = try await LocalS3.shared.server()
            let client = localClient(server)
            let bucket = try await freshBucket(client)
            let storage = try PipelineStorage(
                bucket: bucket, prefix: "p/", region: server.region, endpoint: server.endpoint,
                options: testStorageOptions(), spool: .directory(directory.spool))
            let spooled = try await spoolWork(storage, count: 8)
            let credentials = SwitchableCredentials(
                AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: "not-the-secret"))
            let drainer = Drainer(
                spool: storage.spool, options: testDrainOptions(untilDone: false), logger: testLogger(),
                resolveStore: resolver(server: server, credentials: credentials))
            try await pauseThenFix(
                spool: storage.spool, drainer: drainer, expected: spooled,
                codes: ["SignatureDoesNotMatch", "InvalidAccessKeyId"]
            ) {
                let objects = try await client.listAllObjects(bucket: bucket)
                #expect(objects.isEmpty, "nothing got through while paused")
                credentials.set(
                    AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: server.secretAccessKey))
            }
            let objects = try await client.listAllObjects(bucket: bucket, prefix: "p/")
            #expect(objects.count == spooled.count + 1)
            #expect(try await client.listAllMultipartUploads(bucket: bucket).isEmpty)
        }
    }
}
