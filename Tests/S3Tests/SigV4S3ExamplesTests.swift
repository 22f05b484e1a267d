import Foundation
import Hashing
import S3
import Testing

/// The S3 examples of the Amazon S3 API reference (`s3-examples.json`), signed with S3's rules: the path as sent,
/// `x-amz-content-sha256` on every request, and aws-chunked streaming signatures.
@Suite("SigV4 S3 examples")
struct SigV4S3ExamplesTests {
    struct Examples: Decodable {
        struct Scope: Decodable {
            var accessKeyId: String
            var secretAccessKey: String
            var region: String
            var service: String
            var timestamp: String
        }

        struct Example: Decodable, Sendable, CustomTestStringConvertible {
            var name: String
            var method: String
            var path: String
            var query: String
            var headers: [String: String]
            var body: String
            var signedHeaders: String
            var canonicalRequestSha256: String
            var signature: String

            var testDescription: String { name }
        }

        struct Streaming: Decodable {
            var method: String
            var path: String
            var query: String
            var headers: [String: String]
            var seedSignature: String
            var chunkSignatures: [String]
            var encodedContentLength: Int
        }

        var credentials_and_scope: Scope
        var cases: [Example]
        var streaming: Streaming
    }

    static func examples() throws -> Examples {
        let file = try SigV4TestData.directory().appendingPathComponent("s3-examples.json")
        return try JSONDecoder().decode(Examples.self, from: Data(contentsOf: file))
    }

    static func credentials(_ scope: Examples.Scope) -> AWSCredentials {
        AWSCredentials(accessKeyID: scope.accessKeyId, secretAccessKey: scope.secretAccessKey)
    }

    /// Parses `yyyyMMdd'T'HHmmss'Z'` with Foundation's calendar, independently of the signer's own date arithmetic.
    static func date(_ timestamp: String) throws -> Date {
        let digits = timestamp.filter(\.isNumber).map { Int(String($0))! }
        func number(_ range: Range<Int>) -> Int { range.reduce(0) { $0 * 10 + digits[$1] } }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let components = DateComponents(
            year: number(0..<4), month: number(4..<6), day: number(6..<8), hour: number(8..<10),
            minute: number(10..<12), second: number(12..<14))
        return try #require(calendar.date(from: components))
    }

    static func payload(fromHeaders headers: [String: String]) throws -> SigV4Signer.Payload {
        let value = try #require(headers.first { $0.key.lowercased() == "x-amz-content-sha256" }?.value)
        switch value {
        case SigV4Signer.Payload.unsigned.headerValue: return .unsigned
        case SigV4Signer.Payload.streamingSigned.headerValue: return .streamingSigned
        default: return .sha256Hex(value)
        }
    }

    @Test("header-based examples: canonical request hash and signature", arguments: try examples().cases)
    func example(_ example: Examples.Example) throws {
        let examples = try Self.examples()
        let scope = examples.credentials_and_scope
        let signer = SigV4Signer(service: scope.service, region: scope.region)
        #expect(!signer.normalizesPath)
        let date = try Self.date(scope.timestamp)
        #expect(SigV4Signer.amzDate(date) == scope.timestamp)

        let payload = try Self.payload(fromHeaders: example.headers)
        if case .sha256Hex(let hash) = payload {
            #expect(SHA256Hasher.hexDigest(example.body.utf8) == hash, "the example's body and payload hash disagree")
        }
        let request = SigV4Signer.Request(
            method: example.method, path: example.path,
            query: try SigV4SuiteRequest.decodedQuery(Substring(example.query)),
            headers: example.headers.map { (name: $0.key, value: $0.value) })

        let result = signer.signingResult(request, payload: payload, credentials: Self.credentials(scope), date: date)
        #expect(result.signedHeaders == example.signedHeaders)
        #expect(SHA256Hasher.hexDigest(result.canonicalRequest.utf8) == example.canonicalRequestSha256)
        #expect(result.signature == example.signature)
        #expect(
            result.authorization
                == "AWS4-HMAC-SHA256 Credential=\(scope.accessKeyId)/20130524/us-east-1/s3/aws4_request, "
                + "SignedHeaders=\(example.signedHeaders), Signature=\(example.signature)")
        #expect(result.headers.first { $0.name == "X-Amz-Content-Sha256" }?.value == payload.headerValue)
    }

    @Test("streaming upload: seed signature, chunk signatures and encoded length")
    func streaming() throws {
        let examples = try Self.examples()
        let scope = examples.credentials_and_scope
        let streaming = examples.streaming
        let signer = SigV4Signer(service: scope.service, region: scope.region)
        let credentials = Self.credentials(scope)
        let date = try Self.date(scope.timestamp)

        let payload = try Self.payload(fromHeaders: streaming.headers)
        #expect(payload == .streamingSigned)
        let request = SigV4Signer.Request(
            method: streaming.method, path: streaming.path,
            query: try SigV4SuiteRequest.decodedQuery(Substring(streaming.query)),
            headers: streaming.headers.map { (name: $0.key, value: $0.value) })
        let seed = signer.signingResult(request, payload: payload, credentials: credentials, date: date).signature
        #expect(seed == streaming.seedSignature)

        let decodedLength = 66_560
        let chunkSize = 65_536
        let body = [UInt8](repeating: UInt8(ascii: "a"), count: decodedLength)
        var chunkSigner = AWSChunkedSigner(signer: signer, credentials: credentials, date: date, seedSignature: seed)
        #expect(chunkSigner.previousSignature == seed)
        var encoded: [UInt8] = []
        var signatures: [String] = []
        for chunk in [body[0..<chunkSize], body[chunkSize...], body[body.count...]] {
            let signature = chunk.withUnsafeBytes { chunkSigner.signChunk($0) }
            signatures.append(signature)
            encoded += AWSChunkedSigner.chunkHeader(size: chunk.count, signature: signature).utf8
            encoded += chunk
            encoded += AWSChunkedSigner.chunkTerminator.utf8
        }
        #expect(signatures == streaming.chunkSignatures)
        #expect(chunkSigner.previousSignature == streaming.chunkSignatures.last)

        #expect(AWSChunkedSigner.encodedLength(decodedLength: decodedLength, chunkSize: chunkSize) == 66_824)
        #expect(streaming.encodedContentLength == 66_824)
        #expect(encoded.count == streaming.encodedContentLength)
        #expect(streaming.headers["Content-Length"] == String(streaming.encodedContentLength))
        let firstLine = String(decoding: encoded.prefix { $0 != UInt8(ascii: "\r") }, as: UTF8.self)
        #expect(firstLine == "10000;chunk-signature=\(streaming.chunkSignatures[0])")
    }

    @Test("signing from a digest or a sequence gives the same chunk signatures")
    func chunkSignerOverloads() throws {
        let signer = SigV4Signer(service: "s3", region: "us-east-1")
        let credentials = AWSCredentials(accessKeyID: "AKID", secretAccessKey: "secret")
        let date = Date(timeIntervalSince1970: 1_700_000_000)
        let data = Array("some chunk".utf8)
        var byBuffer = AWSChunkedSigner(signer: signer, credentials: credentials, date: date, seedSignature: "seed")
        var bySequence = byBuffer
        var byDigest = byBuffer
        let expected = data.withUnsafeBytes { byBuffer.signChunk($0) }
        #expect(bySequence.signChunk(data) == expected)
        #expect(byDigest.signChunk(sha256Hex: SHA256Hasher.hexDigest(data)) == expected)
        #expect(!String(describing: byBuffer).contains(signer.signingKey(secret: "secret", date: date).hexString))
    }

    @Test(
        "encoded length of aws-chunked bodies",
        arguments: [
            (0, 65_536, 86),  // only the final empty chunk
            (1, 65_536, 87 + 86),
            (65_536, 65_536, 65_626 + 86),
            (66_560, 65_536, 66_824),
            (131_072, 65_536, 2 * 65_626 + 86),
        ])
    func encodedLength(decoded: Int, chunkSize: Int, expected: Int) {
        #expect(AWSChunkedSigner.encodedLength(decodedLength: decoded, chunkSize: chunkSize) == expected)
    }

    @Test("S3 signs the path as sent; generic services normalise and re-encode it")
    func pathRules() {
        let s3 = SigV4Signer(service: "s3", region: "us-east-1")
        let generic = SigV4Signer(service: "s3", region: "us-east-1", normalizesPath: true)
        let path = URIEncoding.encodePath("/bucket/a//b/./c/../d e+f")
        #expect(path == "/bucket/a//b/./c/../d%20e%2Bf")
        #expect(s3.canonicalURI(path) == path)
        #expect(s3.canonicalURI("") == "/")
        #expect(generic.canonicalURI(path) == "/bucket/a/b/d%2520e%252Bf")
        #expect(generic.canonicalURI("/a/b/.") == "/a/b/")
        #expect(generic.canonicalURI("/a/b/..") == "/a/")
        #expect(generic.canonicalURI("/../..") == "/")
        #expect(SigV4Signer(service: "sts", region: "us-east-1").normalizesPath)
    }

    @Test("sign adds S3's headers, signs the session token, and replaces stale signing headers")
    func addedHeaders() throws {
        let signer = SigV4Signer(service: "s3", region: "us-east-1")
        let credentials = AWSCredentials(accessKeyID: "AKID", secretAccessKey: "secret", sessionToken: "token")
        let date = Date(timeIntervalSince1970: 1_369_353_600)
        let stale = SigV4Signer.Request(
            method: "GET", path: "/key", query: [("uploads", "")],
            headers: [
                ("host", "bucket.s3.amazonaws.com"), ("authorization", "old"), ("x-amz-date", "19990101T000000Z"),
                ("x-amz-security-token", "old-token"), ("User-Agent", "test"),
            ])
        let result = signer.signingResult(stale, payload: .unsigned, credentials: credentials, date: date)
        #expect(
            result.headers.map(\.name) == [
                "Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-Sha256",
            ])
        #expect(result.headers.map(\.value).dropFirst() == ["20130524T000000Z", "token", "UNSIGNED-PAYLOAD"])
        #expect(result.signedHeaders == "host;x-amz-content-sha256;x-amz-date;x-amz-security-token")
        #expect(result.canonicalRequest.contains("\nuploads=\n"))
        #expect(!result.canonicalRequest.contains("old"))

        // Re-signing the request as sent (old values replaced) gives the same signature.
        let sent = signer.signed(stale, payload: .unsigned, credentials: credentials, date: date)
        #expect(sent.headers.filter { $0.name.lowercased() == "x-amz-date" }.map(\.value) == ["20130524T000000Z"])
        let again = signer.signingResult(sent, payload: .unsigned, credentials: credentials, date: date)
        #expect(again.signature == result.signature)
    }

    @Test("credentials never show their secret or token")
    func credentialsDescription() throws {
        let scope = try Self.examples().credentials_and_scope
        var credentials = Self.credentials(scope)
        credentials.sessionToken = "session-token-value"
        for text in [
            credentials.description, credentials.debugDescription, "\(credentials)", String(reflecting: credentials),
        ] {
            #expect(!text.contains(scope.secretAccessKey))
            #expect(!text.contains("session-token-value"))
            #expect(text.contains(scope.accessKeyId))
        }
    }
}
