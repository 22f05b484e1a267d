import Foundation
import Hashing

/// One AWS Query API endpoint (form-encoded POST to `/`, XML answers): what CloudWatch, STS and IAM speak. Signs with
/// SigV4 for the service (or sends unsigned, for STS's `AssumeRoleWithWebIdentity`), retries per the standard
/// strategy, and turns `<ErrorResponse>` answers into `S3Error`s with the service's own code.
///
/// Package-internal: `CloudWatchClient` here, the STS client of `CredentialChain`, and the tests' IAM set-up share it.
package final class QueryAPIClient: Sendable {
    /// The endpoint (`scheme://host[:port]`).
    package let endpoint: String
    /// The API version sent with every call (`2010-08-01`, `2011-06-15`, ...).
    package let apiVersion: String
    private let host: String
    private let transport: any HTTPTransport
    private let signer: SigV4Signer
    private let retryStrategy: RetryStrategy
    private let requestTimeout: Duration

    /// A client of one service at one endpoint.
    ///
    /// - Throws: `S3Error` `InvalidConfiguration` when the endpoint is not an http(s) URL, or plain HTTP to a host
    ///   that is not loopback.
    package init(
        service: String, region: String, endpoint: String, apiVersion: String, transport: any HTTPTransport,
        maxAttempts: Int = 3, maxBackoff: Duration = .seconds(5), requestTimeout: Duration = .seconds(30)
    ) throws {
        let parsed = try S3Configuration(region: region, endpoint: endpoint).parsedEndpoint(endpoint)
        self.endpoint = "\(parsed.scheme)://\(parsed.authority)"
        self.host = parsed.authority
        self.apiVersion = apiVersion
        self.transport = transport
        self.signer = SigV4Signer(service: service, region: region)
        self.retryStrategy = RetryStrategy(maxAttempts: maxAttempts, maxBackoff: maxBackoff)
        self.requestTimeout = requestTimeout
    }

    /// The endpoint the SDKs would use for a service: `explicit`, else `AWS_ENDPOINT_URL_<SERVICE>`, else
    /// `AWS_ENDPOINT_URL`, else `https://<prefix>.<region>.amazonaws.com` (`.amazonaws.com.cn` in China regions).
    package static func resolveEndpoint(
        prefix: String, serviceVariable: String, region: String, explicit: String?, environment: [String: String]
    ) -> String {
        if let chosen = nonEmpty(explicit) ?? nonEmpty(environment[serviceVariable])
            ?? nonEmpty(environment["AWS_ENDPOINT_URL"])
        {
            return chosen
        }
        return "https://\(prefix).\(region).amazonaws.com" + (region.hasPrefix("cn-") ? ".cn" : "")
    }

    /// Calls `action` with these parameters (`Action` and `Version` are added).
    ///
    /// - Parameters:
    ///   - credentials: What to sign with; nil sends the call unsigned.
    /// - Returns: The answer's XML root.
    /// - Throws: `S3Error` with the service's code, or a transport code, after the standard retries.
    package func call(
        _ action: String, _ parameters: [(String, String)], credentials: (any CredentialsProvider)?
    ) async throws -> XMLNode {
        let body = Self.formPairs([("Action", action), ("Version", apiVersion)] + parameters)
        guard let root = try await call(body: body, action: action, credentials: credentials) else {
            throw S3Error(
                status: 200, code: "InvalidResponse", message: "the answer to \(action) is not an XML document",
                operation: "\(action) \(endpoint)", isRetryable: false)
        }
        return root
    }

    /// Sends one form body: POST, signed unless `credentials` is nil; retries per the standard strategy.
    ///
    /// - Returns: The answer's XML root; nil when the answer is not XML.
    package func call(body: String, action: String, credentials: (any CredentialsProvider)?) async throws -> XMLNode? {
        let bytes = Array(body.utf8)
        let payloadHash = SHA256Hasher.hexDigest(bytes)
        let headers: [(name: String, value: String)] = [
            ("Host", host), ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
        ]
        var random = SystemRandomNumberGenerator()
        var attempt = 0
        var retryCosts = 0
        while true {
            attempt += 1
            try Task.checkCancellation()
            var signed: [(name: String, value: String)] = []
            if let credentials {
                signed = signer.sign(
                    SigV4Signer.Request(method: "POST", path: "/", headers: headers), payload: .sha256Hex(payloadHash),
                    credentials: try await credentials.credentials(), date: Date())
            }
            let request = HTTPRequest(
                method: "POST", url: endpoint + "/", headers: headers + signed, body: .bytes(bytes),
                destination: .memory(limit: 1 << 20), timeout: requestTimeout)
            var failure: S3Error
            do {
                let response = try await transport.execute(request)
                if (200..<300).contains(response.status) {
                    retryStrategy.recordSuccess(retryCosts: retryCosts)
                    return try? XMLNode.parse(response.body)
                }
                failure = Self.error(in: response, action: action)
            } catch let error as S3Error {
                failure = error
                failure.operation = "\(action) \(endpoint)"
            }
            guard let cost = retryStrategy.acquireRetry(after: failure, attempt: attempt) else { throw failure }
            retryCosts += cost
            try await Task.sleep(for: retryStrategy.backoff(afterAttempt: attempt, random: &random))
        }
    }

    /// `name=value&...`, each side percent-encoded as SigV4 wants it.
    package static func formPairs(_ pairs: [(String, String)]) -> String {
        pairs.map { URIEncoding.encode($0.0) + "=" + URIEncoding.encode($0.1) }.joined(separator: "&")
    }

    /// The Query API's `<ErrorResponse><Error><Code>…</Code><Message>…</Message></Error><RequestId>…` as an error.
    package static func error(in response: HTTPResponse, action: String) -> S3Error {
        let root = try? XMLNode.parse(response.body)
        let error = root.flatMap { $0.name == "ErrorResponse" ? $0.child("Error") : ($0.name == "Error" ? $0 : nil) }
        let code = error?.string("Code") ?? S3Client.statusCode(response.status)
        return S3Error(
            status: response.status, code: code,
            message: error?.string("Message")
                ?? (response.body.isEmpty
                    ? "HTTP \(response.status)" : String(decoding: response.body.prefix(200), as: UTF8.self)),
            requestID: root?.string("RequestId") ?? response.header("x-amzn-requestid"), operation: action,
            isRetryable: S3Error.isRetryable(status: response.status, code: code))
    }
}
