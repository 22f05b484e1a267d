import Foundation
@testable import LocalS3Support
import S3
import Testing

/// spool-drain applies the bucket set-up; spool-inspect tells whether and when.
@Suite("Bucket set-up through the built tools: spool-put, spool-drain, spool-inspect")
struct BucketSetupCommandTests {
    @Test("spool-drain creates and sets up the bucket once; status, show and audit report it, human and JSON")
    func drainThenInspect() async throws {
        try await withTemporaryDirectory { directory in
            let server = try await LocalS3.shared.server()
            let spool = directory + "/spool"
            let bucket = uniquePrefix()
            let put = try await runTool(
                "spool-put",
                [
                    "--spool", spool, "--bundle", "b-1", "--url", "https://example.com/a.txt", "--bucket", bucket,
                    "--endpoint", server.endpoint, "--region", server.region, "--prefix", "cli", "--create-bucket",
                    "--seal",
                ], stdin: Data("hello\n".utf8))
            try #require(put.status == 0, "\(put.stderr)")

            let before = try jsonObject(
                try await runTool("spool-inspect", ["status", "--spool", spool, "--json"]).stdout)
            let pending = try #require((before["destinations"] as? [[String: Any]])?.first)
            #expect(pending["bucket_setup"] as? String == "pending")
            #expect(pending["bucket_setup_applied_at"] == nil)
            #expect(pending["destination"] as? String == "s3://\(bucket)@\(server.endpoint)")

            var environment = ProcessInfo.processInfo.environment
            for name in environment.keys where name.hasPrefix("AWS_") { environment[name] = nil }
            environment["AWS_ACCESS_KEY_ID"] = server.accessKeyID
            environment["AWS_SECRET_ACCESS_KEY"] = server.secretAccessKey
            let drained = try await runTool(
                "spool-drain", ["--spool", spool, "--until-done", "--no-progress", "--log-format", "json"],
                environment: environment)
            #expect(drained.status == 0, "\(drained.stderr)")
            #expect(drained.stderr.contains("bucket configured"))

            let client = S3Client(
                configuration: S3Configuration(region: server.region, endpoint: server.endpoint),
                credentials: StaticCredentialsProvider(
                    AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: server.secretAccessKey)))
            #expect(try await client.getPublicAccessBlock(bucket) == .allBlocked)
            #expect(try await client.headObjectIfExists(bucket: bucket, key: "cli/b-1/_bundle.json") != nil)

            let after = try jsonObject(
                try await runTool("spool-inspect", ["status", "--spool", spool, "--json"]).stdout)
            let applied = try #require((after["destinations"] as? [[String: Any]])?.first)
            #expect(applied["bucket_setup"] as? String == "applied")
            #expect(applied["bucket_setup_applied_at"] is Int)
            #expect(applied["paused"] as? Bool == false)

            let human = try await runTool("spool-inspect", ["status", "--spool", spool])
            #expect(human.stdout.contains("Destinations:"))
            #expect(human.stdout.split(separator: "\n").contains { $0.contains(bucket) && $0.contains(" applied ") })

            let show = try await runTool("spool-inspect", ["show", "1", "--spool", spool])
            #expect(
                show.stdout.split(separator: "\n").contains { $0.hasPrefix("bucket set-up ") && $0.contains("applied") }
            )
            let showJSON = try jsonObject(
                try await runTool("spool-inspect", ["show", "1", "--spool", spool, "--json"]).stdout)
            let setup = try #require((showJSON["destination"] as? [String: Any])?["bucket_setup"] as? [String: Any])
            #expect(setup["applied_at"] is Int)
            #expect((setup["settings"] as? [String: String])?["create_bucket"] == "true")

            let audit = try await runTool(
                "spool-inspect", ["audit", "--spool", spool, "--json", "--action", "destination.bucket_configured"])
            #expect(audit.stdout.split(separator: "\n").count == 1)
            #expect(audit.stdout.contains("\"public_access_block\":\"blocked\""))

            // A second run finds the set-up recorded and leaves the bucket alone.
            let again = try await runTool(
                "spool-drain", ["--spool", spool, "--once", "--no-progress", "--log-format", "json"],
                environment: environment)
            #expect(again.status == 0)
            #expect(!again.stderr.contains("bucket configured"))
        }
    }
}
