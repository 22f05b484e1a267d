import Drain
import Foundation
import Logging
import PipelineStorage
import S3
import Testing

@testable import LocalS3Support
@testable import Spool

/// Writes a sealed bundle of two small resources (and, with `large`, one of 6 MiB: a multipart upload).
@discardableResult
func spoolBundle(_ storage: PipelineStorage, _ id: String, large: Bool = false) async throws -> [SpooledResource] {
    try await storage.withBundle(id) { bundle in
        var spooled: [SpooledResource] = []
        for index in 0..<2 {
            spooled.append(
                try await bundle.writeResource(
                    url: "https://example.com/\(id)/\(index)", contentType: "text/plain", statusCode: 200,
                    bytes: content(size: 500 + index, seed: index)))
        }
        if large {
            spooled.append(
                try await bundle.writeResource(
                    url: "https://example.com/\(id)/large", contentType: "application/octet-stream", statusCode: 200,
                    bytes: content(size: (6 << 20) + 3, seed: 77)))
        }
        return spooled
    }
}

/// The lifecycle rule ids the drainer writes for a prefix.
func ruleIDs(_ prefix: String) -> (abort: String, lifecycle: String) {
    ("pipeline-storage:abort-incomplete-uploads:\(prefix)", "pipeline-storage:lifecycle:\(prefix)")
}

/// A policy's statements by `Sid`.
func statements(_ policy: String?) throws -> [String: [String: Any]] {
    let text = try #require(policy)
    let document = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    let list = try #require(document["Statement"] as? [[String: Any]])
    return Dictionary(uniqueKeysWithValues: list.map { ($0["Sid"] as? String ?? "", $0) })
}

@Suite("Bucket set-up applied by the drainer, read back from moto with the matching GetBucket* calls")
struct BucketSetupTests {
    @Test("Create, public-access block on by default, policy, versioning, AES256, lifecycle with the abort rule")
    func everySettingApplied() async throws {
        try await withTestDirectory { directory in
            let server = try await LocalS3.shared.server()
            let client = localClient(server)
            let bucket = newBucketName()
            let policy = """
                {"Version":"2012-10-17","Statement":[{"Sid":"TeamRead","Effect":"Allow",\
                "Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"s3:GetObject",\
                "Resource":"arn:aws:s3:::\(bucket)/data/*"}]}
                """
            var options = testStorageOptions()
            options.createBucket = true
            options.versioning = true
            options.bucketPolicy = policy
            options.encryption = .aes256
            options.lifecyclePolicy = "archive-after-30-days"
            let storage = try PipelineStorage(
                bucket: bucket, prefix: "data/", region: server.region, endpoint: server.endpoint, options: options,
                spool: .directory(directory.spool))
            let spooled = try await spoolBundle(storage, "b-1")
            let transport = CountingTransport()
            let progress = try await drain(storage.spool, setupResolver(server: server, transport: transport))
            #expect(progress.delivered == spooled.count + 1)

            #expect(
                transport.setupCalls == [
                    "HEAD bucket", "PUT bucket", "PUT publicAccessBlock", "PUT policy", "PUT versioning",
                    "PUT encryption", "GET lifecycle", "PUT lifecycle",
                ], "created, then configured in order, once")
            #expect(transport.createBucketBody?.isEmpty == true, "us-east-1: CreateBucket without a body")
            #expect(try await client.getBucketLocation(bucket) == "us-east-1")
            #expect(try await client.getPublicAccessBlock(bucket) == .allBlocked)
            #expect(try statements(try await client.getBucketPolicy(bucket))["TeamRead"] != nil)
            #expect(try await client.getBucketVersioning(bucket) == .enabled)
            #expect(try await client.getBucketEncryption(bucket) == .aes256)
            let rules = Dictionary(
                uniqueKeysWithValues: try await client.getBucketLifecycleConfiguration(bucket).map { ($0.id, $0) })
            #expect(rules.count == 2)
            let abort = try #require(rules[ruleIDs("data/").abort])
            #expect(abort.prefix == "data/")
            #expect(abort.abortIncompleteUploadDays == 7)
            #expect(abort.enabled)
            let archive = try #require(rules[ruleIDs("data/").lifecycle])
            #expect(archive.prefix == "data/")
            #expect(archive.transitions == [.init(days: 30, storageClass: "GLACIER")])

            for resource in spooled {
                #expect(try await client.headObject(bucket: bucket, key: resource.objectKey).versionID != nil)
            }
            let events = try await storage.spool.auditEvents(action: "destination.bucket_configured")
            #expect(events.count == 1)
            let detail = try #require(events.first?.detail)
            #expect(detail["bucket"] == bucket)
            #expect(detail["create_bucket"] == "true")
            #expect(detail["versioning"] == "enabled")
            #expect(detail["encryption"] == "AES256")
            #expect(detail["lifecycle"] == "archive-after-30-days")
            #expect(detail["public_access_block"] == "blocked")
            #expect(detail["policy"]?.hasPrefix("document sha256:") == true)
            #expect(!detail.values.contains { $0.contains("TeamRead") }, "the policy's text is not in the audit trail")
            let status = try #require(try await storage.spool.status().destinations.first)
            #expect(status.bucketSetup == .applied)
            #expect(status.bucketSetupAppliedAt != nil)
        }
    }

    @Test("aws:kms with a key and a bucket key: the bucket's default, and every object (PUT and multipart) carries it")
    func kmsEncryption() async throws {
        try await withTestDirectory { directory in
            let server = try await LocalS3.shared.server()
            let client = localClient(server)
            let key = try await LocalAWSServices(server).createKMSKey()
            let bucket = try await freshBucket(client)
            var options = testStorageOptions()
            options.encryption = .kms(keyID: key, bucketKey: true)
            let storage = try PipelineStorage(
                bucket: bucket, prefix: "kms/", region: server.region, endpoint: server.endpoint, options: options,
                spool: .directory(directory.spool))
            let spooled = try await spoolBundle(storage, "k-1", large: true)
            let progress = try await drain(storage.spool, setupResolver(server: server))
            #expect(progress.delivered == spooled.count + 1)

            #expect(try await client.getBucketEncryption(bucket) == .kms(keyID: key, bucketKey: true))
            for object in spooled.map(\.objectKey) + ["kms/k-1/_bundle.json"] {
                let head = try await client.headObject(bucket: bucket, key: object)
                #expect(head.serverSideEncryption == "aws:kms", "\(object)")
                #expect(head.kmsKeyID == key, "\(object)")
            }
            let detail = try #require(
                try await storage.spool.auditEvents(action: "destination.bucket_configured").first
            )
            .detail
            #expect(detail["encryption"] == "aws:kms")
            #expect(detail["kms_key_id"] == key)
            #expect(detail["bucket_key"] == "true")
        }
    }

    @Test("public-read lifts the public-access block, adds its statement next to others, and logs a warning")
    func publicRead() async throws {
        try await withTestDirectory { directory in
            let server = try await LocalS3.shared.server()
            let client = localClient(server)
            let bucket = try await freshBucket(client)
            try await client.putPublicAccessBlock(bucket, .allBlocked)
            try await client.putBucketPolicy(
                bucket,
                policy: """
                    {"Version":"2012-10-17","Statement":[{"Sid":"Theirs","Effect":"Deny","Principal":"*",\
                    "Action":"s3:DeleteBucket","Resource":"arn:aws:s3:::\(bucket)"}]}
                    """)
            var options = testStorageOptions()
            options.bucketPolicy = "public-read"
            let storage = try PipelineStorage(
                bucket: bucket, prefix: "pub/", region: server.region, endpoint: server.endpoint, options: options,
                spool: .directory(directory.spool))
            try await spoolBundle(storage, "p-1")
            let handler = CapturingLogHandler()
            let drainer = Drainer(
                spool: storage.spool, options: testDrainOptions(), logger: Logger(label: "t") { _ in handler },
                resolveStore: setupResolver(server: server))
            _ = try await drainer.run()

            #expect(try await client.getPublicAccessBlock(bucket) == .noneBlocked)
            let policy = try statements(try await client.getBucketPolicy(bucket))
            #expect(policy["Theirs"] != nil, "the bucket's other statements are kept")
            let ours = try #require(policy[BucketPolicy.publicReadStatementID(prefix: "pub/")])
            #expect(ours["Effect"] as? String == "Allow")
            #expect(ours["Action"] as? String == "s3:GetObject")
            #expect(ours["Principal"] as? String == "*")
            #expect(ours["Resource"] as? String == "arn:aws:s3:::\(bucket)/pub/*")
            #expect(handler.messages(at: .warning).contains { $0.contains("public-read") })
            let detail = try #require(
                try await storage.spool.auditEvents(action: "destination.bucket_configured").first
            )
            .detail
            #expect(detail["policy"] == "public-read")
            #expect(detail["public_access_block"] == "lifted")
        }
    }

    @Test("createBucket outside us-east-1 sends its region as LocationConstraint; GetBucketLocation reads it back")
    func createInAnotherRegion() async throws {
        try await withTestDirectory { directory in
            let server = try await LocalS3.shared.server()
            let bucket = newBucketName()
            var options = testStorageOptions()
            options.createBucket = true
            let storage = try PipelineStorage(
                bucket: bucket, prefix: "eu/", region: "eu-west-1", endpoint: server.endpoint, options: options,
                spool: .directory(directory.spool))
            let spooled = try await spoolBundle(storage, "e-1")
            let transport = CountingTransport()
            let progress = try await drain(storage.spool, setupResolver(server: server, transport: transport))
            #expect(progress.delivered == spooled.count + 1)
            let body = String(decoding: try #require(transport.createBucketBody), as: UTF8.self)
            #expect(body.contains("<LocationConstraint>eu-west-1</LocationConstraint>"))
            #expect(try await localClient(server).getBucketLocation(bucket) == "eu-west-1")
        }
    }

    @Test("Applied once: concurrent deliveries wait for one set-up; a second drain makes no bucket calls at all")
    func idempotent() async throws {
        try await withTestDirectory { directory in
            let server = try await LocalS3.shared.server()
            let client = localClient(server)
            let bucket = try await freshBucket(client)
            var options = testStorageOptions()
            options.lifecyclePolicy = "expire-after-365-days"
            options.versioning = true
            let storage = try PipelineStorage(
                bucket: bucket, prefix: "data/", region: server.region, endpoint: server.endpoint, options: options,
                spool: .directory(directory.spool))
            for index in 0..<4 { try await spoolBundle(storage, "i-\(index)") }
            let first = CountingTransport()
            try await drain(storage.spool, setupResolver(server: server, transport: first))
            #expect(
                first.setupCalls == ["PUT publicAccessBlock", "PUT versioning", "GET lifecycle", "PUT lifecycle"],
                "one set-up for 12 deliveries")

            try await spoolBundle(storage, "i-later")
            let second = CountingTransport()
            let progress = try await drain(storage.spool, setupResolver(server: server, transport: second))
            #expect(progress.delivered == 3)
            #expect(second.setupAttempts.isEmpty, "nothing applied again: \(second.setupAttempts)")
            #expect(try await storage.spool.auditEvents(action: "destination.bucket_configured").count == 1)
        }
    }

    @Test("Changed options, or a new prefix, apply the set-up again; rules for other prefixes are kept")
    func reappliedOnChange() async throws {
        try await withTestDirectory { directory in
            let server = try await LocalS3.shared.server()
            let client = localClient(server)
            let bucket = try await freshBucket(client)
            try await client.putBucketLifecycleConfiguration(
                bucket, rules: [BucketLifecycleRule(id: "someone-elses", prefix: "other/", expirationDays: 3)])
            var options = testStorageOptions()
            options.lifecyclePolicy = "archive-after-30-days"
            func storage(prefix: String, _ options: StorageOptions) throws -> PipelineStorage {
                try PipelineStorage(
                    bucket: bucket, prefix: prefix, region: server.region, endpoint: server.endpoint,
                    options: options, spool: .directory(directory.spool))
            }
            let first = try storage(prefix: "data/", options)
            try await spoolBundle(first, "r-1")
            try await drain(first.spool, setupResolver(server: server))
            func rules() async throws -> [String: BucketLifecycleRule] {
                Dictionary(
                    uniqueKeysWithValues: try await client.getBucketLifecycleConfiguration(bucket).map { ($0.id, $0) })
            }
            #expect(try await rules()[ruleIDs("data/").lifecycle]?.transitions.first?.days == 30)

            options.lifecyclePolicy = "archive-after-90-days"
            let changed = try storage(prefix: "data/", options)
            try await spoolBundle(changed, "r-2")
            let transport = CountingTransport()
            try await drain(changed.spool, setupResolver(server: server, transport: transport))
            #expect(transport.setupCalls.contains("PUT lifecycle"))
            #expect(try await rules()[ruleIDs("data/").lifecycle]?.transitions.first?.days == 90)

            let elsewhere = try storage(prefix: "logs/", options)
            try await spoolBundle(elsewhere, "r-3")
            try await drain(elsewhere.spool, setupResolver(server: server))
            let now = try await rules()
            #expect(now[ruleIDs("data/").lifecycle] != nil)
            #expect(now[ruleIDs("logs/").lifecycle]?.prefix == "logs/")
            #expect(now[ruleIDs("logs/").abort]?.abortIncompleteUploadDays == 7)
            #expect(now["someone-elses"]?.expirationDays == 3, "a rule the drainer does not own is kept")
            #expect(now.count == 5)
            let events = try await first.spool.auditEvents(action: "destination.bucket_configured")
            #expect(events.count == 3)
            #expect(events.last?.detail["prefixes"] == "data/,logs/")
        }
    }

    @Test("A running drainer picks up changed options and applies the set-up again, without a restart")
    func changedWhileRunning() async throws {
        try await withTestDirectory { directory in
            let server = try await LocalS3.shared.server()
            let client = localClient(server)
            let bucket = try await freshBucket(client)
            var options = testStorageOptions()
            options.versioning = false
            func storage(_ options: StorageOptions) throws -> PipelineStorage {
                try PipelineStorage(
                    bucket: bucket, prefix: "live/", region: server.region, endpoint: server.endpoint,
                    options: options, spool: .directory(directory.spool))
            }
            let first = try storage(options)
            let drainer = Drainer(
                spool: first.spool, options: testDrainOptions(untilDone: false), logger: testLogger(),
                resolveStore: setupResolver(server: server))
            let run = Task { try await drainer.run() }
            defer { drainer.stop() }
            try await spoolBundle(first, "l-1")
            let firstDone = try await eventually { try await first.spool.status().bundles(.delivered) == 1 }
            #expect(firstDone)
            #expect(try await client.getBucketVersioning(bucket) == .suspended)

            options.versioning = true
            try await spoolBundle(try storage(options), "l-2")
            let secondDone = try await eventually { try await first.spool.status().bundles(.delivered) == 2 }
            #expect(secondDone)
            drainer.stop()
            _ = try await run.value
            #expect(try await client.getBucketVersioning(bucket) == .enabled)
            #expect(try await first.spool.auditEvents(action: "destination.bucket_configured").count == 2)
        }
    }

    @Test("A permission error pauses the destination with the missing permission named; no attempt is burned")
    func permissionErrorPauses() async throws {
        try await withTestDirectory { directory in
            let server = try await LocalS3.shared.server()
            let client = localClient(server)
            let bucket = try await freshBucket(client)
            let limited = try await LocalAWSServices(server).createUser(
                policy: """
                    {"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"},\
                    {"Effect":"Deny","Action":"s3:PutLifecycleConfiguration","Resource":"*"}]}
                    """)
            var options = testStorageOptions()
            options.lifecyclePolicy = "abort-incomplete-uploads-only"
            let storage = try PipelineStorage(
                bucket: bucket, prefix: "data/", region: server.region, endpoint: server.endpoint, options: options,
                spool: .directory(directory.spool))
            let spooled = try await spoolBundle(storage, "d-1")
            let credentials = SwitchableCredentials(limited)
            let drainer = Drainer(
                spool: storage.spool, options: testDrainOptions(untilDone: false), logger: testLogger(),
                resolveStore: setupResolver(server: server, credentials: credentials))
            let run = Task { try await drainer.run() }
            defer { drainer.stop() }

            // Generous waits: moto can take seconds per request while the whole suite runs on two cores.
            let paused = try await eventually(timeout: .seconds(60)) {
                try await !storage.spool.status().pausedDestinations.isEmpty
            }
            try #require(paused, "the destination was not paused")
            let pause = try #require(try await storage.spool.status().pausedDestinations.first)
            #expect(pause.errorCode == "AccessDenied")
            #expect(pause.message.contains("failed at lifecycle"))
            #expect(pause.message.contains("s3:PutLifecycleConfiguration"))
            #expect(try await storage.spool.status().destinations.first?.bucketSetup == .pending)
            for row in try await storage.spool.allRows() { #expect(row.attempts == 0) }
            #expect(try await client.listAllObjects(bucket: bucket).isEmpty, "nothing delivered before the set-up")

            credentials.set(AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: server.secretAccessKey))
            let delivered = try await eventually(timeout: .seconds(120)) {
                try await storage.spool.status().count(.done) == spooled.count
            }
            #expect(delivered, "the destination did not resume once the permission was there")
            drainer.stop()
            _ = try await run.value
            #expect(try await storage.spool.status().destinations.first?.bucketSetup == .applied)
            #expect(try await client.getBucketLifecycleConfiguration(bucket).map(\.id) == [ruleIDs("data/").abort])
            #expect(try await storage.spool.auditEvents(action: "destination.resumed").count == 1)
        }
    }

    @Test(
        "Options that cannot be decoded, or that S3 would refuse, pause the destination with a clear error",
        arguments: [
            (#"{"maxRetries":"ten"}"#, "cannot be read"),
            (#"{"lifecyclePolicy":"archive-someday"}"#, "archive-after-30-days"),
            (#"{"bucketPolicy":"public-read","publicAccessBlock":"blocked"}"#, "lifts the public-access block"),
        ])
    func invalidOptionsPause(json: String, fragment: String) async throws {
        try await withTestDirectory { directory in
            let server = try await LocalS3.shared.server()
            let bucket = try await freshBucket(localClient(server))
            // Written as an older or buggy writer might have: straight into the spool, past the writer's checks.
            let destination = try DestinationSpec.s3(
                bucket: bucket, region: server.region, endpoint: server.endpoint, optionsJSON: json)
            let storage = try PipelineStorage(
                destination: destination, prefix: "data/", options: StorageOptions(),
                spool: .directory(directory.spool), spoolOptions: SpoolOptions())
            try await spoolBundle(storage, "x-1")
            let transport = CountingTransport()
            let drainer = Drainer(
                spool: storage.spool, options: testDrainOptions(untilDone: false), logger: testLogger(),
                resolveStore: setupResolver(server: server, transport: transport))
            let run = Task { try await drainer.run() }
            let paused = try await eventually(timeout: .seconds(20)) {
                try await !storage.spool.status().pausedDestinations.isEmpty
            }
            drainer.stop()
            _ = try await run.value
            try #require(paused, "the destination was not paused")
            let pause = try #require(try await storage.spool.status().pausedDestinations.first)
            #expect(pause.errorCode == "InvalidConfiguration")
            #expect(pause.message.contains(fragment), "\(pause.message)")
            #expect(try await storage.spool.status().destinations.first?.bucketSetup == .invalid)
            for row in try await storage.spool.allRows() { #expect(row.attempts == 0 && row.state == .pending) }
            #expect(transport.setupAttempts.isEmpty)
        }
    }

    @Test("A file:// destination has no bucket set-up")
    func directoryHasNone() async throws {
        try await withTestDirectory { directory in
            var options = testStorageOptions()
            options.createBucket = true
            options.lifecyclePolicy = "archive-after-30-days"
            let storage = try PipelineStorage(
                directory: directory.target, prefix: "data/", options: options, spool: .directory(directory.spool))
            let spooled = try await spoolBundle(storage, "f-1")
            let progress = try await drain(storage.spool, resolver())
            #expect(progress.delivered == spooled.count + 1)
            #expect(try await storage.spool.auditEvents(action: "destination.bucket_configured").isEmpty)
            #expect(try await storage.spool.status().destinations.first?.bucketSetup == .notApplicable)
        }
    }
}
