import Foundation
import Hashing
import S3
import Testing

@testable import LocalS3Support

/// Prometheus text read back: `name{labels} value` samples; `# TYPE` lines by family. Strict enough to catch a
/// malformed line (a test fails on it).
struct ExposedMetrics {
    var samples: [(name: String, labels: [String: String], value: Double)] = []
    var types: [String: String] = [:]

    init(_ text: String) throws {
        for line in text.split(separator: "\n").map(String.init) {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                try #require(parts.count == 4, "TYPE line: \(line)")
                types[String(parts[2])] = String(parts[3])
                continue
            }
            if line.hasPrefix("#") { continue }
            let name = String(line.prefix { $0 != "{" && $0 != " " })
            var labels: [String: String] = [:]
            var rest = Substring(line.dropFirst(name.count))
            if rest.hasPrefix("{") {
                rest = rest.dropFirst()
                while !rest.hasPrefix("}") {
                    let labelName = String(rest.prefix { $0 != "=" })
                    rest = rest.dropFirst(labelName.count)
                    try #require(rest.hasPrefix("=\""), "label syntax: \(line)")
                    rest = rest.dropFirst(2)
                    var value = ""
                    while let character = rest.first, character != "\"" {
                        if character == "\\" {
                            rest = rest.dropFirst()
                            let escaped = try #require(rest.first, "dangling escape: \(line)")
                            value.append(escaped == "n" ? "\n" : escaped)
                        } else {
                            value.append(character)
                        }
                        rest = rest.dropFirst()
                    }
                    try #require(rest.first == "\"", "unterminated label value: \(line)")
                    rest = rest.dropFirst()
                    labels[labelName] = value
                    if rest.hasPrefix(",") { rest = rest.dropFirst() }
                    try #require(!rest.isEmpty, "unterminated labels: \(line)")
                }
                rest = rest.dropFirst()
            }
            try #require(rest.hasPrefix(" "), "no value: \(line)")
            let text = String(rest.dropFirst())
            let value = try #require(text == "+Inf" ? .infinity : Double(text), "value of: \(line)")
            let family =
                ["_bucket", "_sum", "_count"].first {
                    name.hasSuffix($0) && types[String(name.dropLast($0.count))] == "histogram"
                }
                .map { String(name.dropLast($0.count)) } ?? name
            try #require(types[family] != nil, "sample before its TYPE: \(line)")
            samples.append((name, labels, value))
        }
    }

    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }

    func has(_ name: String) -> Bool { samples.contains { $0.name == name } }
}

@Suite("spool-inspect metrics and spool-drain --metrics-file, --emf-file, --cloudwatch-namespace")
struct MetricsCommandTests {
    /// Spools `count` resources into `bundle` for the directory target, sealed; their keys and sizes.
    func put(
        spool: String, target: String, bundle: String, count: Int, seal: Bool = true, sizeBase: Int = 100
    ) async throws -> [(key: String, size: Int)] {
        var written: [(key: String, size: Int)] = []
        for index in 0..<count {
            let size = sizeBase + index * 37
            let result = try await runTool(
                "spool-put",
                [
                    "--spool", spool, "--bundle", bundle, "--url", "https://example.com/\(bundle)/\(index).bin",
                    "--directory", target, "--json",
                ] + (seal && index == count - 1 ? ["--seal"] : []),
                stdin: Data(repeating: UInt8(index), count: size))
            try #require(result.status == 0, "spool-put: \(result.stderr)")
            let object = try jsonObject(result.stdout)
            let resource = try #require(object["resource"] as? [String: Any])
            written.append((try #require(resource["object_key"] as? String), size))
        }
        return written
    }

    @Test("spool-inspect metrics on a spool with pending, failed (conflict) and done resources matches status --json")
    func inspectMetrics() async throws {
        try await withTemporaryDirectory(prefix: "metrics-inspect") { directory in
            let spool = directory + "/spool"
            let target = directory + "/target"
            let delivered = try await put(spool: spool, target: target, bundle: "m1", count: 4)
            // A different object already holds the third key: that resource fails with `conflict`.
            let taken = delivered[2]
            try FileManager.default.createDirectory(
                atPath: (target + "/" + taken.key as NSString).deletingLastPathComponent,
                withIntermediateDirectories: true)
            try Data("someone else's bytes".utf8).write(to: URL(fileURLWithPath: target + "/" + taken.key))
            let drained = try await runTool("spool-drain", ["--spool", spool, "--once", "--log-level", "error"])
            try #require(drained.status == 0, "spool-drain: \(drained.stderr)")
            let pending = try await put(
                spool: spool, target: target, bundle: "m2", count: 2, seal: false, sizeBase: 1_000)

            let result = try await runTool("spool-inspect", ["metrics", "--spool", spool])
            try #require(result.status == 0, "spool-inspect metrics: \(result.stderr)")
            let metrics = try ExposedMetrics(result.stdout)
            let status = try jsonObject(
                try await runTool("spool-inspect", ["status", "--spool", spool, "--json"]).stdout)

            for total in try #require(status["resources"] as? [[String: Any]]) {
                let state = try #require(total["state"] as? String)
                #expect(
                    metrics.value("pipeline_storage_resources", ["state": state])
                        == (total["count"] as? NSNumber)?.doubleValue)
                #expect(
                    metrics.value("pipeline_storage_resource_bytes", ["state": state])
                        == (total["bytes"] as? NSNumber)?.doubleValue)
            }
            #expect(metrics.value("pipeline_storage_resources", ["state": "done"]) == 3)
            #expect(metrics.value("pipeline_storage_resources", ["state": "failed"]) == 1)
            #expect(metrics.value("pipeline_storage_resources", ["state": "pending"]) == 2)
            #expect(metrics.value("pipeline_storage_pending_bytes") == Double(pending.reduce(0) { $0 + $1.size }))
            #expect((metrics.value("pipeline_storage_oldest_pending_age_seconds") ?? -1) >= 0)
            #expect(metrics.value("pipeline_storage_failed_resources", ["code": "conflict"]) == 1)
            #expect(metrics.value("pipeline_storage_held_bytes") == (status["held_bytes"] as? NSNumber)?.doubleValue)
            #expect(metrics.value("pipeline_storage_bundles", ["state": "sealed"]) == 1, "m1 waits for its failed one")
            #expect(metrics.value("pipeline_storage_bundles", ["state": "open"]) == 1)
            #expect(metrics.value("pipeline_storage_manifests_pending") == 1)
            #expect(metrics.value("pipeline_storage_destination_paused", ["destination": "file://" + target]) == 0)
            #expect(metrics.value("pipeline_storage_destinations_paused") == 0)

            // From the audit trail.
            let deliveredBytes = delivered.enumerated().filter { $0.offset != 2 }.reduce(0) { $0 + $1.element.size }
            #expect(metrics.value("pipeline_storage_uploads_total", ["kind": "resource", "result": "delivered"]) == 3)
            #expect(metrics.value("pipeline_storage_uploads_total", ["kind": "resource", "result": "conflict"]) == 1)
            #expect(metrics.value("pipeline_storage_uploads_total", ["kind": "resource", "result": "failed"]) == 0)
            #expect(metrics.value("pipeline_storage_uploads_total", ["kind": "manifest", "result": "delivered"]) == 0)
            #expect(
                metrics.value("pipeline_storage_uploaded_bytes_total", ["kind": "resource"]) == Double(deliveredBytes))
            #expect(metrics.value("pipeline_storage_conflicts_total") == 1)
            #expect(metrics.value("pipeline_storage_failures_total", ["code": "conflict"]) == 1)
            #expect(metrics.value("pipeline_storage_leases_reclaimed_total") == 0)
            #expect(metrics.types["pipeline_storage_uploads_total"] == "counter")
            #expect(metrics.types["pipeline_storage_resources"] == "gauge")
            #expect(!metrics.samples.contains { $0.labels.values.contains { $0.contains("example.com") } })

            // Gauges only, and to a file.
            let gauges = try await runTool("spool-inspect", ["metrics", "--spool", spool, "--gauges-only"])
            #expect(gauges.status == 0)
            let onlyGauges = try ExposedMetrics(gauges.stdout)
            #expect(onlyGauges.has("pipeline_storage_resources") && !onlyGauges.has("pipeline_storage_uploads_total"))
            let file = directory + "/spool.prom"
            let written = try await runTool("spool-inspect", ["metrics", "--spool", spool, "--output", file])
            #expect(written.status == 0 && written.stdout.isEmpty)
            let fromFile = try ExposedMetrics(try String(contentsOfFile: file, encoding: .utf8))
            #expect(fromFile.value("pipeline_storage_conflicts_total") == 1)

            let missing = try await runTool("spool-inspect", ["metrics", "--spool", directory + "/nowhere"])
            #expect(missing.status == 2)
            #expect(missing.stderr.hasPrefix("spool-inspect: "))
        }
    }

    @Test("spool-drain --once --metrics-file writes a parseable file with the delivered count and bytes")
    func drainMetricsFile() async throws {
        try await withTemporaryDirectory(prefix: "metrics-drain") { directory in
            let spool = directory + "/spool"
            let target = directory + "/target"
            let first = try await put(spool: spool, target: target, bundle: "d1", count: 5)
            let second = try await put(spool: spool, target: target, bundle: "d2", count: 3, sizeBase: 5_000)
            let file = directory + "/metrics/drain.prom"
            try FileManager.default.createDirectory(
                atPath: directory + "/metrics", withIntermediateDirectories: true)
            let emf = directory + "/metrics/drain.emf"
            let result = try await runTool(
                "spool-drain",
                [
                    "--spool", spool, "--once", "--metrics-file", file, "--metrics-interval", "1", "--emf-file", emf,
                    "--log-level", "warning",
                ])
            try #require(result.status == 0, "spool-drain: \(result.stderr)")
            let metrics = try ExposedMetrics(try String(contentsOfFile: file, encoding: .utf8))
            let all = first + second
            #expect(metrics.value("pipeline_storage_uploads_total", ["kind": "resource", "result": "delivered"]) == 8)
            #expect(metrics.value("pipeline_storage_uploads_total", ["kind": "manifest", "result": "delivered"]) == 2)
            #expect(
                metrics.value("pipeline_storage_uploaded_bytes_total", ["kind": "resource"])
                    == Double(all.reduce(0) { $0 + $1.size }))
            #expect(metrics.value("pipeline_storage_upload_duration_seconds_count", ["kind": "resource"]) == 8)
            #expect(
                metrics.value("pipeline_storage_upload_duration_seconds_bucket", ["kind": "resource", "le": "+Inf"])
                    == 8)
            #expect(metrics.types["pipeline_storage_upload_duration_seconds"] == "histogram")
            #expect(metrics.value("pipeline_storage_resources", ["state": "done"]) == 8, "gauges from the end state")
            #expect(metrics.value("pipeline_storage_resources", ["state": "pending"]) == 0)
            #expect(metrics.value("pipeline_storage_bundles", ["state": "delivered"]) == 2)
            #expect(metrics.value("pipeline_storage_uploads_in_flight") == 0)
            #expect(
                (try FileManager.default.contentsOfDirectory(atPath: directory + "/metrics")).sorted()
                    == ["drain.emf", "drain.prom"], "no temporary file left")

            let lines = try String(contentsOfFile: emf, encoding: .utf8).split(separator: "\n")
            #expect(!lines.isEmpty)
            // Counters go as their increase per interval: the lines add up to the total.
            var deliveredInEMF = 0
            for line in lines {
                let object = try jsonObject(String(line))
                let aws = try #require(object["_aws"] as? [String: Any])
                let directive = try #require((aws["CloudWatchMetrics"] as? [[String: Any]])?.first)
                #expect(directive["Namespace"] as? String == "PipelineStorage")
                if object["kind"] as? String == "resource", object["result"] as? String == "delivered" {
                    deliveredInEMF += (object["pipeline_storage_uploads_total"] as? NSNumber)?.intValue ?? 0
                }
            }
            #expect(deliveredInEMF == 8)

            let bad = try await runTool("spool-drain", ["--spool", spool, "--once", "--metrics-interval", "0"])
            #expect(bad.status == 64)
            let clash = try await runTool(
                "spool-drain", ["--spool", spool, "--once", "--cloudwatch-dimension", "kind=x"])
            #expect(clash.status == 64)
            #expect(clash.stderr.contains("label of the metrics"))
        }
    }

    @Test("spool-drain --cloudwatch-namespace sends PutMetricData to AWS_ENDPOINT_URL_CLOUDWATCH (moto)")
    func drainToCloudWatch() async throws {
        let server = try await LocalS3.shared.server()
        try await withTemporaryDirectory(prefix: "metrics-cloudwatch") { directory in
            let spool = directory + "/spool"
            _ = try await put(spool: spool, target: directory + "/target", bundle: "c1", count: 3)
            let namespace = "PipelineStorageCLITests/" + UUID().uuidString.prefix(8)
            let result = try await runTool(
                "spool-drain",
                [
                    "--spool", spool, "--once", "--cloudwatch-namespace", namespace, "--cloudwatch-dimension",
                    "Host=cli-test", "--log-level", "warning",
                ],
                environment: [
                    "AWS_ACCESS_KEY_ID": server.accessKeyID, "AWS_SECRET_ACCESS_KEY": server.secretAccessKey,
                    "AWS_REGION": server.region, "AWS_ENDPOINT_URL_CLOUDWATCH": server.endpoint,
                    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                ])
            try #require(result.status == 0, "spool-drain: \(result.stderr)")
            #expect(!result.stderr.contains("PutMetricData failed"), "\(result.stderr)")

            let now = Date()
            func iso(_ date: Date) -> String {
                let formatter = ISO8601DateFormatter()
                return formatter.string(from: date)
            }
            let parameters: [(String, String)] = [
                ("Action", "GetMetricStatistics"), ("Version", "2010-08-01"), ("Namespace", namespace),
                ("MetricName", "pipeline_storage_uploads_total"), ("StartTime", iso(now.addingTimeInterval(-3600))),
                ("EndTime", iso(now.addingTimeInterval(3600))), ("Period", "7200"), ("Statistics.member.1", "Sum"),
                ("Dimensions.member.1.Name", "Host"), ("Dimensions.member.1.Value", "cli-test"),
                ("Dimensions.member.2.Name", "kind"), ("Dimensions.member.2.Value", "resource"),
                ("Dimensions.member.3.Name", "result"), ("Dimensions.member.3.Value", "delivered"),
            ]
            let body = Array(
                parameters.map { URIEncoding.encode($0.0) + "=" + URIEncoding.encode($0.1) }.joined(separator: "&").utf8
            )
            let headers: [(name: String, value: String)] = [
                ("Host", String(server.endpoint.dropFirst("http://".count))),
                ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
            ]
            let signed = SigV4Signer(service: "monitoring", region: server.region).sign(
                SigV4Signer.Request(method: "POST", path: "/", headers: headers),
                payload: .sha256Hex(SHA256Hasher.hexDigest(body)),
                credentials: AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: server.secretAccessKey),
                date: Date())
            let response = try await CurlTransport().execute(
                HTTPRequest(method: "POST", url: server.endpoint + "/", headers: headers + signed, body: .bytes(body)))
            try #require(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
            let root = try XMLNode.parse(response.body)
            let points = root.child("GetMetricStatisticsResult")?.child("Datapoints")?.children("member") ?? []
            let sum = points.compactMap { $0.string("Sum").flatMap(Double.init) }.reduce(0, +)
            #expect(sum == 3, "the delivered count, sent once at exit")
        }
    }
}
