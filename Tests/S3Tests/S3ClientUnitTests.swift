import Foundation
import Hashing
import Synchronization
import Testing

@testable import S3

/// A transport that answers from a script and records what it was sent.
final class ScriptedTransport: HTTPTransport {
    enum Step: Sendable {
        case respond(HTTPResponse)
        case fail(S3Error)
    }

    private let steps: Mutex<[Step]>
    private let sent = Mutex<[HTTPRequest]>([])

    init(_ steps: [Step]) { self.steps = Mutex(steps) }

    var requests: [HTTPRequest] { sent.withLock { $0 } }

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        sent.withLock { $0.append(request) }
        let step = steps.withLock { $0.isEmpty ? nil : $0.removeFirst() }
        switch step {
        case .respond(let response): return response
        case .fail(let error): throw error
        // Past the script: a plain success, with the headers a write's answer must carry.
        case nil: return Self.response(200, headers: [("ETag", "\"scripted\""), ("Content-Length", "0")])
        }
    }

    static func response(_ status: Int, body: String = "", headers: [(String, String)] = []) -> HTTPResponse {
        HTTPResponse(
            status: status, headers: headers.map { (name: $0.0.lowercased(), value: $0.1) }, body: Array(body.utf8),
            bodyBytes: Int64(body.utf8.count), connectionsOpened: 0)
    }
}

func makeClient(_ transport: ScriptedTransport, maxAttempts: Int = 3) -> S3Client {
    var configuration = S3Configuration(region: "us-east-1", endpoint: "http://127.0.0.1:9")
    configuration.maxAttempts = maxAttempts
    configuration.maxBackoff = .milliseconds(1)  // keep backoff sleeps negligible in unit tests
    return S3Client(
        configuration: configuration,
        credentials: StaticCredentialsProvider(AWSCredentials(accessKeyID: "AKID", secretAccessKey: "secret")),
        transport: transport)
}

@Suite("XML reader")
struct XMLNodeTests {
    @Test("Reads S3 documents: namespaces, entities, CDATA, comments, self-closing elements")
    func readsDocuments() throws {
        let document = """
            <?xml version="1.0" encoding="UTF-8"?>
            <!-- a comment -->
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Name>bucket</Name><IsTruncated>false</IsTruncated>
              <Contents><Key>a &amp; b &lt;c&gt; &#233;&#x4E2D;</Key><Size>12</Size><ETag>&quot;abc&quot;</ETag></Contents>
              <Contents><Key><![CDATA[x<y>&z]]></Key><Size>0</Size></Contents>
              <Empty/>
              <s3:Prefixed attr='v'>t</s3:Prefixed>
            </ListBucketResult>
            """
        let root = try XMLNode.parse(document)
        #expect(root.name == "ListBucketResult")
        #expect(root.string("Name") == "bucket")
        #expect(root.bool("IsTruncated") == false)
        let contents = root.children("Contents")
        #expect(contents.count == 2)
        #expect(contents[0].string("Key") == "a & b <c> é中")
        #expect(contents[0].string("ETag") == "\"abc\"")
        #expect(contents[1].string("Key") == "x<y>&z")
        #expect(root.child("Empty")?.text == "")
        #expect(root.child("Prefixed")?.attributes["attr"] == "v")
    }

    @Test(
        "Refuses malformed documents, DTDs and entity tricks, saying where",
        arguments: [
            "", "<a>", "<a></b>", "<a><b></a></b>", "text", "<a>&unknown;</a>", "<a>&#0;</a>", "<a x=1/>",
            "<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>", "<a></a><b></b>", "<a>&#xZZ;</a>", "<a", "<a b='c></a>",
        ])
    func refusesMalformed(_ text: String) {
        #expect(throws: XMLParseError.self) { try XMLNode.parse(text) }
    }

    @Test("Refuses nesting beyond the depth limit")
    func depthLimit() {
        let deep = String(repeating: "<a>", count: 100) + String(repeating: "</a>", count: 100)
        #expect(throws: XMLParseError.self) { try XMLNode.parse(deep) }
    }
}

@Suite("Errors, retries and clock skew, against a scripted transport")
struct S3ClientBehaviourTests {
    static let slowDown = """
        <Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>R1</RequestId></Error>
        """

    @Test("An S3 XML error is decoded: status, code, message, request id; 4xx is not retried")
    func decodesErrors() async throws {
        let body =
            "<Error><Code>NoSuchBucket</Code><Message>The bucket does not exist</Message>"
            + "<RequestId>REQ123</RequestId><HostId>HOST</HostId></Error>"
        let transport = ScriptedTransport([.respond(ScriptedTransport.response(404, body: body))])
        let client = makeClient(transport)
        let error = try await #require(throws: S3Error.self) {
            try await client.getObjectBytes(bucket: "bkt", key: "k")
        }
        #expect(error.status == 404)
        #expect(error.code == "NoSuchBucket")
        #expect(error.message == "The bucket does not exist")
        #expect(error.requestID == "REQ123")
        #expect(error.hostID == "HOST")
        #expect(!error.isRetryable)
        #expect(error.operation == "GetObject s3://bkt/k")
        #expect(transport.requests.count == 1)
    }

    @Test("A HEAD 404 (no body) is NotFound; headObjectIfExists gives nil")
    func headNotFound() async throws {
        let transport = ScriptedTransport([
            .respond(ScriptedTransport.response(404)), .respond(ScriptedTransport.response(404)),
        ])
        let client = makeClient(transport)
        let error = try await #require(throws: S3Error.self) { try await client.headObject(bucket: "bkt", key: "k") }
        #expect(error.code == "NotFound")
        #expect(try await client.headObjectIfExists(bucket: "bkt", key: "k") == nil)
    }

    @Test("SlowDown, 500 and a reset are retried with backoff and then succeed; the quota pays and is refunded")
    func retriesTransientFailures() async throws {
        let transport = ScriptedTransport([
            .respond(ScriptedTransport.response(503, body: Self.slowDown)),
            .fail(S3Error(status: 0, code: "ConnectionReset", message: "reset")),
            .respond(ScriptedTransport.response(200, headers: [("ETag", "\"e1\"")])),
        ])
        let client = makeClient(transport)
        let output = try await client.putObject(PutObjectRequest(bucket: "bkt", key: "k", body: .bytes([1, 2, 3])))
        #expect(output.etag == "e1")
        #expect(transport.requests.count == 3)
        #expect(client.currentStatistics.retries == 2)
        #expect(client.retryStrategy.availableTokens == 500)  // 2 × 5 taken, given back on success
    }

    @Test("Attempts stop at maxAttempts; the last error is thrown")
    func stopsAtMaxAttempts() async throws {
        let transport = ScriptedTransport(
            Array(
                repeating: .respond(ScriptedTransport.response(500, body: "<Error><Code>InternalError</Code></Error>")),
                count: 5))
        let client = makeClient(transport, maxAttempts: 3)
        let error = try await #require(throws: S3Error.self) {
            try await client.putObject(PutObjectRequest(bucket: "bkt", key: "k", body: .bytes([1])))
        }
        #expect(error.code == "InternalError")
        #expect(error.isRetryable)
        #expect(transport.requests.count == 3)
        #expect(client.retryStrategy.availableTokens == 490)
    }

    @Test("The retry quota runs out: no retry is made when it cannot pay")
    func quotaRunsOut() async throws {
        let strategy = RetryStrategy(maxAttempts: 3, quotaTokens: 12)
        let reset = S3Error(status: 0, code: "ConnectionReset", message: "")
        let timeout = S3Error(status: 0, code: "Timeout", message: "", isTimeout: true)
        #expect(strategy.acquireRetry(after: reset, attempt: 1) == 5)
        #expect(strategy.acquireRetry(after: timeout, attempt: 1) == nil)  // 7 left < 10
        #expect(strategy.acquireRetry(after: reset, attempt: 1) == 5)
        #expect(strategy.acquireRetry(after: reset, attempt: 1) == nil)  // 2 left
        #expect(strategy.acquireRetry(after: reset, attempt: 3) == nil)  // attempts exhausted anyway
        strategy.recordSuccess(retryCosts: 0)
        #expect(strategy.availableTokens == 3)
        let forbidden = S3Error(status: 403, code: "AccessDenied", message: "")
        #expect(strategy.acquireRetry(after: forbidden, attempt: 1) == nil)
    }

    @Test("Backoff is full jitter, growing, capped at maxBackoff")
    func backoffIsCapped() {
        let strategy = RetryStrategy(maxAttempts: 10, maxBackoff: .seconds(20))
        var generator = SystemRandomNumberGenerator()
        for attempt in 1...12 {
            let ceiling = Duration.seconds(min(1 << (attempt - 1), 20))
            for _ in 0..<50 {
                let delay = strategy.backoff(afterAttempt: attempt, random: &generator)
                #expect(delay >= .zero && delay <= ceiling)
            }
        }
    }

    @Test("RequestTimeTooSkewed: the clock offset is taken from the Date header and the request is signed again")
    func correctsClockSkew() async throws {
        let serverTime = Date().addingTimeInterval(3600)
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        let skewed = "<Error><Code>RequestTimeTooSkewed</Code><Message>too skewed</Message></Error>"
        let transport = ScriptedTransport([
            .respond(
                ScriptedTransport.response(403, body: skewed, headers: [("Date", formatter.string(from: serverTime))])),
            .respond(ScriptedTransport.response(200)),
        ])
        let client = makeClient(transport)
        try await client.deleteObject(bucket: "bkt", key: "k")
        #expect(transport.requests.count == 2)
        #expect(client.currentStatistics.clockSkewCorrections == 1)
        let offset = client.currentClockOffset
        // An hour, less the time between building `serverTime` and reading the reply (up to a minute on a loaded
        // machine) and the Date header's truncation to whole seconds.
        #expect(offset > .seconds(3540) && offset < .seconds(3610), "\(offset)")
        let firstDate = transport.requests[0].headers.first { $0.name.lowercased() == "x-amz-date" }?.value
        let secondDate = transport.requests[1].headers.first { $0.name.lowercased() == "x-amz-date" }?.value
        #expect(firstDate != nil && secondDate != nil && firstDate != secondDate)
        #expect(secondDate == SigV4Signer.amzDate(serverTime) || secondDate! > firstDate!)
    }

    @Test("A 200 whose body is an <Error> is an error (CompleteMultipartUpload)")
    func errorInsideA200() async throws {
        let body = "<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code><Message>late failure</Message></Error>"
        let transport = ScriptedTransport([
            .respond(ScriptedTransport.response(200, body: body)),
            .respond(
                ScriptedTransport.response(
                    200, body: "<CompleteMultipartUploadResult><ETag>\"final\"</ETag></CompleteMultipartUploadResult>")),
        ])
        let client = makeClient(transport)
        let output = try await client.completeMultipartUpload(
            bucket: "bkt", key: "k", uploadID: "u", parts: [UploadedPart(partNumber: 1, etag: "p1", size: 5)])
        #expect(output.etag == "final")
        #expect(transport.requests.count == 2)  // the error in the 200 was retried (InternalError)
        let sent = String(
            decoding: try #require(
                transport.requests.first.flatMap {
                    if case .bytes(let bytes) = $0.body { bytes } else { nil }
                }), as: UTF8.self)
        #expect(sent.contains("<Part><PartNumber>1</PartNumber><ETag>\"p1\"</ETag></Part>"))
    }

    @Test("Requests are signed: Authorization, X-Amz-Date, X-Amz-Content-Sha256; no secret anywhere")
    func requestsAreSigned() async throws {
        let transport = ScriptedTransport([])
        let client = makeClient(transport)
        try await client.putObject(PutObjectRequest(bucket: "bkt", key: "a b/ü", body: .bytes(Array("hi".utf8))))
        let request = try #require(transport.requests.first)
        #expect(request.url == "http://127.0.0.1:9/bkt/a%20b/%C3%BC")
        let names = Set(request.headers.map { $0.name.lowercased() })
        #expect(names.isSuperset(of: ["authorization", "x-amz-date", "x-amz-content-sha256", "host"]))
        #expect(!request.headers.contains { $0.value.contains("secret") })
        let authorization = try #require(request.headers.first { $0.name.lowercased() == "authorization" }?.value)
        #expect(authorization.hasPrefix("AWS4-HMAC-SHA256 Credential=AKID/"))
    }

    @Test("UNSIGNED-PAYLOAD only over TLS and only with a checksum; otherwise the body's SHA-256 is signed")
    func unsignedPayloadRules() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("unsigned-\(UUID().uuidString)").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data("abc".utf8)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        func contentSHA(endpoint: String, checksums: BodyChecksums) async throws -> String? {
            let transport = ScriptedTransport([])
            let client = S3Client(
                configuration: S3Configuration(region: "us-east-1", endpoint: endpoint),
                credentials: StaticCredentialsProvider(AWSCredentials(accessKeyID: "AKID", secretAccessKey: "s")),
                transport: transport)
            var put = PutObjectRequest(bucket: "bkt", key: "k", body: .file(path: path, offset: 0, length: 3))
            put.checksums = checksums
            try await client.putObject(put)
            return transport.requests.first?.headers.first { $0.name.lowercased() == "x-amz-content-sha256" }?.value
        }
        let abc = SHA256Hasher.hexDigest(Array("abc".utf8))
        let crc = BodyChecksums(crc32c: CRC32C.checksum(Array("abc".utf8)))
        #expect(try await contentSHA(endpoint: "https://s3.example.com", checksums: crc) == "UNSIGNED-PAYLOAD")
        #expect(try await contentSHA(endpoint: "https://s3.example.com", checksums: BodyChecksums()) == abc)
        #expect(try await contentSHA(endpoint: "http://127.0.0.1:9", checksums: crc) == abc)
    }

    @Test("Headers that could split a request are refused before anything is sent")
    func refusesHeaderInjection() async throws {
        let transport = CurlTransport()
        let request = HTTPRequest(method: "GET", url: "http://127.0.0.1:9/", headers: [("X-Test", "a\r\nInjected: 1")])
        let error = try await #require(throws: S3Error.self) { try await transport.execute(request) }
        #expect(error.code == "InvalidRequest")
    }

    @Test("User metadata: ASCII as is, other text as RFC 2047, decoded back; the 2 KB limit is checked first")
    func userMetadata() throws {
        #expect(UserMetadata.encode("plain value") == "plain value")
        let encoded = UserMetadata.encode("Grüße, 世界")
        #expect(encoded.hasPrefix("=?UTF-8?B?") && encoded.hasSuffix("?="))
        #expect(UserMetadata.decode(encoded) == "Grüße, 世界")
        #expect(UserMetadata.decode("=?UTF-8?Q?caf=C3=A9_au_lait?=") == "café au lait")
        #expect(UserMetadata.decode("not =?encoded") == "not =?encoded")
        let big = ["k": String(repeating: "x", count: 2048)]
        let error = try #require(throws: S3Error.self) { try UserMetadata.headers(big) }
        #expect(error.code == "MetadataTooLarge")
        #expect(throws: S3Error.self) { try UserMetadata.headers(["bad key": "v"]) }
        #expect(try UserMetadata.headers(["Fetched-By": "w"]).first?.name == "x-amz-meta-fetched-by")
    }
}

@Suite("Addressing and configuration")
struct AddressingTests {
    @Test("Virtual-hosted on AWS; path-style for dotted buckets and custom endpoints; keys encoded once")
    func addressing() throws {
        let aws = S3Configuration(region: "eu-west-1")
        let virtual = try aws.address(bucket: "my-bucket", key: "a b/c+d")
        #expect(virtual.url == "https://my-bucket.s3.eu-west-1.amazonaws.com/a%20b/c%2Bd")
        #expect(virtual.host == "my-bucket.s3.eu-west-1.amazonaws.com")
        let dotted = try aws.address(bucket: "my.bucket", key: "k")
        #expect(dotted.url == "https://s3.eu-west-1.amazonaws.com/my.bucket/k")
        let custom = S3Configuration(region: "us-east-1", endpoint: "http://127.0.0.1:9000")
        #expect(try custom.address(bucket: "b", key: "x//y").url == "http://127.0.0.1:9000/b/x//y")
        #expect(try custom.address(bucket: "b", key: nil).path == "/b")
    }

    @Test(
        "Region and endpoint resolve as the SDKs do: option, then AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS_REGION, AWS_DEFAULT_REGION"
    )
    func resolution() throws {
        let environment = [
            "AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "us-west-2",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:2",
        ]
        var configuration = try S3Configuration.resolve(environment: environment)
        #expect(configuration.region == "eu-central-1")
        #expect(configuration.endpoint == "http://127.0.0.1:2")
        configuration = try S3Configuration.resolve(environment: [
            "AWS_DEFAULT_REGION": "us-west-2", "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
        ])
        #expect(configuration.region == "us-west-2")
        #expect(configuration.endpoint == "http://127.0.0.1:1")
        configuration = try S3Configuration.resolve(
            region: "ap-south-1", endpoint: "http://localhost:3", environment: environment)
        #expect(configuration.region == "ap-south-1")
        #expect(configuration.endpoint == "http://localhost:3")
        let missing = try #require(throws: S3Error.self) { try S3Configuration.resolve(environment: [:]) }
        #expect(missing.message.contains("AWS_REGION"))
    }

    @Test("Plain HTTP to a host that is not loopback is refused unless allowed")
    func plainHTTP() throws {
        let error = try #require(throws: S3Error.self) {
            try S3Configuration.resolve(region: "us-east-1", endpoint: "http://s3.example.com", environment: [:])
        }
        #expect(error.message.contains("plain HTTP"))
        var allowed = S3Configuration(region: "us-east-1", endpoint: "http://s3.example.com")
        allowed.allowsInsecureHTTP = true
        #expect(try allowed.address(bucket: "b", key: "k").url == "http://s3.example.com/b/k")
        #expect(throws: S3Error.self) {
            try S3Configuration.resolve(region: "us-east-1", endpoint: "ftp://127.0.0.1", environment: [:])
        }
    }

    @Test("Environment credentials: both variables needed; the secret never shows in descriptions")
    func environmentCredentials() async throws {
        let provider = EnvironmentCredentialsProvider(environment: [
            "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value", "AWS_SESSION_TOKEN": "tok3n",
        ])
        let credentials = try await provider.credentials()
        #expect(credentials.accessKeyID == "AKIDENV")
        #expect(credentials.sessionToken == "tok3n")
        #expect(!"\(credentials)".contains("s3cr3t") && !String(reflecting: credentials).contains("tok3n"))
        let missing = EnvironmentCredentialsProvider(environment: ["AWS_ACCESS_KEY_ID": "x"])
        await #expect(throws: S3Error.self) { try await missing.credentials() }
    }
}
