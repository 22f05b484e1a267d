import Foundation
import Hashing
import Synchronization
@testable import LocalS3Support
import Testing

@testable import S3

/// A client for the local moto_server (or a fault proxy in front of it).
func localClient(
    _ server: LocalS3.Server, endpoint: String? = nil, secret: String? = nil, maxAttempts: Int = 3,
    transport: TransportOptions = TransportOptions()
) -> S3Client {
    var configuration = S3Configuration(region: server.region, endpoint: endpoint ?? server.endpoint)
    configuration.maxAttempts = maxAttempts
    configuration.maxBackoff = .milliseconds(200)
    configuration.transport = transport
    return S3Client(
        configuration: configuration,
        credentials: StaticCredentialsProvider(
            AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: secret ?? server.secretAccessKey)))
}

/// A new bucket with a random name.
func freshBucket(_ client: S3Client, versioned: Bool = false) async throws -> String {
    let name = "s3t-" + UUID().uuidString.lowercased().prefix(18).replacingOccurrences(of: "-", with: "")
    try await client.createBucket(name)
    if versioned { try await client.putBucketVersioning(name, enabled: true) }
    return name
}

func seededBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return UInt8(truncatingIfNeeded: state >> 33)
    }
}

func temporaryFile(_ bytes: [UInt8]) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("s3t-\(UUID().uuidString)").path
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
        throw S3Error.invalidRequest("cannot create \(path)")
    }
    return path
}

@Suite("S3 client against moto_server on 127.0.0.1 with SigV4 authentication on")
struct S3IntegrationTests {
    @Test("Every object operation: put (bytes, file), head, get (memory, file), list, versions, delete")
    func objectOperations() async throws {
        let server = try await LocalS3.shared.server()
        let client = localClient(server)
        let bucket = try await freshBucket(client, versioned: true)
        #expect(try await client.bucketExists(bucket))

        let small = Array("hello, S3".utf8)
        var put = PutObjectRequest(bucket: bucket, key: "dir/small.txt", body: .bytes(small))
        put.contentType = "text/plain"
        put.checksums = BodyChecksums(
            crc32c: CRC32C.checksum(small), sha256Hex: SHA256Hasher.hexDigest(small),
            md5Base64: Data(MD5Hasher.hash(small)).base64EncodedString())
        put.tags = ["team": "data", "kind": "small"]
        let first = try await client.putObject(put)
        #expect(!first.etag.isEmpty)
        #expect(first.versionID != nil)

        let large = seededBytes(3 << 20, seed: 1)
        let path = try temporaryFile(large)
        defer { try? FileManager.default.removeItem(atPath: path) }
        var filePut = PutObjectRequest(
            bucket: bucket, key: "dir/large.bin", body: .file(path: path, offset: 0, length: Int64(large.count)))
        filePut.checksums = BodyChecksums(crc32c: CRC32C.checksum(large))
        try await client.putObject(filePut)
        // A range of a file: only those bytes are sent.
        var rangePut = PutObjectRequest(
            bucket: bucket, key: "dir/range.bin", body: .file(path: path, offset: 1000, length: 5000))
        rangePut.contentType = "application/octet-stream"
        try await client.putObject(rangePut)

        #expect(
            try await client.getObjectTagging(bucket: bucket, key: "dir/small.txt") == [
                "team": "data", "kind": "small",
            ])
        var encrypted = PutObjectRequest(bucket: bucket, key: "dir/encrypted", body: .bytes(small))
        encrypted.serverSideEncryption = .aes256
        encrypted.storageClass = "STANDARD_IA"
        try await client.putObject(encrypted)
        let encryptedHead = try await client.headObject(bucket: bucket, key: "dir/encrypted")
        #expect(encryptedHead.serverSideEncryption == "AES256")
        #expect(encryptedHead.storageClass == "STANDARD_IA")

        let head = try await client.headObject(bucket: bucket, key: "dir/small.txt")
        #expect(head.contentLength == Int64(small.count))
        #expect(head.contentType == "text/plain")
        #expect(head.etag == first.etag)

        let (bytes, metadata) = try await client.getObjectBytes(bucket: bucket, key: "dir/small.txt")
        #expect(bytes == small)
        #expect(metadata.versionID == first.versionID)
        let downloaded = path + ".download"
        defer { try? FileManager.default.removeItem(atPath: downloaded) }
        try await client.getObject(bucket: bucket, key: "dir/large.bin", to: downloaded)
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: downloaded))) == large)
        #expect(
            try await client.getObjectBytes(bucket: bucket, key: "dir/range.bin").bytes == Array(large[1000..<6000]))
        try await client.getObject(bucket: bucket, key: "dir/large.bin", range: 10...19, to: downloaded)
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: downloaded))) == Array(large[10...19]))

        // Listing, paginated two keys at a time.
        for index in 0..<5 {
            try await client.putObject(
                PutObjectRequest(bucket: bucket, key: "list/\(index)", body: .bytes([UInt8(index)])))
        }
        let firstPage = try await client.listObjectsV2(bucket: bucket, prefix: "list/", maxKeys: 2)
        #expect(firstPage.objects.count == 2)
        #expect(firstPage.nextContinuationToken != nil)
        let listed = try await client.listAllObjects(bucket: bucket, prefix: "list/", pageSize: 2)
        #expect(listed.map(\.key) == (0..<5).map { "list/\($0)" })
        #expect(listed.allSatisfy { $0.size == 1 })
        let delimited = try await client.listObjectsV2(bucket: bucket, delimiter: "/")
        #expect(Set(delimited.commonPrefixes) == ["dir/", "list/"])
        #expect(delimited.objects.isEmpty)

        // Versions: a second write of a key without a condition makes a second version.
        try await client.putObject(PutObjectRequest(bucket: bucket, key: "dir/small.txt", body: .bytes([1])))
        let versions = try await client.listAllObjectVersions(bucket: bucket, prefix: "dir/small.txt", pageSize: 1)
        #expect(versions.count == 2)
        #expect(versions.filter(\.isLatest).count == 1)
        let old = try await client.getObjectBytes(bucket: bucket, key: "dir/small.txt", versionID: first.versionID)
        #expect(old.bytes == small)

        try await client.deleteObject(bucket: bucket, key: "dir/large.bin")
        #expect(try await client.headObjectIfExists(bucket: bucket, key: "dir/large.bin") == nil)
        let missing = try await #require(throws: S3Error.self) {
            try await client.getObjectBytes(bucket: bucket, key: "dir/large.bin")
        }
        #expect(missing.status == 404)
        #expect(!missing.isRetryable)
    }

    static let awkwardKeys: [String] = [
        "with space.txt", "ünïcödé/文件.bin", "+ = & % ~ ! * ' ( ).txt", "double//slash///key", "a/./b/../c",
        "percent%20literal", "question?mark#hash", "tab\tand;semicolon", "trailing/",
        String(repeating: "k", count: 1001) + "/" + String(repeating: "é", count: 11),  // 1,024 bytes
    ]

    @Test("Keys that need encoding round-trip byte-exact, and list back as themselves")
    func awkwardKeysRoundTrip() async throws {
        let server = try await LocalS3.shared.server()
        let client = localClient(server)
        let bucket = try await freshBucket(client)
        #expect(Self.awkwardKeys.last!.utf8.count == 1024)
        for (index, key) in Self.awkwardKeys.enumerated() {
            let body = seededBytes(100 + index, seed: UInt64(index))
            try await client.putObject(PutObjectRequest(bucket: bucket, key: key, body: .bytes(body)))
            #expect(try await client.getObjectBytes(bucket: bucket, key: key).bytes == body, "key \(key)")
            #expect(try await client.headObject(bucket: bucket, key: key).contentLength == Int64(body.count))
        }
        let listed = Set(try await client.listAllObjects(bucket: bucket).map(\.key))
        #expect(listed == Set(Self.awkwardKeys))
        let tooLong = try await #require(throws: S3Error.self) {
            try await client.putObject(
                PutObjectRequest(bucket: bucket, key: String(repeating: "x", count: 1025), body: .bytes([1])))
        }
        #expect(tooLong.code == "InvalidRequest")
    }

    @Test("Metadata with non-ASCII values round-trips (RFC 2047 encoded words)")
    func nonASCIIMetadata() async throws {
        let server = try await LocalS3.shared.server()
        let client = localClient(server)
        let bucket = try await freshBucket(client)
        var put = PutObjectRequest(bucket: bucket, key: "meta", body: .bytes([1]))
        put.metadata = [
            "url": "https://example.com/naïve?q=日本", "plain": "ascii only", "sha256": String(repeating: "a", count: 64),
        ]
        try await client.putObject(put)
        let head = try await client.headObject(bucket: bucket, key: "meta")
        #expect(head.metadata["url"] == "https://example.com/naïve?q=日本")
        #expect(head.metadata["plain"] == "ascii only")
        #expect(head.metadata["sha256"] == String(repeating: "a", count: 64))
    }

    @Test("A second conditional put of a key gets 412 PreconditionFailed, not retried, and the first object stays")
    func conditionalPut() async throws {
        let server = try await LocalS3.shared.server()
        let client = localClient(server)
        let bucket = try await freshBucket(client)
        var put = PutObjectRequest(bucket: bucket, key: "once", body: .bytes([1, 2, 3]))
        put.ifNoneMatch = true
        try await client.putObject(put)
        put.body = .bytes([9, 9, 9])
        let attemptsBefore = client.currentStatistics.attempts
        let error = try await #require(throws: S3Error.self) { try await client.putObject(put) }
        #expect(error.status == 412)
        #expect(error.code == "PreconditionFailed")
        #expect(!error.isRetryable)
        #expect(client.currentStatistics.attempts == attemptsBefore + 1)
        #expect(try await client.getObjectBytes(bucket: bucket, key: "once").bytes == [1, 2, 3])
    }

    @Test("A three-part multipart upload resumed from ListParts after dropping the client")
    func multipartResumed() async throws {
        let server = try await LocalS3.shared.server()
        let partSize = 5 << 20
        let bytes = seededBytes(2 * partSize + 12345, seed: 42)
        let path = try temporaryFile(bytes)
        defer { try? FileManager.default.removeItem(atPath: path) }
        func range(_ number: Int) -> (Int64, Int64) {
            let offset = Int64((number - 1) * partSize)
            return (offset, min(Int64(partSize), Int64(bytes.count) - offset))
        }
        func crc(_ number: Int) -> UInt32 {
            let (offset, length) = range(number)
            return CRC32C.checksum(bytes[Int(offset)..<Int(offset + length)])
        }
        let bucket: String
        let uploadID: String
        do {
            let first = localClient(server)
            bucket = try await freshBucket(first)
            var create = CreateMultipartUploadRequest(bucket: bucket, key: "big/object.bin")
            create.contentType = "application/octet-stream"
            create.metadata = ["sha256": SHA256Hasher.hexDigest(bytes)]
            uploadID = try await first.createMultipartUpload(create)
            for number in 1...2 {
                let (offset, length) = range(number)
                try await first.uploadPart(
                    bucket: bucket, key: "big/object.bin", uploadID: uploadID, partNumber: number,
                    body: .file(path: path, offset: offset, length: length),
                    checksums: BodyChecksums(crc32c: crc(number)))
            }
            let uploads = try await first.listAllMultipartUploads(bucket: bucket)
            #expect(uploads.map(\.uploadID) == [uploadID])
        }
        // A new client: what S3 holds is all there is to go on.
        let second = localClient(server)
        let held = try await second.listAllParts(bucket: bucket, key: "big/object.bin", uploadID: uploadID, pageSize: 1)
        #expect(held.map(\.partNumber) == [1, 2])
        #expect(held.allSatisfy { $0.size == Int64(partSize) })
        let (offset, length) = range(3)
        let third = try await second.uploadPart(
            bucket: bucket, key: "big/object.bin", uploadID: uploadID, partNumber: 3,
            body: .file(path: path, offset: offset, length: length), checksums: BodyChecksums(crc32c: crc(3)))
        let output = try await second.completeMultipartUpload(
            bucket: bucket, key: "big/object.bin", uploadID: uploadID, parts: held + [third], ifNoneMatch: true)
        #expect(!output.etag.isEmpty)
        let downloaded = path + ".download"
        defer { try? FileManager.default.removeItem(atPath: downloaded) }
        let metadata = try await second.getObject(bucket: bucket, key: "big/object.bin", to: downloaded)
        #expect(metadata.contentLength == Int64(bytes.count))
        #expect(metadata.metadata["sha256"] == SHA256Hasher.hexDigest(bytes))
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: downloaded))) == bytes)
        #expect(try await second.listAllMultipartUploads(bucket: bucket).isEmpty)

        // Abort: a second upload of another key, aborted, leaves nothing.
        let abandoned = try await second.createMultipartUpload(
            CreateMultipartUploadRequest(bucket: bucket, key: "gone"))
        try await second.abortMultipartUpload(bucket: bucket, key: "gone", uploadID: abandoned)
        #expect(try await second.listAllMultipartUploads(bucket: bucket).isEmpty)
        let noUpload = try await #require(throws: S3Error.self) {
            try await second.listParts(bucket: bucket, key: "gone", uploadID: abandoned)
        }
        #expect(noUpload.code == "NoSuchUpload")
    }

    @Test("A wrong secret gives SignatureDoesNotMatch: an S3Error that is not retried")
    func wrongSecret() async throws {
        let server = try await LocalS3.shared.server()
        let client = localClient(server, secret: "not-the-secret-at-all")
        let error = try await #require(throws: S3Error.self) {
            try await client.createBucket("s3t-wrong-secret")
        }
        #expect(error.status == 403)
        #expect(error.code == "SignatureDoesNotMatch")
        #expect(!error.isRetryable)
        #expect(client.currentStatistics.attempts == 1)
        #expect(!error.description.contains("not-the-secret-at-all"))
    }

    @Test("Connections are reused: 20 requests in a row open no new connection")
    func connectionReuse() async throws {
        // moto's server closes every connection (HTTP/1.0), so go through the fault proxy, which keeps the client's
        // connection alive (with no rules set it forwards everything).
        let server = try await LocalS3.shared.server()
        let proxy = try await LocalS3.shared.newFaultProxy()
        let transport = CountingTransport(base: CurlTransport())
        let client = S3Client(
            configuration: S3Configuration(region: server.region, endpoint: proxy.endpoint),
            credentials: StaticCredentialsProvider(
                AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: server.secretAccessKey)),
            transport: transport)
        let bucket = try await freshBucket(client)
        try await client.putObject(PutObjectRequest(bucket: bucket, key: "k", body: .bytes([1])))
        #expect(transport.connectionsOpened >= 1)
        let before = transport.connectionsOpened
        for _ in 0..<20 { _ = try await client.headObject(bucket: bucket, key: "k") }
        #expect(transport.connectionsOpened == before, "requests in sequence should reuse the idle connection")
    }
}

/// Passes requests through and counts the connections they opened.
final class CountingTransport: HTTPTransport {
    let base: CurlTransport
    private let opened = Mutex(0)

    init(base: CurlTransport) { self.base = base }

    var connectionsOpened: Int { opened.withLock { $0 } }

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        let response = try await base.execute(request)
        opened.withLock { $0 += response.connectionsOpened }
        return response
    }
}

@Suite("S3 client through the fault proxy: injected failures are retried", .serialized)
struct S3FaultTests {
    @Test(
        "Each fault on the first request is retried and the operation succeeds on the second attempt",
        arguments: ["reset", "error500", "slowdown", "stall"])
    func faultIsRetried(_ fault: String) async throws {
        let server = try await LocalS3.shared.server()
        let proxy = try await LocalS3.shared.faultProxy()
        var options = TransportOptions()
        options.lowSpeedWindow = .seconds(2)  // a stall is detected within 2 s
        options.lowSpeedLimitBytesPerSecond = 1
        let direct = localClient(server)
        let bucket = try await freshBucket(direct)
        let client = localClient(server, endpoint: proxy.endpoint, transport: options)
        let body = seededBytes(256 << 10, seed: 7)
        try await proxy.configure([FaultProxy.Rule(fault: fault, nth: [1], seconds: 30)], seed: 1)
        // The rules are cleared before this case ends, on failure too: a reset left to a task of its own (a deferred
        // `Task { }`) could land after the next case's `configure` and wipe that case's fault.
        do {
            try await client.putObject(PutObjectRequest(bucket: bucket, key: "faulted-\(fault)", body: .bytes(body)))
        } catch {
            try? await proxy.configure([], seed: 1)
            throw error
        }
        #expect(client.currentStatistics.attempts == 2, "attempts with fault \(fault)")
        #expect(client.currentStatistics.retries == 1)
        try await proxy.configure([], seed: 1)
        #expect(try await direct.getObjectBytes(bucket: bucket, key: "faulted-\(fault)").bytes == body)
    }

    @Test("A lost response after the server applied the request: the retry with If-None-Match gets 412")
    func lostResponse() async throws {
        let server = try await LocalS3.shared.server()
        let proxy = try await LocalS3.shared.faultProxy()
        let direct = localClient(server)
        let bucket = try await freshBucket(direct)
        let client = localClient(server, endpoint: proxy.endpoint)
        try await proxy.configure([FaultProxy.Rule(fault: "drop_response", nth: [1])], seed: 1)
        var put = PutObjectRequest(bucket: bucket, key: "applied-once", body: .bytes([4, 5, 6]))
        put.ifNoneMatch = true
        let error = try await #require(throws: S3Error.self) { try await client.putObject(put) }
        try await proxy.configure([], seed: 1)
        // The first attempt was applied and its answer lost; the retry finds the key: that is the drainer's cue to
        // HEAD and compare.
        #expect(error.code == "PreconditionFailed")
        #expect(client.currentStatistics.attempts == 2)
        #expect(try await direct.getObjectBytes(bucket: bucket, key: "applied-once").bytes == [4, 5, 6])
    }
}
