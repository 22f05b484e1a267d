import Foundation
import Hashing
import Synchronization
import Testing

@testable import LocalS3Support
@testable import S3

/// Passes requests on to libcurl and keeps a copy of each: what a test against moto wants to look at afterwards.
final class RecordingTransport: HTTPTransport {
    private let base = CurlTransport(options: TransportOptions())
    private let sent = Mutex<[HTTPRequest]>([])

    var requests: [HTTPRequest] { sent.withLock { $0 } }

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        sent.withLock { $0.append(request) }
        return try await base.execute(request)
    }
}

func localClient(_ server: LocalS3.Server, region: String, transport: any HTTPTransport) -> S3Client {
    var configuration = S3Configuration(region: region, endpoint: server.endpoint)
    configuration.maxBackoff = .milliseconds(200)
    return S3Client(
        configuration: configuration,
        credentials: StaticCredentialsProvider(
            AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: server.secretAccessKey)),
        transport: transport)
}

extension HTTPRequest {
    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var bodyBytes: [UInt8] {
        if case .bytes(let bytes) = body { return bytes }
        return []
    }

    var bodyText: String { String(decoding: bodyBytes, as: UTF8.self) }
}

@Suite("Bucket configuration requests: shapes, Content-MD5, absent configurations, CreateBucket outcomes")
struct BucketConfigurationUnitTests {
    @Test("Every configuration PUT carries the Content-MD5 of its body and a namespaced document")
    func contentMD5OnEveryPut() async throws {
        let transport = ScriptedTransport([])
        let client = makeClient(transport)
        try await client.putBucketVersioning("b", enabled: true)
        try await client.putPublicAccessBlock("b", .allBlocked)
        try await client.putBucketEncryption("b", .kms(keyID: "arn:aws:kms:us-east-1:1:key/k", bucketKey: true))
        try await client.putBucketLifecycleConfiguration(
            "b",
            rules: [
                BucketLifecycleRule(
                    id: "r", prefix: "data/", transitions: [.init(days: 30, storageClass: "GLACIER")],
                    expirationDays: 365, abortIncompleteUploadDays: 7)
            ])
        try await client.putBucketPolicy("b", policy: #"{"Statement":[]}"#)
        let requests = transport.requests
        #expect(requests.map(\.method) == Array(repeating: "PUT", count: 5))
        #expect(
            requests.map { $0.url.split(separator: "?").last.map(String.init) ?? "" } == [
                "versioning=", "publicAccessBlock=", "encryption=", "lifecycle=", "policy=",
            ])
        for request in requests {
            let md5 = Data(MD5Hasher.hash(request.bodyBytes)).base64EncodedString()
            #expect(request.header("Content-MD5") == md5, "\(request.url)")
            #expect(request.header("Content-Length") == String(request.bodyBytes.count))
        }
        #expect(requests[0].bodyText.contains("<Status>Enabled</Status>"))
        #expect(
            requests[1].bodyText
                == "<PublicAccessBlockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                + "<BlockPublicAcls>true</BlockPublicAcls><IgnorePublicAcls>true</IgnorePublicAcls>"
                + "<BlockPublicPolicy>true</BlockPublicPolicy><RestrictPublicBuckets>true</RestrictPublicBuckets>"
                + "</PublicAccessBlockConfiguration>")
        #expect(
            requests[2].bodyText
                == "<ServerSideEncryptionConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule>"
                + "<ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm>"
                + "<KMSMasterKeyID>arn:aws:kms:us-east-1:1:key/k</KMSMasterKeyID></ApplyServerSideEncryptionByDefault>"
                + "<BucketKeyEnabled>true</BucketKeyEnabled></Rule></ServerSideEncryptionConfiguration>")
        #expect(
            requests[3].bodyText
                == "<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule>"
                + "<Expiration><Days>365</Days></Expiration><ID>r</ID><Filter><Prefix>data/</Prefix></Filter>"
                + "<Status>Enabled</Status><Transition><Days>30</Days><StorageClass>GLACIER</StorageClass></Transition>"
                + "<AbortIncompleteMultipartUpload><DaysAfterInitiation>7</DaysAfterInitiation>"
                + "</AbortIncompleteMultipartUpload></Rule></LifecycleConfiguration>")
        #expect(requests[4].header("Content-Type") == "application/json")
    }

    @Test("CreateBucket: no body in us-east-1, a LocationConstraint elsewhere")
    func createBucketBodies() async throws {
        let east = ScriptedTransport([])
        #expect(try await makeClient(east).createBucket("b") == .created)
        #expect(east.requests.count == 1)
        #expect(east.requests[0].bodyBytes.isEmpty)
        #expect(east.requests[0].header("Content-Length") == "0")
        #expect(east.requests[0].header("Content-Type") == nil)

        let west = ScriptedTransport([])
        var configuration = S3Configuration(region: "eu-west-1", endpoint: "http://127.0.0.1:9")
        configuration.maxAttempts = 1
        let client = S3Client(
            configuration: configuration,
            credentials: StaticCredentialsProvider(AWSCredentials(accessKeyID: "AKID", secretAccessKey: "secret")),
            transport: west)
        try await client.createBucket("b")
        let request = try #require(west.requests.first)
        #expect(
            request.bodyText
                == "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                + "<LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>")
        #expect(request.header("Content-MD5") == Data(MD5Hasher.hash(request.bodyBytes)).base64EncodedString())
    }

    @Test("BucketAlreadyOwnedByYou is success; BucketAlreadyExists fails at once, naming the bucket")
    func createBucketConflicts() async throws {
        func error(_ code: String) -> ScriptedTransport.Step {
            .respond(
                ScriptedTransport.response(
                    409, body: "<Error><Code>\(code)</Code><Message>m</Message></Error>"))
        }
        let owned = ScriptedTransport([error("BucketAlreadyOwnedByYou")])
        #expect(try await makeClient(owned).createBucket("mine") == .alreadyOwned)

        let taken = ScriptedTransport([error("BucketAlreadyExists"), error("BucketAlreadyExists")])
        do {
            try await makeClient(taken).createBucket("someone-elses")
            Issue.record("BucketAlreadyExists was not thrown")
        } catch let failure as S3Error {
            #expect(failure.code == "BucketAlreadyExists")
            #expect(!failure.isRetryable)
            #expect(failure.message.contains("'someone-elses'"))
            #expect(failure.message.contains("another AWS account"))
        }
        #expect(taken.requests.count == 1, "not retried")
    }

    @Test("Absent configurations read as nil or empty; other errors are thrown")
    func absentConfigurations() async throws {
        func missing(_ code: String) -> ScriptedTransport.Step {
            .respond(ScriptedTransport.response(404, body: "<Error><Code>\(code)</Code></Error>"))
        }
        let transport = ScriptedTransport([
            missing("NoSuchLifecycleConfiguration"), missing("ServerSideEncryptionConfigurationNotFoundError"),
            missing("NoSuchBucketPolicy"), missing("NoSuchPublicAccessBlockConfiguration"), missing("NoSuchBucket"),
        ])
        let client = makeClient(transport)
        #expect(try await client.getBucketLifecycleConfiguration("b").isEmpty)
        #expect(try await client.getBucketEncryption("b") == nil)
        #expect(try await client.getBucketPolicy("b") == nil)
        #expect(try await client.getPublicAccessBlock("b") == nil)
        await #expect(throws: S3Error.self) { try await client.getBucketPolicy("b") }
    }

    @Test("A rule read from S3 is sent back exactly as it was")
    func foreignRulesRoundTrip() throws {
        let document = """
            <LifecycleConfiguration><Rule><ID>theirs</ID><Filter><And><Prefix>logs/</Prefix>\
            <Tag><Key>k</Key><Value>a &amp; b</Value></Tag></And></Filter><Status>Disabled</Status>\
            <NoncurrentVersionTransition><NoncurrentDays>10</NoncurrentDays><StorageClass>GLACIER</StorageClass>\
            </NoncurrentVersionTransition></Rule></LifecycleConfiguration>
            """
        let rule = BucketLifecycleRule(parsing: try XMLNode.parse(document).children("Rule")[0])
        #expect(rule.id == "theirs")
        #expect(rule.prefix == nil)
        #expect(!rule.enabled)
        #expect(try XMLNode.parse(rule.xml.serialized()) == XMLNode.parse(document).children("Rule")[0])
    }
}

@Suite("Bucket configuration against moto_server: every setting written and read back")
struct BucketConfigurationIntegrationTests {
    @Test(
        "CreateBucket in us-east-1 sends no body; in eu-west-1 its LocationConstraint, read back by GetBucketLocation")
    func createInRegions() async throws {
        let server = try await LocalS3.shared.server()
        let transport = RecordingTransport()
        let east = localClient(server, region: "us-east-1", transport: transport)
        let eastBucket = "s3t-east-" + UUID().uuidString.lowercased().prefix(8)
        #expect(try await east.createBucket(eastBucket) == .created)
        #expect(transport.requests.last?.bodyBytes.isEmpty == true)
        #expect(try await east.getBucketLocation(eastBucket) == "us-east-1")
        // us-east-1 answers 200 to creating a bucket its owner already has (as S3 does): no error either way.
        try await east.createBucket(eastBucket)

        let west = localClient(server, region: "eu-west-1", transport: transport)
        let westBucket = "s3t-west-" + UUID().uuidString.lowercased().prefix(8)
        #expect(try await west.createBucket(westBucket) == .created)
        #expect(
            transport.requests.last?.bodyText.contains("<LocationConstraint>eu-west-1</LocationConstraint>") == true)
        #expect(try await west.getBucketLocation(westBucket) == "eu-west-1")
        #expect(try await west.createBucket(westBucket) == .alreadyOwned)
    }

    @Test("Versioning: unversioned, enabled, suspended")
    func versioning() async throws {
        let client = localClient(try await LocalS3.shared.server())
        let bucket = try await freshBucket(client)
        #expect(try await client.getBucketVersioning(bucket) == .unversioned)
        try await client.putBucketVersioning(bucket, enabled: true)
        #expect(try await client.getBucketVersioning(bucket) == .enabled)
        try await client.putBucketVersioning(bucket, enabled: false)
        #expect(try await client.getBucketVersioning(bucket) == .suspended)
    }

    @Test("Lifecycle: rules with transitions, expirations and the abort of unfinished uploads; deleted")
    func lifecycle() async throws {
        let client = localClient(try await LocalS3.shared.server())
        let bucket = try await freshBucket(client)
        #expect(try await client.getBucketLifecycleConfiguration(bucket).isEmpty)
        let rules = [
            BucketLifecycleRule(id: "abort", prefix: "data/", abortIncompleteUploadDays: 7),
            BucketLifecycleRule(
                id: "cold", prefix: "data/",
                transitions: [.init(days: 30, storageClass: "STANDARD_IA"), .init(days: 90, storageClass: "GLACIER")],
                expirationDays: 365, noncurrentVersionExpirationDays: 30),
            BucketLifecycleRule(id: "everything", prefix: "", expirationDays: 1000),
        ]
        try await client.putBucketLifecycleConfiguration(bucket, rules: rules)
        let read = try await client.getBucketLifecycleConfiguration(bucket)
        #expect(read.map(\.id) == ["abort", "cold", "everything"])
        #expect(read[0].prefix == "data/")
        #expect(read[0].abortIncompleteUploadDays == 7)
        #expect(read[1].transitions == rules[1].transitions)
        #expect(read[1].expirationDays == 365)
        #expect(read[1].noncurrentVersionExpirationDays == 30)
        #expect(read[2].prefix == "")
        #expect(read.allSatisfy { $0.enabled })
        // What was read goes back unchanged.
        try await client.putBucketLifecycleConfiguration(bucket, rules: read)
        #expect(try await client.getBucketLifecycleConfiguration(bucket).map(\.id) == ["abort", "cold", "everything"])
        try await client.deleteBucketLifecycle(bucket)
        #expect(try await client.getBucketLifecycleConfiguration(bucket).isEmpty)
    }

    @Test("Default encryption: none, AES256, aws:kms with a key and a bucket key")
    func encryption() async throws {
        let client = localClient(try await LocalS3.shared.server())
        let bucket = try await freshBucket(client)
        #expect(try await client.getBucketEncryption(bucket) == nil)
        try await client.putBucketEncryption(bucket, .aes256)
        #expect(try await client.getBucketEncryption(bucket) == .aes256)
        let key = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
        try await client.putBucketEncryption(bucket, .kms(keyID: key, bucketKey: true))
        #expect(try await client.getBucketEncryption(bucket) == .kms(keyID: key, bucketKey: true))
    }

    @Test("Policy: put, read back, deleted")
    func policy() async throws {
        let client = localClient(try await LocalS3.shared.server())
        let bucket = try await freshBucket(client)
        #expect(try await client.getBucketPolicy(bucket) == nil)
        let policy = """
            {"Version":"2012-10-17","Statement":[{"Sid":"Read","Effect":"Allow","Principal":"*",\
            "Action":"s3:GetObject","Resource":"arn:aws:s3:::\(bucket)/public/*"}]}
            """
        try await client.putBucketPolicy(bucket, policy: policy)
        let read = try #require(try await client.getBucketPolicy(bucket))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(read.utf8)) as? [String: Any])
        let statement = try #require((object["Statement"] as? [[String: Any]])?.first)
        #expect(statement["Sid"] as? String == "Read")
        try await client.deleteBucketPolicy(bucket)
        #expect(try await client.getBucketPolicy(bucket) == nil)
    }

    @Test("Public-access block: none, all on, all off, deleted")
    func publicAccessBlock() async throws {
        let client = localClient(try await LocalS3.shared.server())
        let bucket = try await freshBucket(client)
        try await client.putPublicAccessBlock(bucket, .allBlocked)
        #expect(try await client.getPublicAccessBlock(bucket) == .allBlocked)
        try await client.putPublicAccessBlock(bucket, .noneBlocked)
        #expect(try await client.getPublicAccessBlock(bucket) == .noneBlocked)
        try await client.deletePublicAccessBlock(bucket)
        #expect(try await client.getPublicAccessBlock(bucket) == nil)
    }
}
