import Drain
import Foundation
import Hashing
import Logging
import S3
import Spool
import Synchronization
import Testing

@testable import LocalS3Support

// MARK: Other services of the local moto server

/// KMS and IAM on the local moto_server, called with our own SigV4 signer: a KMS key for SSE-KMS, a user with fewer
/// permissions than the tests' admin key.
struct LocalAWSServices {
    let server: LocalS3.Server
    private let transport = CurlTransport(options: TransportOptions())

    init(_ server: LocalS3.Server) { self.server = server }

    private func post(service: String, headers: [(name: String, value: String)], body: String) async throws
        -> HTTPResponse
    {
        let bytes = Array(body.utf8)
        let host = String(server.endpoint.dropFirst("http://".count))
        let request = SigV4Signer.Request(
            method: "POST", path: "/", query: [], headers: [(name: "Host", value: host)] + headers)
        let signed = SigV4Signer(service: service, region: server.region).signed(
            request, payload: .sha256Hex(SHA256Hasher.hexDigest(bytes)),
            credentials: AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: server.secretAccessKey),
            date: Date())
        let response = try await transport.execute(
            HTTPRequest(
                method: "POST", url: server.endpoint + "/", headers: signed.headers, body: .bytes(bytes),
                timeout: .seconds(30)))
        guard (200..<300).contains(response.status) else {
            throw LocalS3Error(
                "\(service) answered HTTP \(response.status): \(String(decoding: response.body, as: UTF8.self))")
        }
        return response
    }

    /// A new symmetric KMS key (TrentService.CreateKey): its ARN.
    func createKMSKey() async throws -> String {
        let response = try await post(
            service: "kms",
            headers: [("Content-Type", "application/x-amz-json-1.1"), ("X-Amz-Target", "TrentService.CreateKey")],
            body: #"{"Description":"pipeline-storage bucket set-up tests"}"#)
        let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        guard let arn = (object?["KeyMetadata"] as? [String: Any])?["Arn"] as? String else {
            throw LocalS3Error("CreateKey answered no KeyMetadata.Arn")
        }
        return arn
    }

    private func iam(_ parameters: [(String, String)]) async throws -> XMLNode {
        let body = (parameters + [("Version", "2010-05-08")]).map {
            "\(URIEncoding.encode($0))=\(URIEncoding.encode($1))"
        }
        .joined(separator: "&")
        let response = try await post(
            service: "iam", headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
            body: body)
        return try XMLNode.parse(response.body)
    }

    /// A new IAM user with this inline policy, and an access key for it.
    func createUser(policy: String) async throws -> AWSCredentials {
        let name = "bucket-setup-" + UUID().uuidString.prefix(8).lowercased()
        _ = try await iam([("Action", "CreateUser"), ("UserName", name)])
        _ = try await iam([
            ("Action", "PutUserPolicy"), ("UserName", name), ("PolicyName", "limited"), ("PolicyDocument", policy),
        ])
        let answer = try await iam([("Action", "CreateAccessKey"), ("UserName", name)])
        guard let key = answer.child("CreateAccessKeyResult")?.child("AccessKey"),
            let id = key.string("AccessKeyId"), let secret = key.string("SecretAccessKey")
        else { throw LocalS3Error("CreateAccessKey answered no AccessKey") }
        return AWSCredentials(accessKeyID: id, secretAccessKey: secret)
    }
}

// MARK: Counting what reaches S3

/// Passes requests to libcurl and keeps their method and URL: tells bucket set-up calls from deliveries.
///
/// It sees every attempt, the S3 client's retries included: a moto busy with the whole suite sometimes answers 5xx
/// or drops a connection, and the client sends the request again. `setupCalls` leaves those attempts out.
final class CountingTransport: HTTPTransport {
    private struct Attempt {
        let method: String
        let url: String
        let body: [UInt8]
        /// Whether it got an answer the client does not retry (not 5xx, not 429); false for no answer at all.
        var final = false
    }

    private let base = CurlTransport(options: TransportOptions())
    private let sent = Mutex<[Attempt]>([])

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        var body: [UInt8] = []
        if case .bytes(let bytes) = request.body, bytes.count < 64 << 10 { body = bytes }
        let index = sent.withLock {
            $0.append(Attempt(method: request.method, url: request.url, body: body))
            return $0.count - 1
        }
        let response = try await base.execute(request)
        if !(500..<600).contains(response.status) && response.status != 429 {
            sent.withLock { $0[index].final = true }
        }
        return response
    }

    /// The bucket set-up calls made, each once however many attempts it took: CreateBucket, HeadBucket and the
    /// configuration subresources, as `METHOD subresource` (`PUT publicAccessBlock`, `HEAD bucket`, `PUT bucket`).
    var setupCalls: [String] { setupRequests(sent.withLock { $0 }.filter(\.final)) }

    /// Every attempt at a bucket set-up call, retries and attempts that got no answer included.
    var setupAttempts: [String] { setupRequests(sent.withLock { $0 }) }

    private func setupRequests(_ attempts: [Attempt]) -> [String] {
        let subresources = ["lifecycle", "policy", "publicAccessBlock", "encryption", "versioning", "location"]
        return attempts.compactMap { request in
            let afterHost = request.url.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false)
            guard afterHost.count >= 4 else { return nil }
            let pathAndQuery = afterHost[3]
            let parts = pathAndQuery.split(separator: "?", maxSplits: 1)
            let path = parts.first.map(String.init) ?? ""
            guard !path.contains("/") else { return nil }  // bucket/key: an object operation
            let query = parts.count > 1 ? String(parts[1]) : ""
            if let subresource = subresources.first(where: { query == $0 || query.hasPrefix($0 + "=") }) {
                return "\(request.method) \(subresource)"
            }
            return query.isEmpty && ["PUT", "HEAD"].contains(request.method) ? "\(request.method) bucket" : nil
        }
    }

    /// The body of the last CreateBucket request.
    var createBucketBody: [UInt8]? {
        sent.withLock { $0 }.last {
            $0.method == "PUT" && !$0.url.contains("?") && $0.url.split(separator: "/").count == 3
        }?
        .body
    }
}

/// A resolver whose S3 clients use the destination's region (or the server's), these credentials (or the
/// server's), and this transport.
func setupResolver(
    server: LocalS3.Server, credentials: (any CredentialsProvider)? = nil, transport: (any HTTPTransport)? = nil
) -> Drainer.StoreResolver {
    { destination in
        let options = try StorageOptions.decode(
            json: destination.spec.optionsJSON, destination: destination.spec.displayName)
        switch destination.spec.kind {
        case .file:
            return DirectoryObjectStore(root: destination.spec.location)
        case .s3:
            var configuration = S3Configuration(
                region: destination.spec.region.isEmpty ? server.region : destination.spec.region,
                endpoint: server.endpoint)
            configuration.maxBackoff = .milliseconds(200)
            let client = S3Client(
                configuration: configuration,
                credentials: credentials
                    ?? StaticCredentialsProvider(
                        AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: server.secretAccessKey)),
                transport: transport)
            return S3ObjectStore(client: client, bucket: destination.spec.location, options: options)
        }
    }
}

/// A log handler that keeps what it is given, for tests that check a warning was logged.
final class CapturingLogHandler: LogHandler, Sendable {
    private let entries = Mutex<[(level: Logger.Level, message: String)]>([])

    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }
    var logLevel: Logger.Level {
        get { .notice }
        set {}
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }

    func log(event: LogEvent) {
        entries.withLock { $0.append((event.level, "\(event.message)")) }
    }

    func messages(at level: Logger.Level) -> [String] {
        entries.withLock { $0 }.filter { $0.level == level }.map(\.message)
    }
}
