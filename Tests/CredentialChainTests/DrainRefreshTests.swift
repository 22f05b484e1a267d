import CredentialChain
import Drain
import Foundation
import Logging
import PipelineStorage
import S3
import Synchronization
import SpoolTestSupport
import Testing

@testable import LocalS3Support
@testable import Spool

/// Passes every call on, each write after a pause: keeps a drain running long enough for several refreshes.
struct PacedStore: ObjectStore {
    let base: any ObjectStore
    let pause: Duration

    var displayName: String { base.displayName }
    var supportsMultipart: Bool { base.supportsMultipart }

    func put(_ object: ObjectWrite) async throws -> StoredObject {
        try await Task.sleep(for: pause)
        return try await base.put(object)
    }

    func head(key: String) async throws -> ExistingObject? { try await base.head(key: key) }
    func createUpload(for object: ObjectWrite) async throws -> String { try await base.createUpload(for: object) }

    func uploadPart(key: String, uploadID: String, number: Int, body: PayloadBody, crc32c: UInt32, sha256: String)
        async throws -> StoredPart
    {
        try await Task.sleep(for: pause)
        return try await base.uploadPart(
            key: key, uploadID: uploadID, number: number, body: body, crc32c: crc32c, sha256: sha256)
    }

    func listParts(key: String, uploadID: String) async throws -> [StoredPart] {
        try await base.listParts(key: key, uploadID: uploadID)
    }

    func completeUpload(key: String, uploadID: String, parts: [StoredPart]) async throws -> StoredObject {
        try await base.completeUpload(key: key, uploadID: uploadID, parts: parts)
    }

    func abortUpload(key: String, uploadID: String) async throws {
        try await base.abortUpload(key: key, uploadID: uploadID)
    }

    func listUploads(key: String) async throws -> [String] { try await base.listUploads(key: key) }
}

@Suite("Short-lived credentials refreshed in the middle of a drain")
struct DrainRefreshTests {
    @Test(
        "Container credentials expiring every few seconds, rotating between two IAM keys: refreshed, all delivered, no failure"
    )
    func rotatingCredentialsDuringALongDrain() async throws {
        let moto = try await LocalS3.shared.server()
        let keys = try await MotoIAM(moto).createUser(uniquePrefix("drainer"), keys: 2)
        let server = try await LocalS3.shared.newCredentialServer()
        try await server.configure(
            .init(
                credentials: keys.map {
                    .init(accessKeyID: $0.accessKeyID, secretAccessKey: $0.secretAccessKey, token: "")
                },
                expiresIn: 2, authToken: "container-token"))
        let sandbox = try Sandbox()
        let tokenFile = try sandbox.write("token", "container-token")
        let environment = sandbox.environment([
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": server.endpoint + "/creds",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokenFile, "AWS_REGION": moto.region,
        ])
        let refreshes = Mutex(0)
        var options = CredentialChain.Options()
        // Valid for 2 s, refreshed when less than 1 s is left: a new key about every second.
        options.refreshPolicy = CredentialsRefreshPolicy(
            refreshBefore: .seconds(1), expiryMargin: .milliseconds(300), retryAfterFailure: .milliseconds(200))
        options.observer = { event in
            if case .refreshed = event { refreshes.withLock { $0 += 1 } }
        }
        let stores = DestinationStores(
            region: moto.region, endpoint: moto.endpoint, caBundle: nil, uploadTimeout: nil, chainOptions: options,
            environment: environment)

        let admin = motoClient(
            moto,
            StaticCredentialsProvider(
                AWSCredentials(accessKeyID: moto.accessKeyID, secretAccessKey: moto.secretAccessKey)))
        let bucket = uniquePrefix()
        try await admin.createBucket(bucket)
        let spoolDirectory = sandbox.path + "/spool"
        var storageOptions = StorageOptions()
        storageOptions.multipartThresholdBytes = 5 << 20
        storageOptions.multipartChunkSizeBytes = 5 << 20
        storageOptions.retryDelaySeconds = 0.05
        let storage = try PipelineStorage(
            bucket: bucket, prefix: "data/", region: moto.region, endpoint: moto.endpoint, options: storageOptions,
            spool: .directory(spoolDirectory))
        let bundles = 6
        let perBundle = 25
        for bundle in 0..<bundles {
            try await storage.withBundle("refresh-\(bundle)") { writer in
                for index in 0..<perBundle {
                    // Two multipart resources (3 parts each): uploads whose parts straddle refreshes.
                    let size = (bundle < 2 && index == 0) ? (11 << 20) : 2048 + index
                    try await writer.writeResource(
                        url: "https://example.com/\(bundle)/\(index)", contentType: "application/octet-stream",
                        statusCode: 200, bytes: [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: size))
                }
            }
        }

        var drainOptions = DrainOptions()
        drainOptions.concurrency = 3
        drainOptions.leaseDuration = .seconds(20)
        drainOptions.pollInterval = .milliseconds(50)
        drainOptions.untilDone = true
        drainOptions.maximumRetryDelay = .seconds(1)
        var logger = Logger(label: "credential-refresh-test")
        logger.logLevel = .warning
        let drainer = Drainer(spool: storage.spool, options: drainOptions, logger: logger) { destination in
            // 156 paced writes, 3 at a time: at least 3 s of draining, whatever the machine's speed.
            PacedStore(base: try stores.store(for: destination), pause: .milliseconds(60))
        }
        let started = ContinuousClock.now
        let watchdog = Task {
            try await Task.sleep(for: .seconds(180))
            Issue.record("the drainer did not finish within 180 s")
            drainer.stop()
        }
        let progress = try await drainer.run()
        watchdog.cancel()
        let elapsed = ContinuousClock.now - started

        #expect(progress.delivered == bundles * perBundle + bundles, "every resource and every _bundle.json")
        #expect(progress.failed == 0)
        #expect(progress.retriesScheduled == 0, "no upload failed, not even once")
        #expect(progress.pauses == 0)
        let stats = try await server.stats()
        #expect(elapsed >= .seconds(3))
        #expect(refreshes.withLock { $0 } >= 3, "fetched at the start and refreshed during the \(elapsed) drain")
        #expect(stats.handedOut.count == refreshes.withLock { $0 })
        #expect(Set(stats.handedOut) == Set(keys.map(\.accessKeyID)), "both keys were used in turn")
        #expect(stats.unauthorized == 0)
        let objects = try await admin.listAllObjects(bucket: bucket, prefix: "data/")
        #expect(objects.count == bundles * perBundle + bundles)
        await removeDirectory(spoolDirectory)
    }
}
