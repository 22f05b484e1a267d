import CredentialChain
import Drain
import Foundation
import Logging
import PipelineStorage
import S3
import SpoolTestSupport
import Testing

@testable import LocalS3Support
@testable import Spool

/// A destination's `aws.profile` and `aws.roleARN`, recorded by the writer from `configureApplicationStorage()`,
/// are what the drainer signs its uploads with.
@Suite("Per-destination profile and role")
struct DestinationCredentialsTests {
    @Test("the drainer uses the recorded profile and assumes the recorded role; without the role it is refused")
    func recordedProfileAndRole() async throws {
        let moto = try await LocalS3.shared.server()
        let iam = try MotoIAM(moto)
        // The profile's user may only assume roles: every S3 call must go through the role.
        let user = try await iam.createUser(uniquePrefix("fetcher"), keys: 1, actions: ["sts:AssumeRole"])[0]
        let roleARN = try await iam.createRole(uniquePrefix("fetcher-role"))
        let sandbox = try Sandbox()
        try sandbox.credentials(
            """
            [fetcher]
            aws_access_key_id = \(user.accessKeyID)
            aws_secret_access_key = \(user.secretAccessKey)
            """)
        try sandbox.config("[profile fetcher]\nregion = \(moto.region)\n")
        // No AWS_REGION: the region comes from the profile, as the AWS SDKs do.
        let drainerEnvironment = sandbox.environment(["AWS_ENDPOINT_URL_STS": moto.endpoint])
        let admin = motoClient(
            moto,
            StaticCredentialsProvider(
                AWSCredentials(accessKeyID: moto.accessKeyID, secretAccessKey: moto.secretAccessKey)))

        for withRole in [false, true] {
            let bucket = uniquePrefix(withRole ? "with-role" : "without-role")
            try await admin.createBucket(bucket)
            var configuration = [
                "PIPELINE_STORAGE_BUCKET": bucket, "PIPELINE_STORAGE_ENDPOINT": moto.endpoint,
                "PIPELINE_STORAGE_SPOOL_DIRECTORY": sandbox.path + "/spool-\(bucket)",
                "PIPELINE_STORAGE_AWS_PROFILE": "fetcher", "PIPELINE_STORAGE_S3_PUBLIC_ACCESS_BLOCK": "unmanaged",
            ]
            if withRole { configuration["PIPELINE_STORAGE_AWS_ROLE_ARN"] = roleARN }
            let storage = try #require(try configureApplicationStorage(environment: configuration) as? PipelineStorage)
            try await storage.withBundle("profile-and-role") { bundle in
                for index in 0..<3 {
                    try await bundle.writeResource(
                        url: "https://example.com/\(index)", contentType: "text/plain", statusCode: 200,
                        bytes: Array("resource \(index)".utf8))
                }
            }
            let stores = DestinationStores(
                region: nil, endpoint: nil, caBundle: nil, uploadTimeout: nil, environment: drainerEnvironment)
            var options = DrainOptions()
            options.untilDone = !withRole ? false : true
            options.pollInterval = .milliseconds(50)
            var logger = Logger(label: "destination-credentials-test")
            logger.logLevel = .critical
            let drainer = Drainer(spool: storage.spool, options: options, logger: logger) {
                try stores.store(for: $0)
            }
            if withRole {
                let progress = try await drainer.run()
                #expect(progress.delivered == 4, "three resources and _bundle.json")
                #expect(progress.failed == 0 && progress.pauses == 0)
                let objects = try await admin.listAllObjects(bucket: bucket, prefix: "")
                #expect(objects.count == 4)
            } else {
                // The profile's own key may not write to S3: the destination pauses, nothing is delivered. Stopped
                // once it has paused, not after a fixed time: on a loaded machine the first claim can take seconds.
                let run = Task { try await drainer.run() }
                defer { drainer.stop() }  // also when the wait below throws
                let paused = try await eventually(timeout: .seconds(60)) { drainer.progress.pauses >= 1 }
                drainer.stop()
                let progress = try await run.value
                #expect(paused, "the destination was not paused within 60 s")
                #expect(progress.delivered == 0)
                #expect(progress.pauses >= 1, "AccessDenied pauses the destination")
                let objects = try await admin.listAllObjects(bucket: bucket, prefix: "")
                #expect(objects.isEmpty)
            }
        }
    }
}
