import Foundation
import S3
import Testing

@testable import CredentialChain
@testable import LocalS3Support

/// Credentials the local server hands out in these tests (secrets that must never show in an error).
let localCredentials = [
    CredentialServer.Credentials(
        accessKeyID: "ASIALOCALONE", secretAccessKey: "localSecretOne0123456789", token: "localTokenOne0123456789"),
    CredentialServer.Credentials(
        accessKeyID: "ASIALOCALTWO", secretAccessKey: "localSecretTwo0123456789", token: "localTokenTwo0123456789"),
]

@Suite("Container credentials and EC2 instance metadata, against a local server (tools/credserver.py)")
struct MetadataTests {
    /// Bound on each instance metadata request in these tests. The provider's own 2 s is meant for a chain run off
    /// EC2; from the local Python server on a machine busy with the whole suite, an answer can take longer, and a
    /// timeout would replace the answer (or refusal) a test checks.
    static let metadataRequestTimeout: Duration = .seconds(30)

    /// A transport whose metadata requests have that bound.
    static func patientTransport() -> PatientTransport { PatientTransport(timeout: metadataRequestTimeout) }

    /// Chain options whose metadata requests have that bound.
    static func patientChainOptions(allowsIMDSv1: Bool = false) -> CredentialChain.Options {
        var options = chainOptions()
        options.allowsIMDSv1 = allowsIMDSv1
        options.metadataTransport = patientTransport()
        return options
    }

    func server(_ settings: CredentialServer.Settings = CredentialServer.Settings()) async throws -> CredentialServer {
        let server = try await LocalS3.shared.newCredentialServer()
        var settings = settings
        if settings.credentials == nil { settings.credentials = localCredentials }
        try await server.configure(settings)
        return server
    }

    @Test("Container: AWS_CONTAINER_CREDENTIALS_FULL_URI with the token file, read again on every fetch")
    func containerTokenFile() async throws {
        let server = try await server(.init(expiresIn: 3600, authToken: "token-A"))
        let sandbox = try Sandbox()
        let tokenFile = try sandbox.write("token", "token-A")
        let environment = sandbox.environment([
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": server.endpoint + "/creds",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokenFile,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": "the-file-wins",
        ])
        let provider = ContainerCredentialsProvider(environment: environment)
        let first = try await provider.credentials()
        #expect(first.accessKeyID == "ASIALOCALONE")
        #expect(first.sessionToken == "localTokenOne0123456789")
        #expect(abs(first.expiration!.timeIntervalSinceNow - 3600) < 60)
        try await server.configure(.init(authToken: "token-B"))
        try sandbox.write("token", "token-B")
        #expect(try await provider.credentials().accessKeyID == "ASIALOCALTWO")
        #expect(try await server.stats().authorizations == ["token-A", "token-B"])

        // Through the chain: found by the container step.
        let chain = CredentialChain(environment: environment)
        #expect(try await chain.credentials().accessKeyID == "ASIALOCALONE")
        #expect(chain.providerName == "container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI)")
    }

    @Test("Container: the token variable, a refused token (401, not retried), CR/LF refused before any request")
    func containerTokens() async throws {
        let server = try await server(.init(authToken: "right-token-0123456789"))
        let sandbox = try Sandbox()
        let base = ["AWS_CONTAINER_CREDENTIALS_FULL_URI": server.endpoint + "/creds"]
        let variable = ContainerCredentialsProvider(
            environment: sandbox.environment(
                base.merging(["AWS_CONTAINER_AUTHORIZATION_TOKEN": "right-token-0123456789"]) { $1 }))
        #expect(try await variable.credentials().accessKeyID == "ASIALOCALONE")

        let wrongToken = "wrong-token-0123456789"
        let wrong = ContainerCredentialsProvider(
            environment: sandbox.environment(base.merging(["AWS_CONTAINER_AUTHORIZATION_TOKEN": wrongToken]) { $1 }))
        let refused = await expectS3Error("CredentialsEndpointError") { _ = try await wrong.credentials() }
        #expect(refused?.status == 401)
        #expect(refused?.message.contains("container credentials endpoint \(server.endpoint)") == true)
        expectNoSecrets(refused, [wrongToken, "/creds"])

        let newlineFile = try sandbox.write("token", "right-token-0123456789\n")
        let newline = ContainerCredentialsProvider(
            environment: sandbox.environment(
                base.merging(["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": newlineFile]) { $1 }))
        let crlf = await expectS3Error("InvalidConfiguration") { _ = try await newline.credentials() }
        #expect(crlf?.message.contains("CR or LF") == true)
        expectNoSecrets(crlf, ["right-token-0123456789"])
        let stats = try await server.stats()
        #expect(stats.containerRequests == 2, "one good, one refused and not retried; none for the CR/LF token")
        #expect(stats.unauthorized == 1)
    }

    @Test("Container: answers of 5xx are retried; a plain-HTTP URL to another host is refused")
    func containerRetriesAndHosts() async throws {
        let server = try await server(.init(failNext: 2))
        let sandbox = try Sandbox()
        let provider = ContainerCredentialsProvider(
            environment: sandbox.environment(["AWS_CONTAINER_CREDENTIALS_FULL_URI": server.endpoint + "/creds"]),
            retryDelay: .milliseconds(10))
        #expect(try await provider.credentials().accessKeyID == "ASIALOCALONE")
        #expect(try await server.stats().failuresInjected == 2)

        let elsewhere = ContainerCredentialsProvider(
            environment: sandbox.environment(["AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://192.0.2.10/creds"]))
        let error = await expectS3Error("InvalidConfiguration") { _ = try await elsewhere.credentials() }
        #expect(error?.message.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI points at host '192.0.2.10'") == true)
    }

    @Test("IMDSv2: token PUT, role name, role credentials; found by the chain's last step")
    func imdsV2() async throws {
        let server = try await server()
        let sandbox = try Sandbox()
        let environment = sandbox.environment([
            "AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": server.endpoint + "/",
        ])
        let provider = InstanceMetadataCredentialsProvider(
            environment: environment, transport: Self.patientTransport(),
            requestTimeout: Self.metadataRequestTimeout)
        #expect(provider.endpoint == server.endpoint)
        let credentials = try await provider.credentials()
        #expect(credentials.accessKeyID == "ASIALOCALONE")
        #expect(credentials.sessionToken == "localTokenOne0123456789")
        let chain = CredentialChain(options: Self.patientChainOptions(), environment: environment)
        #expect(try await chain.credentials().accessKeyID == "ASIALOCALTWO")
        #expect(chain.providerName == "EC2 instance metadata (\(server.endpoint), IMDSv2)")
        let stats = try await server.stats()
        #expect(stats.tokenRequests == 2 && stats.roleRequests == 2 && stats.credentialRequests == 2)
        #expect(stats.unauthorized == 0)
    }

    @Test("IMDSv1 is refused unless allowed; allowed, it is used only after the token request was refused")
    func imdsV1() async throws {
        let server = try await server(.init(imds: "v1"))
        let sandbox = try Sandbox()
        let environment = sandbox.environment([
            "AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": server.endpoint,
        ])
        let strict = InstanceMetadataCredentialsProvider(
            environment: environment, transport: Self.patientTransport(),
            requestTimeout: Self.metadataRequestTimeout)
        let error = await expectS3Error("CredentialsNotFound") { _ = try await strict.credentials() }
        #expect(
            error?.message.contains("refused the IMDSv2 token request (HTTP 403), and IMDSv1 is not allowed") == true)
        let chain = CredentialChain(options: Self.patientChainOptions(), environment: environment)
        let notFound = await expectS3Error("CredentialsNotFound") { _ = try await chain.credentials() }
        #expect(
            notFound?.message.contains("(8) EC2 instance metadata: EC2 instance metadata at \(server.endpoint) refused")
                == true)
        var stats = try await server.stats()
        #expect(stats.roleRequests == 0 && stats.credentialRequests == 0, "no IMDSv1 request was made")

        let lenient = InstanceMetadataCredentialsProvider(
            allowsIMDSv1: true, environment: environment, transport: Self.patientTransport(),
            requestTimeout: Self.metadataRequestTimeout)
        #expect(try await lenient.credentials().accessKeyID == "ASIALOCALONE")
        let lenientChain = CredentialChain(
            options: Self.patientChainOptions(allowsIMDSv1: true), environment: environment)
        #expect(try await lenientChain.credentials().accessKeyID == "ASIALOCALTWO")
        #expect(lenientChain.providerName?.contains("IMDSv1 allowed") == true)
        stats = try await server.stats()
        #expect(stats.credentialRequests == 2)

        // A server that demands tokens refuses token-less requests: the v2 path is what makes it work.
        try await server.configure(.init(imds: "v2"))
        #expect(try await lenient.credentials().accessKeyID == "ASIALOCALONE")
        #expect(try await server.stats().unauthorized == 0)
    }

    @Test("Off EC2 (nothing listening) the instance metadata step gives up quickly and is listed as not found")
    func imdsUnreachable() async throws {
        let sandbox = try Sandbox()
        let closedPort = "http://127.0.0.1:1"  // nothing listens on port 1
        let environment = sandbox.environment([
            "AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": closedPort,
        ])
        let started = ContinuousClock.now
        let chain = CredentialChain(environment: environment)
        let error = await expectS3Error("CredentialsNotFound") { _ = try await chain.credentials() }
        // Refused at once. The bound is loose because the whole suite may be running on two busy cores; it still
        // tells this apart from waiting out libcurl's default connect timeout (300 s).
        #expect(ContinuousClock.now - started < .seconds(60))
        #expect(error?.message.contains("(8) EC2 instance metadata: EC2 instance metadata at \(closedPort):") == true)
        #expect(error?.message.contains("not running on EC2?") == true)
    }

    @Test("credential_source Ec2InstanceMetadata and EcsContainer assume a role with those credentials (moto)")
    func credentialSources() async throws {
        let moto = try await LocalS3.shared.server()
        let role = try await MotoIAM(moto).createRole(uniquePrefix())
        let admin = CredentialServer.Credentials(
            accessKeyID: moto.accessKeyID, secretAccessKey: moto.secretAccessKey, token: "")
        let server = try await server(.init(credentials: [admin]))
        let sandbox = try Sandbox()
        try sandbox.config(
            """
            [profile onec2]
            role_arn = \(role)
            credential_source = Ec2InstanceMetadata
            [profile incontainer]
            role_arn = \(role)
            credential_source = EcsContainer
            """)
        let environment = motoEnvironment(
            moto, sandbox,
            [
                "AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": server.endpoint,
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": server.endpoint + "/creds",
            ])
        for profile in ["onec2", "incontainer"] {
            let chain = CredentialChain(profile: profile, environment: environment)
            #expect(try await chain.credentials().accessKeyID.hasPrefix("ASIA"), "\(profile)")
            try await putAndGet(moto, chain, test: "credentialSources-\(profile)")
        }
    }
}

/// libcurl with a generous bound on every request, whatever bound the request carries: the chain builds its instance
/// metadata provider with the provider's default 2 s per request and has an option for the transport only. Connects
/// within 10 s and calls a transfer stalled after `timeout` without data (the metadata transport: 1 s and 5 s).
struct PatientTransport: HTTPTransport {
    let timeout: Duration
    private let base: CurlTransport

    init(timeout: Duration) {
        self.timeout = timeout
        var options = TransportOptions()
        options.lowSpeedWindow = timeout
        base = CurlTransport(options: options)
    }

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        var request = request
        request.timeout = max(request.timeout ?? timeout, timeout)
        return try await base.execute(request)
    }
}
