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
            try scenario.load(
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
                let refused = try runTool(
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
                    ("metrics after the refused drain", (try? String(contentsOfFile: metricsFile, encoding: .utf8)) ?? ""))
            }

            // 2. The right secret: everything is delivered.
            let delivered = try runTool(
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
                let result = try runTool(
                    "spool-inspect", arguments + ["--spool", scenario.spoolDirectory],
                    environment: scenario.drainerEnvironment)
                outputs.append(("spool-inspect \(arguments.joined(separator: " "))", result.stdout + result.stderr))
            }
            #expect(outputs.contains { $0.name == "spool-inspect audit --json" && $0.text.contains("resource.delivered") })

            // 4. The spool's own files: the index, its WAL, everything under the directory.
            if let files = FileManager.default.enumerator(atPath: scenario.spoolDirectory) {
                for case let relative as String in files {
                    let path = scenario.spoolDirectory + "/" + relative
                    var isDirectory: ObjCBool = false
                    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
                        let data = FileManager.default.contents(atPath: path)
                    else { continue }
                    outputs.append(("spool file \(relative)", String(decoding: data, as: UTF8.self)))
                }
            }

            let secrets = [scenario.server.secretAccessKey, wrongSecret, sessionToken]
            for output in outputs {
                for fragment in Self.fragments(of: secrets) where output.text.contains(fragment) {
                    Issue.record("a secret (\(fragment.prefix(4))…) appears in \(output.name)")
                }
            }
            #expect(outputs.count > 12)
        }
    }
}
