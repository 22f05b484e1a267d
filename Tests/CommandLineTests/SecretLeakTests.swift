import Foundation
@testable import LocalS3Support
import Testing

/// No secret reaches a log line, an error, a metric, the audit trail or the spool's own files: a drain runs at the
/// most verbose log level with known secrets — first with a wrong secret and a session token (so error paths run and
/// log), then with the right secret — and every output is searched for them.
@Suite("Secrets never leak", .serialized)
struct SecretLeakTests {
    /// The strings that must never appear, with a recognisable fragment of each (a leak may be partial).
    private static func fragments(of secrets: [String]) -> [String] {
        secrets.flatMap { [$0, String($0.prefix(16)), String($0.suffix(16))] }
    }

    @Test("a drain at trace level, failing then succeeding, never prints, records or exports a secret")
    func drainAtTraceLevel() async throws {
        try await withTemporaryDirectory(prefix: "secret-leak") { directory in
            var scenario = try await DrainScenario.make(directory: directory)
            try await scenario.load(
                endpoint: scenario.server.endpoint, bundles: 2, resources: 3, minSize: "100", maxSize: "6MiB",
                seed: 11)
            let wrongSecret = "WrongSecret+" + UUID().uuidString.replacingOccurrences(of: "-", with: "")
            let sessionToken = "SessionToken/" + UUID().uuidString + UUID().uuidString
            let metricsFile = directory + "/metrics.prom"
            var outputs: [(name: String, text: String)] = []

            // 1. A session token S3 refuses, then a wrong secret: every request is refused, the destination pauses,
            //    and the refusals are logged.
            for (token, expectedCode) in [(sessionToken, "InvalidToken"), (nil, "SignatureDoesNotMatch")] {
                var failing = scenario.drainerEnvironment
                failing["AWS_SECRET_ACCESS_KEY"] = wrongSecret
                failing["AWS_SESSION_TOKEN"] = token
                let refused = try await runTool(
                    "spool-drain",
                    [
                        "--spool", scenario.spoolDirectory, "--once", "--log-level", "trace", "--log-format", "json",
                        "--no-progress", "--metrics-file", metricsFile,
                    ], environment: failing)
                outputs.append(("refused drain (\(expectedCode)) stdout", refused.stdout))
                outputs.append(("refused drain (\(expectedCode)) log", refused.stderr))
                #expect(
                    refused.stderr.contains(expectedCode),
                    "the failing drain should have logged \(expectedCode): \(refused.stderr.suffix(2000))")
                outputs.append(
                    (
                        "metrics after the refused drain",
                        (try? String(contentsOfFile: metricsFile, encoding: .utf8)) ?? ""
                    ))
            }

            // 2. The right secret: everything is delivered.
            let delivered = try await runTool(
                "spool-drain",
                [
                    "--spool", scenario.spoolDirectory, "--until-done", "--log-level", "trace", "--log-format",
                    "text", "--no-progress", "--metrics-file", metricsFile,
                ], environment: scenario.drainerEnvironment)
            outputs.append(("delivering drain stdout", delivered.stdout))
            outputs.append(("delivering drain log", delivered.stderr))
            try #require(delivered.status == 0, "spool-drain: \(delivered.stderr.suffix(2000))")
            try await verifyDeliveredExactlyOnce(scenario)
            outputs.append(("metrics", try String(contentsOfFile: metricsFile, encoding: .utf8)))

            // 3. What an operator sees.
            for arguments in [
                ["status"], ["status", "--json"], ["list", "--all"], ["list", "--all", "--json"], ["stuck", "--json"],
                ["audit", "--json"], ["audit"], ["metrics"], ["verify", "--json"],
            ] {
                let result = try await runTool(
                    "spool-inspect", arguments + ["--spool", scenario.spoolDirectory],
                    environment: scenario.drainerEnvironment)
                outputs.append(("spool-inspect \(arguments.joined(separator: " "))", result.stdout + result.stderr))
            }
            #expect(
                outputs.contains { $0.name == "spool-inspect audit --json" && $0.text.contains("resource.delivered") })

            // 4. The spool's own files: the index, its WAL, everything under the directory.
            outputs += Self.spoolFiles(scenario.spoolDirectory)
            Self.expectNoSecret([scenario.server.secretAccessKey, wrongSecret, sessionToken], in: outputs)
            #expect(outputs.count > 12)
        }
    }

    @Test("a drain through a profile that assumes a role (STS session credentials) never shows them either")
    func drainThroughAnAssumedRole() async throws {
        try await withTemporaryDirectory(prefix: "secret-leak-role") { directory in
            var scenario = try await DrainScenario.make(directory: directory)
            try await scenario.load(
                endpoint: scenario.server.endpoint, bundles: 2, resources: 3, minSize: "100", maxSize: "64KiB",
                seed: 12)
            let iam = try MotoIAM(scenario.server)
            let user = try await iam.createUser(uniquePrefix("leak-user"), keys: 1, actions: ["sts:AssumeRole"])[0]
            let roleARN = try await iam.createRole(uniquePrefix("leak-role"))
            try Data(
                """
                [profile leak]
                role_arn = \(roleARN)
                source_profile = base
                role_session_name = leak-test
                """.utf8
            ).write(to: URL(fileURLWithPath: directory + "/config"))
            try Data(
                """
                [base]
                aws_access_key_id = \(user.accessKeyID)
                aws_secret_access_key = \(user.secretAccessKey)
                """.utf8
            ).write(to: URL(fileURLWithPath: directory + "/credentials"))
            var environment = scenario.drainerEnvironment
            environment["AWS_ACCESS_KEY_ID"] = nil
            environment["AWS_SECRET_ACCESS_KEY"] = nil
            environment.merge([
                "HOME": directory, "AWS_CONFIG_FILE": directory + "/config",
                "AWS_SHARED_CREDENTIALS_FILE": directory + "/credentials", "AWS_PROFILE": "leak",
                "AWS_ENDPOINT_URL_STS": scenario.server.endpoint, "AWS_EC2_METADATA_DISABLED": "true",
            ]) { $1 }
            let drained = try await runTool(
                "spool-drain",
                [
                    "--spool", scenario.spoolDirectory, "--until-done", "--log-level", "trace", "--log-format", "json",
                    "--no-progress", "--metrics-file", directory + "/metrics.prom",
                ], environment: environment)
            try #require(drained.status == 0, "spool-drain: \(drained.stderr.suffix(2000))")
            try await verifyDeliveredExactlyOnce(scenario)
            #expect(drained.stderr.contains("credentials resolved"), "the chain says which provider answered")
            var outputs = [("drain log", drained.stderr), ("drain stdout", drained.stdout)]
            outputs.append(
                ("metrics", (try? String(contentsOfFile: directory + "/metrics.prom", encoding: .utf8)) ?? ""))
            let audit = try await runTool("spool-inspect", ["audit", "--json", "--spool", scenario.spoolDirectory])
            outputs.append(("audit", audit.stdout + audit.stderr))
            outputs += Self.spoolFiles(scenario.spoolDirectory)
            // moto's STS session tokens start with this (base64 of a fixed header); the secret of the source profile.
            Self.expectNoSecret([user.secretAccessKey], in: outputs)
            for output in outputs where output.1.contains("FQoGZXIvYXdzE") {
                Issue.record("an STS session token appears in \(output.0)")
            }
        }
    }

    /// The text of every file under the spool directory (index, WAL, payloads).
    private static func spoolFiles(_ spool: String) -> [(name: String, text: String)] {
        var outputs: [(name: String, text: String)] = []
        guard let files = FileManager.default.enumerator(atPath: spool) else { return [] }
        for case let relative as String in files {
            let path = spool + "/" + relative
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
                let data = FileManager.default.contents(atPath: path)
            else { continue }
            outputs.append(("spool file \(relative)", String(decoding: data, as: UTF8.self)))
        }
        return outputs
    }

    private static func expectNoSecret(_ secrets: [String], in outputs: [(name: String, text: String)]) {
        for output in outputs {
            for fragment in fragments(of: secrets) where output.text.contains(fragment) {
                Issue.record("a secret (\(fragment.prefix(4))…) appears in \(output.name)")
            }
        }
    }
}
