import Drain
import Foundation
import Synchronization
import Testing

@testable import S3

@testable import CredentialChain
@testable import LocalS3Support

/// A credentials file with the moto admin key as profile `base`.
func baseProfile(_ server: LocalS3.Server) -> String {
    "[base]\naws_access_key_id = \(server.accessKeyID)\naws_secret_access_key = \(server.secretAccessKey)\n"
}

@Suite("STS through the chain against moto (SigV4 auth on): assume role, chained roles, web identity")
struct STSTests {
    @Test("role_arn + source_profile + external_id + duration_seconds: assumed-role credentials that work on S3")
    func assumeRoleThroughProfile() async throws {
        let server = try await LocalS3.shared.server()
        let iam = try MotoIAM(server)
        let externalID = "ext-\(UUID().uuidString.prefix(8))"
        let role = try await iam.createRole(uniquePrefix(), externalID: externalID)
        let sandbox = try Sandbox()
        try sandbox.credentials(baseProfile(server))
        try sandbox.config(
            """
            [profile app]
            role_arn = \(role)
            source_profile = base
            external_id = \(externalID)
            duration_seconds = 900
            role_session_name = drainer-test
            region = us-east-1
            [profile wrongexternal]
            role_arn = \(role)
            source_profile = base
            external_id = not-\(externalID)
            """)
        let chain = CredentialChain(environment: motoEnvironment(server, sandbox, ["AWS_PROFILE": "app"]))
        let credentials = try await chain.credentials()
        #expect(credentials.accessKeyID.hasPrefix("ASIA"))
        #expect(credentials.sessionToken != nil)
        let expiration = try #require(credentials.expiration)
        #expect(abs(expiration.timeIntervalSinceNow - 900) < 120, "duration_seconds was sent: \(expiration)")
        #expect(
            chain.providerName
                == "assume role \(role) (profile 'app') with profile 'base' in \(sandbox.credentialsFile)")
        try await putAndGet(server, chain)

        // With another external id the role's trust policy refuses: STS's own code, the role named, no secret.
        // (moto lets a call without ExternalId through a trust condition on it; AWS does not.)
        let refused = CredentialChain(profile: "wrongexternal", environment: motoEnvironment(server, sandbox))
        let error = await expectS3Error("AccessDenied") { _ = try await refused.credentials() }
        #expect(error?.message.contains(role) == true, "\(error?.message ?? "")")
        expectNoSecrets(error, [server.secretAccessKey])
    }

    @Test("Chained source profiles, a profile sourcing itself, and credential_source = Environment")
    func chainedRoles() async throws {
        let server = try await LocalS3.shared.server()
        let iam = try MotoIAM(server)
        let first = try await iam.createRole(uniquePrefix("first"))
        let second = try await iam.createRole(uniquePrefix("second"))
        let sandbox = try Sandbox()
        try sandbox.credentials(baseProfile(server))
        try sandbox.config(
            """
            [profile first]
            role_arn = \(first)
            source_profile = base
            [profile second]
            role_arn = \(second)
            source_profile = first
            [profile itself]
            role_arn = \(first)
            source_profile = itself
            aws_access_key_id = \(server.accessKeyID)
            aws_secret_access_key = \(server.secretAccessKey)
            [profile fromenv]
            role_arn = \(second)
            credential_source = Environment
            """)
        let environment = motoEnvironment(server, sandbox)
        let chained = CredentialChain(profile: "second", environment: environment)
        #expect(try await chained.credentials().accessKeyID.hasPrefix("ASIA"))
        #expect(
            chained.providerName?.contains("assume role \(second) (profile 'second') with assume role \(first)") == true
        )
        try await putAndGet(server, chained)

        let itself = CredentialChain(profile: "itself", environment: environment)
        #expect(try await itself.credentials().accessKeyID.hasPrefix("ASIA"))

        let fromEnvironment = CredentialChain(
            profile: "fromenv",
            environment: environment.merging([
                "AWS_ACCESS_KEY_ID": server.accessKeyID, "AWS_SECRET_ACCESS_KEY": server.secretAccessKey,
            ]) { $1 })
        #expect(try await fromEnvironment.credentials().accessKeyID.hasPrefix("ASIA"))
        #expect(fromEnvironment.providerName?.hasSuffix("with credentials from the environment") == true)
        try await putAndGet(server, fromEnvironment)
    }

    @Test(
        "Web identity from AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, unsigned; the token file is read on each refresh"
    )
    func webIdentity() async throws {
        let server = try await LocalS3.shared.server()
        let role = try await MotoIAM(server).createRole(uniquePrefix())
        let sandbox = try Sandbox()
        let token = "eyJhbGciOiJSUzI1NiJ9.web-identity-token-\(UUID().uuidString)"
        let tokenFile = try sandbox.write("token", token + "\n")
        let clock = ManualClock(Date())
        var options = chainOptions(clock: clock.function)
        options.refreshPolicy = CredentialsRefreshPolicy(
            refreshBefore: .seconds(300), expiryMargin: .seconds(60), retryAfterFailure: .seconds(30))
        let chain = CredentialChain(
            options: options,
            environment: motoEnvironment(
                server, sandbox,
                ["AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile, "AWS_ROLE_ARN": role, "AWS_ROLE_SESSION_NAME": "pod-1"]))
        let first = try await chain.credentials()
        #expect(first.accessKeyID.hasPrefix("ASIA"))
        #expect(
            chain.providerName
                == "web identity: assume role \(role) with the token file from AWS_WEB_IDENTITY_TOKEN_FILE")
        try await putAndGet(server, chain)

        // The file is gone at the next refresh: with the old credentials still good they stay in use...
        try FileManager.default.removeItem(atPath: tokenFile)
        clock.advance(first.expiration!.timeIntervalSince(clock.date) - 200)
        #expect(try await chain.credentials() == first)
        // ...and once they are about to expire the refresh's error is the caller's, naming the file, not the token.
        clock.advance(150)
        let error = await expectS3Error("InvalidConfiguration") { _ = try await chain.credentials() }
        #expect(error?.message.contains(tokenFile) == true)
        // A new token in the file: read again, new credentials.
        try sandbox.write("token", token + "-rotated")
        let second = try await chain.credentials()
        #expect(second.accessKeyID.hasPrefix("ASIA") && second.accessKeyID != first.accessKeyID)
        expectNoSecrets(error, [token])
    }

    @Test("Web identity from a profile (web_identity_token_file + role_arn)")
    func webIdentityProfile() async throws {
        let server = try await LocalS3.shared.server()
        let role = try await MotoIAM(server).createRole(uniquePrefix())
        let sandbox = try Sandbox()
        let token = "profile-web-identity-token-\(UUID().uuidString)"
        let tokenFile = try sandbox.write("token", token)
        try sandbox.config(
            """
            [profile federated]
            web_identity_token_file = \(tokenFile)
            role_arn = \(role)
            """)
        let chain = CredentialChain(profile: "federated", environment: motoEnvironment(server, sandbox))
        #expect(try await chain.credentials().accessKeyID.hasPrefix("ASIA"))
        #expect(chain.providerName?.contains("token file from profile 'federated'") == true)
        try await putAndGet(server, chain)
    }

    @Test("AssumeRoleCredentialsProvider on top of any provider, and DestinationStores' per-pair providers")
    func roleOnTop() async throws {
        let server = try await LocalS3.shared.server()
        let role = try await MotoIAM(server).createRole(uniquePrefix())
        let sandbox = try Sandbox()
        let environment = motoEnvironment(
            server, sandbox,
            ["AWS_ACCESS_KEY_ID": server.accessKeyID, "AWS_SECRET_ACCESS_KEY": server.secretAccessKey])
        let direct = AssumeRoleCredentialsProvider(
            source: CredentialChain(environment: environment), roleARN: role, sessionName: "on-top",
            duration: .seconds(1800), sts: STSClient(environment: environment)
        ).cached()
        let credentials = try await direct.credentials()
        #expect(credentials.accessKeyID.hasPrefix("ASIA"))
        #expect(abs(credentials.expiration!.timeIntervalSinceNow - 1800) < 120)
        try await putAndGet(server, direct)

        let stores = DestinationStores(
            region: server.region, endpoint: server.endpoint, caBundle: nil, uploadTimeout: nil,
            environment: environment)
        let viaStores = stores.credentialsProvider(profile: nil, roleARN: role)
        #expect(viaStores as AnyObject === stores.credentialsProvider(profile: nil, roleARN: role) as AnyObject)
        #expect(
            stores.credentialsProvider(profile: nil, roleARN: nil) as AnyObject === stores.defaultCredentials
                as AnyObject)
        #expect(viaStores as AnyObject !== stores.defaultCredentials as AnyObject)
        #expect(try await viaStores.credentials().accessKeyID.hasPrefix("ASIA"))
        try await putAndGet(server, viaStores)
        #expect(try await stores.defaultCredentials.credentials().accessKeyID == server.accessKeyID)
    }
}

/// Answers every request with one canned response, and keeps the requests.
final class CannedTransport: HTTPTransport {
    let status: Int
    let body: String
    let requests = Mutex<[HTTPRequest]>([])

    init(status: Int, body: String) {
        self.status = status
        self.body = body
    }

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        requests.withLock { $0.append(request) }
        return HTTPResponse(
            status: status, headers: [("x-amzn-requestid", "req-1")], body: Array(body.utf8),
            bodyBytes: Int64(body.utf8.count), connectionsOpened: 0)
    }
}

@Suite("STS errors and requests (canned answers)")
struct STSErrorTests {
    @Test("An STS error that echoes the web identity token or external id is scrubbed; the request is unsigned")
    func scrubbed() async throws {
        let token = "eyJraWQiOiJ0ZXN0In0.echoed-token-\(UUID().uuidString)"
        let transport = CannedTransport(
            status: 400,
            body: """
                <ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>\
                <Message>Token \(token) is not valid</Message></Error><RequestId>abc</RequestId></ErrorResponse>
                """)
        let sts = STSClient(region: "eu-west-1", environment: [:], transport: transport)
        #expect(sts.endpoint == "https://sts.eu-west-1.amazonaws.com")
        let error = await expectS3Error("InvalidIdentityToken") {
            _ = try await sts.assumeRoleWithWebIdentity(
                roleARN: "arn:aws:iam::1:role/r", sessionName: "s", token: token)
        }
        #expect(error?.message.contains("<redacted>") == true)
        #expect(error?.requestID == "abc")
        expectNoSecrets(error, [token])
        let sent = try #require(transport.requests.withLock { $0.first })
        #expect(!sent.headers.contains { $0.name.lowercased() == "authorization" })

        let external = "external-id-secret-value"
        let signed = CannedTransport(
            status: 403,
            body:
                "<ErrorResponse><Error><Code>AccessDenied</Code><Message>bad \(external)</Message></Error></ErrorResponse>"
        )
        let provider = AssumeRoleCredentialsProvider(
            source: StaticCredentialsProvider(AWSCredentials(accessKeyID: "AKID", secretAccessKey: "source-secret")),
            roleARN: "arn:aws:iam::1:role/r", externalID: external,
            sts: STSClient(environment: ["AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9"], transport: signed))
        let denied = await expectS3Error("AccessDenied") { _ = try await provider.credentials() }
        #expect(denied?.message.hasPrefix("assuming role arn:aws:iam::1:role/r: ") == true)
        expectNoSecrets(denied, [external, "source-secret"])
        let request = try #require(signed.requests.withLock { $0.first })
        #expect(request.url == "http://127.0.0.1:9/")
        #expect(request.headers.contains { $0.name == "Authorization" && $0.value.contains("Credential=AKID/") })
    }

    @Test("The STS endpoint: AWS_ENDPOINT_URL_STS, else AWS_ENDPOINT_URL, else regional; plain HTTP only to loopback")
    func endpoints() async throws {
        #expect(STSClient(environment: [:]).endpoint == "https://sts.us-east-1.amazonaws.com")
        #expect(
            STSClient(environment: ["AWS_DEFAULT_REGION": "cn-north-1"]).endpoint
                == "https://sts.cn-north-1.amazonaws.com.cn")
        #expect(
            STSClient(environment: ["AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "x"]).region == "eu-central-1")
        #expect(STSClient(environment: ["AWS_ENDPOINT_URL": "http://127.0.0.1:1"]).endpoint == "http://127.0.0.1:1")
        #expect(
            STSClient(environment: [
                "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:2",
            ])
            .endpoint == "http://127.0.0.1:2")
        let insecure = STSClient(environment: ["AWS_ENDPOINT_URL_STS": "http://sts.example.com"])
        let error = await expectS3Error("InvalidConfiguration") {
            _ = try await insecure.assumeRoleWithWebIdentity(roleARN: "r", sessionName: "s", token: "t")
        }
        #expect(error?.message.hasPrefix("STS endpoint 'http://sts.example.com'") == true)
    }
}
