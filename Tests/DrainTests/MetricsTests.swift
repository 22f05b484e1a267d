import Foundation
import Hashing
import PipelineStorage
import Testing

@testable import Drain
@testable import S3
@testable import LocalS3Support
@testable import Spool

// MARK: Reading Prometheus text back

/// Prometheus text exposition 0.0.4, parsed strictly: every sample belongs to a family whose `# TYPE` came first,
/// label values are unescaped, values read as Prometheus reads them.
struct PrometheusText {
    struct Sample: Hashable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    struct ParseError: Error, CustomStringConvertible {
        var line: String
        var reason: String
        var description: String { "\(reason): \(line)" }
    }

    var samples: [Sample] = []
    var types: [String: String] = [:]
    var helps: [String: String] = [:]

    init(_ text: String) throws {
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.isEmpty { continue }
            if line.hasPrefix("# HELP ") {
                let rest = line.dropFirst(7)
                let name = String(rest.prefix { $0 != " " })
                helps[name] = String(rest.dropFirst(name.count + 1))
                continue
            }
            if line.hasPrefix("# TYPE ") {
                let parts = line.dropFirst(7).split(separator: " ")
                guard parts.count == 2, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[1])
                else {
                    throw ParseError(line: line, reason: "bad TYPE line")
                }
                guard types[String(parts[0])] == nil else { throw ParseError(line: line, reason: "TYPE twice") }
                types[String(parts[0])] = String(parts[1])
                continue
            }
            if line.hasPrefix("#") { continue }
            samples.append(try Self.sample(line))
            let name = samples.last!.name
            let family =
                types[name] != nil
                ? name
                : ["_bucket", "_sum", "_count"].compactMap { suffix in
                    name.hasSuffix(suffix) ? String(name.dropLast(suffix.count)) : nil
                }.first { types[$0] == "histogram" }
            guard family != nil else { throw ParseError(line: line, reason: "sample before its TYPE") }
        }
    }

    private static func sample(_ line: String) throws -> Sample {
        var characters = Array(line)
        var index = 0
        var name = ""
        while index < characters.count, characters[index] != "{", characters[index] != " " {
            name.append(characters[index])
            index += 1
        }
        var labels: [String: String] = [:]
        if index < characters.count, characters[index] == "{" {
            index += 1
            while index < characters.count, characters[index] != "}" {
                var labelName = ""
                while index < characters.count, characters[index] != "=" {
                    labelName.append(characters[index])
                    index += 1
                }
                guard index + 1 < characters.count, characters[index + 1] == "\"" else {
                    throw ParseError(line: line, reason: "label value not quoted")
                }
                index += 2
                var value = ""
                while index < characters.count, characters[index] != "\"" {
                    if characters[index] == "\\" {
                        index += 1
                        guard index < characters.count else { throw ParseError(line: line, reason: "dangling escape") }
                        switch characters[index] {
                        case "n": value.append("\n")
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        default: throw ParseError(line: line, reason: "unknown escape")
                        }
                    } else {
                        value.append(characters[index])
                    }
                    index += 1
                }
                guard index < characters.count else { throw ParseError(line: line, reason: "unterminated value") }
                index += 1
                guard labels[labelName] == nil else { throw ParseError(line: line, reason: "label twice") }
                labels[labelName] = value
                if index < characters.count, characters[index] == "," { index += 1 }
            }
            guard index < characters.count else { throw ParseError(line: line, reason: "unterminated labels") }
            index += 1
        }
        guard index < characters.count, characters[index] == " " else {
            throw ParseError(line: line, reason: "no value")
        }
        characters.removeFirst(index + 1)
        let text = String(characters)
        let value: Double
        switch text {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default:
            guard let parsed = Double(text) else { throw ParseError(line: line, reason: "bad value") }
            value = parsed
        }
        return Sample(name: name, labels: labels, value: value)
    }

    /// The value of the sample with exactly these labels.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }

    /// The sum of the samples of `name` whose labels include `labels`.
    func sum(_ name: String, _ labels: [String: String] = [:]) -> Double {
        samples.filter { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }
            .reduce(0) { $0 + $1.value }
    }
}

// MARK: A signed Query API call to moto's CloudWatch

/// One CloudWatch Query API call (`Action=...&Version=2010-08-01`, form-encoded POST) to the local moto server,
/// signed with SigV4 for `monitoring`: how the tests read back what the client sent.
func cloudWatchQuery(_ server: LocalS3.Server, _ parameters: [(String, String)]) async throws -> XMLNode {
    let body = ([("Version", "2010-08-01")] + parameters)
        .map { URIEncoding.encode($0.0) + "=" + URIEncoding.encode($0.1) }.joined(separator: "&")
    let bytes = Array(body.utf8)
    let host = String(server.endpoint.dropFirst("http://".count))
    let headers: [(name: String, value: String)] = [
        ("Host", host), ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
    ]
    let signed = SigV4Signer(service: "monitoring", region: server.region).sign(
        SigV4Signer.Request(method: "POST", path: "/", headers: headers),
        payload: .sha256Hex(SHA256Hasher.hexDigest(bytes)),
        credentials: AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: server.secretAccessKey),
        date: Date())
    let response = try await CurlTransport().execute(
        HTTPRequest(method: "POST", url: server.endpoint + "/", headers: headers + signed, body: .bytes(bytes)))
    let text = String(decoding: response.body, as: UTF8.self)
    try #require(response.status == 200, "CloudWatch \(parameters.first?.1 ?? ""): HTTP \(response.status): \(text)")
    return try XMLNode.parse(response.body)
}

/// GetMetricStatistics over the last and next hour: the datapoints' statistics, summed over the datapoints.
func metricStatistics(
    _ server: LocalS3.Server, namespace: String, name: String, dimensions: [(String, String)] = [],
    statistics: [String] = ["Sum", "SampleCount", "Minimum", "Maximum"]
) async throws -> [String: Double] {
    let now = Date()
    var parameters: [(String, String)] = [
        ("Action", "GetMetricStatistics"), ("Namespace", namespace), ("MetricName", name),
        ("StartTime", MetricDatum.iso8601(now.addingTimeInterval(-3600))),
        ("EndTime", MetricDatum.iso8601(now.addingTimeInterval(3600))), ("Period", "7200"),
    ]
    for (index, statistic) in statistics.enumerated() {
        parameters.append(("Statistics.member.\(index + 1)", statistic))
    }
    for (index, dimension) in dimensions.enumerated() {
        parameters.append(("Dimensions.member.\(index + 1).Name", dimension.0))
        parameters.append(("Dimensions.member.\(index + 1).Value", dimension.1))
    }
    let root = try await cloudWatchQuery(server, parameters)
    let datapoints = root.child("GetMetricStatisticsResult")?.child("Datapoints")?.children("member") ?? []
    var result: [String: Double] = [:]
    for point in datapoints {
        for statistic in statistics {
            guard let value = point.string(statistic).flatMap(Double.init) else { continue }
            switch statistic {
            case "Minimum": result[statistic] = min(result[statistic] ?? value, value)
            case "Maximum": result[statistic] = max(result[statistic] ?? value, value)
            default: result[statistic, default: 0] += value
            }
        }
    }
    return result
}

/// ListMetrics of a namespace: metric name → the dimension sets seen.
func listedMetrics(_ server: LocalS3.Server, namespace: String) async throws -> [String: [[String: String]]] {
    var result: [String: [[String: String]]] = [:]
    var token: String?
    repeat {
        var parameters = [("Action", "ListMetrics"), ("Namespace", namespace)]
        if let token { parameters.append(("NextToken", token)) }
        let root = try await cloudWatchQuery(server, parameters)
        let listed = root.child("ListMetricsResult")
        for metric in listed?.child("Metrics")?.children("member") ?? [] {
            var dimensions: [String: String] = [:]
            for dimension in metric.child("Dimensions")?.children("member") ?? [] {
                dimensions[dimension.string("Name") ?? ""] = dimension.string("Value") ?? ""
            }
            result[metric.string("MetricName") ?? "", default: []].append(dimensions)
        }
        token = listed?.string("NextToken").flatMap { $0.isEmpty ? nil : $0 }
    } while token != nil
    return result
}

func uniqueNamespace(_ tag: String) -> String { "PipelineStorageTests/\(tag)/" + UUID().uuidString.prefix(8) }

// MARK: Tests

@Suite("Metrics: registry, Prometheus text, drainer counters, spool gauges, CloudWatch and EMF")
struct MetricsTests {
    static let counter = MetricDescriptor(
        "test_things_total", .counter, help: "Things.", unit: .count, labelNames: ["kind"])
    static let gauge = MetricDescriptor("test_level_bytes", .gauge, help: "A level.", unit: .bytes)
    static let histogram = MetricDescriptor(
        "test_wait_seconds", .histogram, help: "Waits.", unit: .seconds, labelNames: ["kind"], buckets: [0.1, 1, 10])

    @Test("Counters and gauges: HELP, TYPE, one line per series ordered by label values, integers without a fraction")
    func countersAndGauges() throws {
        let registry = MetricsRegistry()
        registry.register([Self.counter, Self.gauge])
        registry.add(Self.counter, labels: ["kind": "b"])
        registry.add(Self.counter, 2, labels: ["kind": "a"])
        registry.add(Self.counter, 0.5, labels: ["kind": "a"])
        registry.set(Self.gauge, 1_234_567)
        #expect(
            registry.snapshot().prometheusText() == """
                # HELP test_things_total Things.
                # TYPE test_things_total counter
                test_things_total{kind="a"} 2.5
                test_things_total{kind="b"} 1
                # HELP test_level_bytes A level.
                # TYPE test_level_bytes gauge
                test_level_bytes 1234567

                """)
        registry.set(Self.gauge, -3)
        #expect(registry.snapshot().value("test_level_bytes") == -3)
        #expect(MetricsSnapshot.number(.infinity) == "+Inf")
        #expect(MetricsSnapshot.number(-.infinity) == "-Inf")
        #expect(MetricsSnapshot.number(.nan) == "NaN")
        #expect(MetricsSnapshot.number(0.005) == "0.005")
        #expect(MetricsSnapshot.number(1e-7) == "1e-07")
        #expect(Double(MetricsSnapshot.number(1e20)) == 1e20)
    }

    @Test("A registered family with no series shows HELP and TYPE only")
    func emptyFamily() {
        let registry = MetricsRegistry()
        registry.register([Self.counter])
        #expect(
            registry.snapshot().prometheusText()
                == "# HELP test_things_total Things.\n# TYPE test_things_total counter\n")
    }

    @Test("Label values escape backslash, double quote and line feed; help text escapes backslash and line feed")
    func escaping() throws {
        let descriptor = MetricDescriptor(
            "test_escape", .gauge, help: "Back\\slash and\nnew line.", unit: .none, labelNames: ["value"])
        let registry = MetricsRegistry()
        let nasty = "a\\b\"c\nd é"
        registry.set(descriptor, 1, labels: ["value": nasty])
        let text = registry.snapshot().prometheusText()
        #expect(text.contains(#"# HELP test_escape Back\\slash and\nnew line."#))
        #expect(text.contains(#"test_escape{value="a\\b\"c\nd é"} 1"#))
        let parsed = try PrometheusText(text)
        #expect(parsed.value("test_escape", ["value": nasty]) == 1, "the value reads back exactly")
    }

    @Test("Histograms: cumulative buckets ending at +Inf, _sum and _count; window extremes reset on request")
    func histograms() throws {
        let registry = MetricsRegistry()
        for value in [0.05, 0.1, 0.5, 2, 20, 30] { registry.observe(Self.histogram, value, labels: ["kind": "x"]) }
        registry.touch(Self.histogram, labels: ["kind": "y"])
        let snapshot = registry.snapshot(resettingWindows: true)
        let text = snapshot.prometheusText()
        #expect(
            text == """
                # HELP test_wait_seconds Waits.
                # TYPE test_wait_seconds histogram
                test_wait_seconds_bucket{kind="x",le="0.1"} 2
                test_wait_seconds_bucket{kind="x",le="1"} 3
                test_wait_seconds_bucket{kind="x",le="10"} 4
                test_wait_seconds_bucket{kind="x",le="+Inf"} 6
                test_wait_seconds_sum{kind="x"} 52.65
                test_wait_seconds_count{kind="x"} 6
                test_wait_seconds_bucket{kind="y",le="0.1"} 0
                test_wait_seconds_bucket{kind="y",le="1"} 0
                test_wait_seconds_bucket{kind="y",le="10"} 0
                test_wait_seconds_bucket{kind="y",le="+Inf"} 0
                test_wait_seconds_sum{kind="y"} 0
                test_wait_seconds_count{kind="y"} 0

                """)
        let parsed = try PrometheusText(text)
        #expect(parsed.types["test_wait_seconds"] == "histogram")
        let histogram = try #require(snapshot.family("test_wait_seconds")?.samples.first?.histogram)
        #expect(histogram.windowMinimum == 0.05 && histogram.windowMaximum == 30)
        let after = try #require(registry.snapshot().family("test_wait_seconds")?.samples.first?.histogram)
        #expect(after.windowMinimum == nil && after.count == 6, "the window restarted; the totals did not")
    }

    @Test("Concurrent updates from many tasks are all counted")
    func concurrentUpdates() async {
        let registry = MetricsRegistry()
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<16 {
                group.addTask {
                    for index in 0..<1_000 {
                        registry.add(Self.counter, labels: ["kind": task % 2 == 0 ? "even" : "odd"])
                        registry.observe(Self.histogram, Double(index % 20), labels: ["kind": "x"])
                    }
                }
            }
        }
        let snapshot = registry.snapshot()
        #expect(snapshot.value("test_things_total", ["kind": "even"]) == 8_000)
        #expect(snapshot.value("test_things_total") == 16_000)
        #expect(snapshot.family("test_wait_seconds")?.samples.first?.histogram?.count == 16_000)
    }

    @Test("Error codes as labels: value-free codes kept, anything else is 'other'")
    func codeLabels() {
        #expect(PipelineMetrics.codeLabel("SlowDown") == "SlowDown")
        #expect(PipelineMetrics.codeLabel("corrupt-payload") == "corrupt-payload")
        #expect(PipelineMetrics.codeLabel("KMS.AccessDeniedException") == "KMS.AccessDeniedException")
        #expect(PipelineMetrics.codeLabel("a message with spaces") == "other")
        #expect(PipelineMetrics.codeLabel("https://bucket.s3.amazonaws.com/key") == "other")
        #expect(PipelineMetrics.codeLabel("") == "other")
        #expect(PipelineMetrics.codeLabel(String(repeating: "A", count: 65)) == "other")
        let spec = try? DestinationSpec.s3(bucket: "my-bucket", endpoint: "http://127.0.0.1:9000")
        #expect(spec.map(PipelineMetrics.destinationLabel) == "s3://my-bucket", "no endpoint URL in a label")
    }

    @Test("Every metric is named by the conventions and documented in docs/METRICS.md")
    func catalogue() throws {
        let names = PipelineMetrics.all.map(\.name)
        #expect(Set(names).count == names.count)
        for descriptor in PipelineMetrics.all {
            #expect(descriptor.name.hasPrefix("pipeline_storage_"))
            #expect((descriptor.type == .counter) == descriptor.name.hasSuffix("_total"), "\(descriptor.name)")
            if descriptor.unit == .bytes { #expect(descriptor.name.contains("_bytes"), "\(descriptor.name)") }
            if descriptor.unit == .seconds { #expect(descriptor.name.contains("_seconds"), "\(descriptor.name)") }
        }
        let root = try #require(LocalS3.repositoryRoot)
        let documentation = try String(contentsOfFile: root + "/docs/METRICS.md", encoding: .utf8)
        for name in names { #expect(documentation.contains("`\(name)`"), "\(name) is not in docs/METRICS.md") }
        for result in PipelineMetrics.UploadResult.allCases {
            #expect(documentation.contains("`\(result.rawValue)`"), "result \(result.rawValue) is not documented")
        }
    }

    // MARK: A drainer's metrics against the spool

    @Test("A drain on file://: delivered, bytes, conflict, retries and a reclaimed lease, checked against the spool")
    func drainerMetricsMatchTheSpool() async throws {
        try await withTestDirectory { directory in
            let fixture = try await TargetFixture.make(.directory, in: directory, prefix: "")
            let sizes = [0, 1, 100, 5_000, 70_000, 300_000, 1 << 20, 12]
            let spooled = try await fixture.storage.withBundle("metrics-a") { bundle in
                var spooled: [SpooledResource] = []
                for (index, size) in sizes.enumerated() {
                    spooled.append(
                        try await bundle.writeResource(
                            url: "https://example.com/m/\(index)", contentType: "application/octet-stream",
                            statusCode: 200, bytes: content(size: size, seed: 900 + index)))
                }
                return spooled
            }
            let second = try await fixture.storage.withBundle("metrics-b") { bundle in
                [
                    try await bundle.writeResource(
                        url: "https://example.com/taken", contentType: "text/plain", statusCode: 200,
                        bytes: content(size: 2_000, seed: 950)),
                    try await bundle.writeResource(
                        url: "https://example.com/flaky", contentType: "text/plain", statusCode: 200,
                        bytes: content(size: 3_000, seed: 951)),
                ]
            }
            let taken = second[0]
            let flaky = second[1]
            // A different object already holds one key: a conflict, never overwritten.
            try await fixture.place(taken.objectKey, content(size: 2_000, seed: 999))
            // A lease left by a drainer elsewhere, expired: the next claim reclaims it.
            let stale = try await fixture.spool.claimDue(
                owner: "elsewhere/1/dead", limit: 1, leaseDuration: .milliseconds(1))
            #expect(stale.count == 1)
            try await Task.sleep(for: .milliseconds(20))
            // The flaky one fails twice with SlowDown before it goes through.
            let failures = Shared(0)
            let wrap: @Sendable (any ObjectStore) -> any ObjectStore = { base in
                InstrumentedStore(base) { call, key, _ in
                    guard call == .put, key == flaky.objectKey else { return }
                    if failures.update({ count -> Int in
                        count += 1
                        return count
                    }) <= 2 {
                        throw ObjectStoreError(.transient, code: "SlowDown", message: "slow down (test)")
                    }
                }
            }

            let metrics = DrainMetrics()
            let drainer = Drainer(
                spool: fixture.spool, options: testDrainOptions(), logger: testLogger(), metrics: metrics,
                resolveStore: fixture.resolve(wrap: wrap))
            let progress = try await drainer.run()
            let file = directory.path + "/drain.prom"
            var reporterOptions = MetricsReporterOptions()
            reporterOptions.prometheusFile = file
            let reporter = MetricsReporter(
                spool: fixture.spool, metrics: metrics, options: reporterOptions, logger: testLogger())
            await reporter.publish()

            let text = try String(contentsOfFile: file, encoding: .utf8)
            let parsed = try PrometheusText(text)
            let status = try await fixture.spool.status()
            let rows = try await fixture.spool.allRows()
            let done = rows.filter { $0.kind == .resource && $0.state == .done }
            #expect(done.count == sizes.count + 1)
            #expect(status.count(.failed) == 1)

            // Drainer counters.
            let delivered = ["kind": "resource", "result": "delivered"]
            #expect(parsed.value("pipeline_storage_uploads_total", delivered) == Double(done.count))
            #expect(Double(progress.delivered) == parsed.sum("pipeline_storage_uploads_total", ["result": "delivered"]))
            #expect(
                parsed.value("pipeline_storage_uploaded_bytes_total", ["kind": "resource"])
                    == Double(done.reduce(0) { $0 + $1.size }))
            #expect(
                parsed.value("pipeline_storage_upload_duration_seconds_count", ["kind": "resource"])
                    == Double(done.count))
            #expect(
                parsed.value("pipeline_storage_upload_duration_seconds_bucket", ["kind": "resource", "le": "+Inf"])
                    == Double(done.count))
            #expect((parsed.value("pipeline_storage_upload_duration_seconds_sum", ["kind": "resource"]) ?? 0) > 0)
            #expect(parsed.value("pipeline_storage_uploads_total", ["kind": "resource", "result": "conflict"]) == 1)
            #expect(parsed.value("pipeline_storage_uploads_total", ["kind": "resource", "result": "failed"]) == 0)
            #expect(parsed.value("pipeline_storage_conflicts_total") == 1)
            #expect(parsed.value("pipeline_storage_failures_total", ["code": "conflict"]) == 1)
            #expect(parsed.value("pipeline_storage_uploads_total", ["kind": "resource", "result": "retry"]) == 2)
            #expect(parsed.value("pipeline_storage_retries_total", ["code": "SlowDown"]) == 2)
            #expect(parsed.value("pipeline_storage_leases_reclaimed_total") == 1)
            #expect(
                parsed.value("pipeline_storage_uploads_total", ["kind": "manifest", "result": "delivered"]) == 1,
                "the bundle without a failed resource got its _bundle.json")
            #expect(parsed.value("pipeline_storage_uploads_in_flight") == 0)

            // Spool gauges, as status() sees it.
            for total in status.resources {
                #expect(parsed.value("pipeline_storage_resources", ["state": total.state]) == Double(total.count))
                #expect(parsed.value("pipeline_storage_resource_bytes", ["state": total.state]) == Double(total.bytes))
            }
            for total in status.bundles {
                #expect(parsed.value("pipeline_storage_bundles", ["state": total.state]) == Double(total.count))
            }
            #expect(parsed.value("pipeline_storage_failed_resources", ["code": "conflict"]) == 1)
            #expect(parsed.value("pipeline_storage_held_bytes") == Double(status.heldBytes))
            #expect(parsed.value("pipeline_storage_pending_bytes") == 0)
            #expect(parsed.value("pipeline_storage_oldest_pending_age_seconds") == 0)
            #expect(parsed.value("pipeline_storage_manifests_pending") == Double(status.manifestsPending))
            #expect(parsed.value("pipeline_storage_destination_paused", ["destination": "file://\(fixture.root)"]) == 0)
            #expect(parsed.value("pipeline_storage_destinations_paused") == 0)

            // The audit trail tells the same story without the drainer.
            let audit = try await PipelineMetrics.spoolSnapshot(fixture.spool)
            let auditText = try PrometheusText(audit.prometheusText())
            for name in [
                "pipeline_storage_uploads_total", "pipeline_storage_uploaded_bytes_total",
                "pipeline_storage_retries_total",
                "pipeline_storage_failures_total", "pipeline_storage_conflicts_total",
                "pipeline_storage_leases_reclaimed_total", "pipeline_storage_resources",
            ] {
                for sample in auditText.samples where sample.name == name {
                    #expect(parsed.value(name, sample.labels) == sample.value, "\(name) \(sample.labels)")
                }
            }
            #expect(auditText.value("pipeline_storage_uploads_total", delivered) == Double(done.count))
            #expect(auditText.value("pipeline_storage_leases_reclaimed_total") == 1)
            #expect(auditText.value("pipeline_storage_upload_duration_seconds_count", ["kind": "resource"]) == nil)
            #expect(spooled.count == sizes.count)
        }
    }

    @Test("The metrics file is replaced atomically: no temporary file left, readers see whole files")
    func atomicFile() async throws {
        try await withTestDirectory { directory in
            let path = directory.path + "/metrics.prom"
            let reader = Task {
                var reads = 0
                while !Task.isCancelled {
                    if let text = try? String(contentsOfFile: path, encoding: .utf8), !text.isEmpty {
                        #expect(text.hasPrefix("# HELP") && text.hasSuffix("\n"), "a torn read")
                        reads += 1
                    }
                    await Task.yield()
                }
                return reads
            }
            let registry = MetricsRegistry()
            for round in 0..<200 {
                registry.set(MetricDescriptor("test_round", .gauge, help: "Round.", unit: .count), Double(round))
                for filler in 0..<(round % 7) { registry.add(Self.counter, labels: ["kind": "k\(filler)"]) }
                try registry.snapshot().writePrometheusFile(to: path)
            }
            reader.cancel()
            _ = await reader.value
            #expect(directoryEntries(directory.path) == ["metrics.prom"])
            #expect(try PrometheusText(String(contentsOfFile: path, encoding: .utf8)).value("test_round") == 199)
        }
    }

    // MARK: CloudWatch

    @Test("PutMetricData bodies: at most 1000 points and 1 MB a call, members numbered from 1 in each")
    func batching() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let data = (0..<2_500).map { index in
            MetricDatum(
                name: "m", dimensions: [.init("n", String(index))], value: .single(Double(index)), unit: "Count",
                timestamp: now)
        }
        let bodies = CloudWatchClient.putMetricDataBodies(namespace: "NS", data)
        #expect(bodies.count == 3)
        for body in bodies {
            #expect(
                body.hasPrefix("Action=PutMetricData&Version=2010-08-01&Namespace=NS&MetricData.member.1.MetricName=m"))
            #expect(body.utf8.count <= CloudWatchClient.maximumRequestBytes)
        }
        #expect(bodies[0].contains("MetricData.member.1000.MetricName") && !bodies[0].contains("member.1001."))
        #expect(bodies[2].contains("MetricData.member.500.MetricName") && !bodies[2].contains("member.501."))
        #expect(bodies[0].contains("MetricData.member.1.Timestamp=2027-01-15T08%3A00%3A00Z"))
        let big = (0..<900).map { index in
            MetricDatum(
                name: "m",
                dimensions: (0..<10).map { .init("d\($0)", String(repeating: "v", count: 200) + "\(index)") },
                value: .single(1), unit: "Count", timestamp: now)
        }
        let split = CloudWatchClient.putMetricDataBodies(namespace: "NS", big)
        #expect(split.count > 1, "900 points of ~2.5 KB are more than 1 MB")
        #expect(split.allSatisfy { $0.utf8.count <= CloudWatchClient.maximumRequestBytes })
        #expect(split.reduce(0) { $0 + $1.components(separatedBy: ".MetricName=").count - 1 } == 900)
        let unsendable = [MetricDatum(name: "m", value: .single(.nan), unit: "None", timestamp: now)]
        #expect(CloudWatchClient.putMetricDataBodies(namespace: "NS", unsendable).isEmpty)
    }

    @Test("The CloudWatch endpoint resolves as the SDKs do")
    func endpointResolution() {
        #expect(
            CloudWatchClient.resolveEndpoint(region: "eu-west-1", endpoint: nil, environment: [:])
                == "https://monitoring.eu-west-1.amazonaws.com")
        #expect(
            CloudWatchClient.resolveEndpoint(region: "cn-north-1", endpoint: nil, environment: [:])
                == "https://monitoring.cn-north-1.amazonaws.com.cn")
        let environment = [
            "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_CLOUDWATCH": "http://127.0.0.1:2",
        ]
        #expect(
            CloudWatchClient.resolveEndpoint(region: "x", endpoint: nil, environment: environment)
                == "http://127.0.0.1:2")
        #expect(
            CloudWatchClient.resolveEndpoint(
                region: "x", endpoint: nil, environment: ["AWS_ENDPOINT_URL": "http://127.0.0.1:1"])
                == "http://127.0.0.1:1")
        #expect(
            CloudWatchClient.resolveEndpoint(region: "x", endpoint: "http://127.0.0.1:3", environment: environment)
                == "http://127.0.0.1:3")
        #expect(throws: S3Error.self) {
            try CloudWatchClient(
                region: "x", endpoint: "http://monitoring.example.com",
                credentials: StaticCredentialsProvider(AWSCredentials(accessKeyID: "a", secretAccessKey: "b")))
        }
    }

    @Test("Counter increases per interval; a failed send carries its increase and extremes into the next one")
    func intervals() throws {
        let registry = MetricsRegistry()
        var tracker = IntervalTracker()
        registry.add(Self.counter, 5, labels: ["kind": "a"])
        registry.set(Self.gauge, 7)
        registry.observe(Self.histogram, 2, labels: ["kind": "a"])
        let first = registry.snapshot(resettingWindows: true)
        let one = tracker.interval(first)
        tracker.commit(first)
        #expect(one.first { $0.descriptor.name == "test_things_total" }?.value == .single(5))
        registry.add(Self.counter, 3, labels: ["kind": "a"])
        registry.observe(Self.histogram, 0.5, labels: ["kind": "a"])
        _ = tracker.interval(registry.snapshot(resettingWindows: true))  // not committed: the send failed
        registry.add(Self.counter, 1, labels: ["kind": "a"])
        registry.observe(Self.histogram, 9, labels: ["kind": "a"])
        let third = tracker.interval(registry.snapshot(resettingWindows: true))
        #expect(third.first { $0.descriptor.name == "test_things_total" }?.value == .single(4))
        #expect(third.first { $0.descriptor.name == "test_level_bytes" }?.value == .single(7))
        #expect(
            third.first { $0.descriptor.name == "test_wait_seconds" }?.value
                == .statistics(count: 2, sum: 9.5, minimum: 0.5, maximum: 9))
        let datum = try #require(
            third.first { $0.descriptor.name == "test_wait_seconds" }?.datum(
                extraDimensions: [.init("Host", "h1")], timestamp: Date()))
        #expect(datum.dimensions == [.init("Host", "h1"), .init("kind", "a")])
        #expect(datum.unit == "Seconds")
    }

    @Test("PutMetricData against moto: values, statistics, dimensions and 1001 points in two calls read back")
    func putMetricDataOnMoto() async throws {
        let server = try await LocalS3.shared.server()
        let client = try CloudWatchClient(
            region: server.region, endpoint: server.endpoint,
            credentials: StaticCredentialsProvider(
                AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: server.secretAccessKey)))
        let namespace = uniqueNamespace("put")
        let now = Date()
        var data = [
            MetricDatum(
                name: "pipeline_storage_uploads_total",
                dimensions: [.init("kind", "resource"), .init("result", "delivered")],
                value: .single(42), unit: "Count", timestamp: now),
            MetricDatum(
                name: "pipeline_storage_upload_duration_seconds", dimensions: [.init("kind", "resource")],
                value: .statistics(sampleCount: 4, sum: 2.5, minimum: 0.125, maximum: 1.5), unit: "Seconds",
                timestamp: now),
        ]
        data += (0..<1_001).map { index in
            MetricDatum(
                name: "batched", dimensions: [.init("n", String(index % 7))], value: .single(1), unit: "Count",
                timestamp: now)
        }
        let calls = try await client.putMetricData(namespace: namespace, data)
        #expect(calls == 2)

        let uploads = try await metricStatistics(
            server, namespace: namespace, name: "pipeline_storage_uploads_total",
            dimensions: [("kind", "resource"), ("result", "delivered")])
        #expect(uploads["Sum"] == 42)
        let duration = try await metricStatistics(
            server, namespace: namespace, name: "pipeline_storage_upload_duration_seconds",
            dimensions: [("kind", "resource")])
        #expect(duration["SampleCount"] == 4)
        #expect(duration["Sum"] == 2.5)
        #expect(duration["Minimum"] == 0.125)
        #expect(duration["Maximum"] == 1.5)
        let batched = try await metricStatistics(server, namespace: namespace, name: "batched")
        #expect(batched["SampleCount"] == 1_001)
        let listed = try await listedMetrics(server, namespace: namespace)
        #expect(
            listed["pipeline_storage_uploads_total"]?.contains(["kind": "resource", "result": "delivered"]) == true)
        #expect(Set(listed["batched"]?.compactMap { $0["n"] } ?? []) == Set((0..<7).map(String.init)))

        // A wrong secret is refused, and said so with CloudWatch's error code.
        let wrong = try CloudWatchClient(
            region: server.region, endpoint: server.endpoint,
            credentials: StaticCredentialsProvider(
                AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: "wrong")),
            maxAttempts: 1)
        do {
            try await wrong.putMetricData(namespace: namespace, Array(data.prefix(1)))
            Issue.record("a wrongly signed PutMetricData was accepted")
        } catch let error as S3Error {
            #expect(error.status == 403, "\(error)")
            #expect(!error.code.isEmpty)
        }
    }

    /// `count` resources (1,000 + index bytes) spooled for a destination with `cloudwatchMetrics` and a namespace of
    /// their own, and drained: the spool, the drainer's metrics and the namespace.
    func drainedForCloudWatch(_ directory: TestDirectory, tag: String, count: Int) async throws
        -> (spool: SpoolStore, metrics: DrainMetrics, namespace: String)
    {
        var options = testStorageOptions()
        options.cloudwatchMetrics = true
        options.metricsNamespace = uniqueNamespace(tag)
        let fixture = try await TargetFixture.make(.directory, in: directory, prefix: "", options: options)
        try await fixture.storage.withBundle("cw") { bundle in
            for index in 0..<count {
                _ = try await bundle.writeResource(
                    url: "https://example.com/cw/\(index)", contentType: "text/plain", statusCode: 200,
                    bytes: content(size: 1_000 + index, seed: 700 + index))
            }
        }
        let metrics = DrainMetrics()
        _ = try await Drainer(
            spool: fixture.spool, options: testDrainOptions(), logger: testLogger(), metrics: metrics,
            resolveStore: fixture.resolve()
        ).run()
        return (fixture.spool, metrics, options.metricsNamespace)
    }

    /// Reporter options sending to CloudWatch at `endpoint` with the local server's key, dimension Host=test-host.
    func cloudWatchReporterOptions(_ server: LocalS3.Server, endpoint: String) -> MetricsReporterOptions {
        var options = MetricsReporterOptions()
        let credentials = StaticCredentialsProvider(
            AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: server.secretAccessKey))
        options.cloudWatch = CloudWatchOptions(
            region: server.region, dimensions: [.init("Host", "test-host")],
            makeClient: { region in try CloudWatchClient(region: region, endpoint: endpoint, credentials: credentials) }
        )
        return options
    }

    @Test("A drainer's reporter sends its interval to CloudWatch for a destination with cloudwatchMetrics")
    func reporterOnMoto() async throws {
        let server = try await LocalS3.shared.server()
        try await withTestDirectory { directory in
            let count = 5
            let (spool, metrics, namespace) = try await drainedForCloudWatch(directory, tag: "reporter", count: count)
            let reporter = MetricsReporter(
                spool: spool, metrics: metrics, options: cloudWatchReporterOptions(server, endpoint: server.endpoint),
                logger: testLogger(), environment: [:])
            await reporter.publish()
            await reporter.publish()  // the second interval sends increases of zero

            let delivered = try await metricStatistics(
                server, namespace: namespace, name: "pipeline_storage_uploads_total",
                dimensions: [("Host", "test-host"), ("kind", "resource"), ("result", "delivered")])
            #expect(delivered["Sum"] == Double(count))
            #expect(delivered["SampleCount"] == 2)
            let bytes = try await metricStatistics(
                server, namespace: namespace, name: "pipeline_storage_uploaded_bytes_total",
                dimensions: [("Host", "test-host"), ("kind", "resource")])
            #expect(bytes["Sum"] == Double((0..<count).reduce(0) { $0 + 1_000 + $1 }))
            let done = try await metricStatistics(
                server, namespace: namespace, name: "pipeline_storage_resources",
                dimensions: [("Host", "test-host"), ("state", "done")])
            #expect(done["Maximum"] == Double(count))
            let duration = try await metricStatistics(
                server, namespace: namespace, name: "pipeline_storage_upload_duration_seconds",
                dimensions: [("Host", "test-host"), ("kind", "resource")])
            #expect(duration["SampleCount"] == Double(count), "one StatisticValues point; none for an empty interval")
        }
    }

    @Test(
        "Stopping the reporter while a PutMetricData is under way lets it finish: the last publication does not send that interval again"
    )
    func stopDuringPublication() async throws {
        let server = try await LocalS3.shared.server()
        let proxy = try await LocalS3.shared.newFaultProxy()
        try await withTestDirectory { directory in
            let count = 3
            let (spool, metrics, namespace) = try await drainedForCloudWatch(directory, tag: "stopped", count: count)
            // The server stores the first PutMetricData at once; its answer reaches the reporter 6 s later.
            try await proxy.configure([.init(fault: "delay_response", nth: [1], seconds: 6)])
            var reporterOptions = cloudWatchReporterOptions(server, endpoint: proxy.endpoint)
            reporterOptions.interval = .seconds(3600)
            let reporter = MetricsReporter(
                spool: spool, metrics: metrics, options: reporterOptions, logger: testLogger(), environment: [:])
            let delivered = {
                try await metricStatistics(
                    server, namespace: namespace, name: "pipeline_storage_uploads_total",
                    dimensions: [("Host", "test-host"), ("kind", "resource"), ("result", "delivered")])
            }
            let running = Task { await reporter.run() }
            try #require(try await eventually(timeout: .seconds(30)) { try await delivered()["Sum"] != nil })

            // Stopped while the answer is still on its way (as spool-drain does at exit), then the last publication.
            running.cancel()
            await running.value
            await reporter.publishFinal()

            let sent = try await delivered()
            #expect(sent["Sum"] == Double(count), "the interval under way at the stop was sent again: \(sent)")
            #expect(sent["SampleCount"] == 2, "the first interval, then the last one's increase of zero")
            #expect(try await proxy.stats().count("delay_response") == 1)
        }
        try await proxy.stop()
    }

    @Test("EMF lines: one JSON object per line, _aws metadata naming every metric and dimension present")
    func embeddedMetricFormat() async throws {
        try await withTestDirectory { directory in
            let fixture = try await TargetFixture.make(.directory, in: directory, prefix: "")
            try await fixture.storage.withBundle("emf") { bundle in
                for index in 0..<3 {
                    _ = try await bundle.writeResource(
                        url: "https://example.com/emf/\(index)", contentType: "text/plain", statusCode: 200,
                        bytes: content(size: 10 * (index + 1), seed: 600 + index))
                }
            }
            let metrics = DrainMetrics()
            _ = try await Drainer(
                spool: fixture.spool, options: testDrainOptions(), logger: testLogger(), metrics: metrics,
                resolveStore: fixture.resolve()
            ).run()
            let path = directory.path + "/metrics.emf"
            var reporterOptions = MetricsReporterOptions()
            reporterOptions.emf = .file(path)
            reporterOptions.cloudWatch = CloudWatchOptions(
                namespace: "EMFTest", dimensions: [.init("Host", "h")],
                makeClient: { _ in throw S3Error(status: 0, code: "NotUsed", message: "EMF makes no calls") })
            let reporter = MetricsReporter(
                spool: fixture.spool, metrics: metrics, options: reporterOptions, logger: testLogger())
            await reporter.publish()

            let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
            #expect(!lines.isEmpty)
            var values: [String: [[String: Any]]] = [:]
            for line in lines {
                let object = try #require(
                    try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not an object: \(line)")
                let aws = try #require(object["_aws"] as? [String: Any])
                #expect((aws["Timestamp"] as? NSNumber).map { $0.int64Value > 1_600_000_000_000 } == true)
                let directives = try #require(aws["CloudWatchMetrics"] as? [[String: Any]])
                #expect(directives.count == 1)
                let directive = directives[0]
                #expect(directive["Namespace"] as? String == "EMFTest")
                let dimensionSets = try #require(directive["Dimensions"] as? [[String]])
                #expect(dimensionSets.count == 1)
                #expect(dimensionSets[0].first == "Host")
                for dimension in dimensionSets[0] { #expect(object[dimension] is String, "dimension \(dimension)") }
                let declared = try #require(directive["Metrics"] as? [[String: String]])
                #expect((1...100).contains(declared.count))
                for metric in declared {
                    let name = try #require(metric["Name"])
                    #expect(["Count", "Bytes", "Seconds", "None"].contains(metric["Unit"] ?? ""))
                    #expect(object[name] is NSNumber, "\(name) has a number")
                    values[name, default: []].append(object)
                }
            }
            let delivered = values["pipeline_storage_uploads_total"]?.first {
                $0["kind"] as? String == "resource" && $0["result"] as? String == "delivered"
            }
            #expect((delivered?["pipeline_storage_uploads_total"] as? NSNumber)?.intValue == 3)
            let done = values["pipeline_storage_resources"]?.first { $0["state"] as? String == "done" }
            #expect((done?["pipeline_storage_resources"] as? NSNumber)?.intValue == 3)
            let durations = values["pipeline_storage_upload_duration_seconds_count"]?.first {
                $0["kind"] as? String == "resource"
            }
            #expect((durations?["pipeline_storage_upload_duration_seconds_count"] as? NSNumber)?.intValue == 3)
        }
    }
}
