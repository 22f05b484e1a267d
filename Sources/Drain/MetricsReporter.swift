import Foundation
import Logging
import S3
import Spool

/// Where Embedded Metric Format lines go.
public enum EMFOutput: Sendable, Hashable {
    /// Standard output (a container's log driver or the CloudWatch agent picks them up).
    case standardOutput
    /// Appended to a file.
    case file(String)
}

/// CloudWatch publishing: which namespace besides those destinations ask for, in which region, with which extra
/// dimensions, and how to make a client.
public struct CloudWatchOptions: Sendable {
    /// Publish to this namespace even when no destination has `cloudwatchMetrics` (`--cloudwatch-namespace`).
    public var namespace: String?
    /// The region for `namespace`, and for destinations that recorded none; nil: `AWS_REGION`/`AWS_DEFAULT_REGION`.
    public var region: String?
    /// Dimensions added to every data point (e.g. `Host`), before the metric's own labels.
    public var dimensions: [MetricDatum.Dimension] = []
    /// Makes the client for a region.
    public var makeClient: @Sendable (_ region: String) throws -> CloudWatchClient

    /// CloudWatch options.
    public init(
        namespace: String? = nil, region: String? = nil, dimensions: [MetricDatum.Dimension] = [],
        makeClient: @escaping @Sendable (_ region: String) throws -> CloudWatchClient
    ) {
        self.namespace = namespace
        self.region = region
        self.dimensions = dimensions
        self.makeClient = makeClient
    }
}

/// What `MetricsReporter` does every interval.
public struct MetricsReporterOptions: Sendable {
    /// How often to publish.
    public var interval: Duration = .seconds(60)
    /// Rewrite this file (Prometheus text, atomically) every interval; nil for none.
    public var prometheusFile: String?
    /// PutMetricData to CloudWatch (for `namespace`, and for destinations with `cloudwatchMetrics`); nil: only if a
    /// destination asks for it and a client can be made from the environment — which the caller decides by passing
    /// options or not.
    public var cloudWatch: CloudWatchOptions?
    /// Write Embedded Metric Format lines here instead of calling PutMetricData.
    public var emf: EMFOutput?

    /// No exporter; publishing every 60 s.
    public init() {}
}

/// Publishes a drainer's metrics every interval and once more at the end: refreshes the spool gauges, rewrites the
/// Prometheus file, and sends the interval to CloudWatch (PutMetricData, batched) or as EMF lines. Failures are
/// logged and never stop the drainer; a target that failed sends the missed increase with its next interval.
public actor MetricsReporter {
    private struct Target: Hashable {
        var namespace: String
        /// Empty for EMF (no region involved).
        var region: String
    }

    private let spool: SpoolStore
    private let metrics: DrainMetrics
    private let options: MetricsReporterOptions
    private let logger: Logger
    private let environment: [String: String]
    private var trackers: [Target: IntervalTracker] = [:]
    private var clients: [String: CloudWatchClient] = [:]
    private var warned: Set<String> = []

    /// A reporter for a drainer's metrics.
    ///
    /// - Parameters:
    ///   - spool: The spool whose gauges are refreshed before each publication.
    ///   - metrics: The drainer's metrics (its registry receives the spool gauges too).
    ///   - options: Interval and exporters.
    ///   - logger: Where failures are logged.
    ///   - environment: Where `AWS_REGION`/`AWS_DEFAULT_REGION` are looked up.
    public init(
        spool: SpoolStore, metrics: DrainMetrics, options: MetricsReporterOptions, logger: Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        self.spool = spool
        self.metrics = metrics
        self.options = options
        self.logger = logger
        self.environment = environment
    }

    /// Publishes now (so a textfile collector has a file from the start), then every interval until the task is
    /// cancelled; the caller then calls `publishFinal()` for the final values.
    ///
    /// Cancelling ends the wait between publications at once, but lets a publication already under way finish (for
    /// at most ``finalPublicationTimeout``): a PutMetricData cut off mid-flight may already have been stored, and the
    /// final publication would then count its interval twice.
    public func run() async {
        await publishToTheEnd()
        while !Task.isCancelled {
            do { try await Task.sleep(for: options.interval) } catch { return }
            await publishToTheEnd()
        }
    }

    private func publishToTheEnd() async {
        let publication = Task { await publish() }
        await withTaskCancellationHandler {
            await publication.value
        } onCancel: {
            Task {
                try? await Task.sleep(for: Self.finalPublicationTimeout)
                publication.cancel()
            }
        }
    }

    /// How long the last publication at exit may take: an endpoint that does not answer must not hold the exit.
    public static let finalPublicationTimeout: Duration = .seconds(10)

    /// The last publication, at exit: like `publish()`, but cancelled after `timeout` (the file is written first, so
    /// only a slow CloudWatch call is cut short; its interval is lost).
    public nonisolated func publishFinal(timeout: Duration = MetricsReporter.finalPublicationTimeout) async {
        let finished = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await self.publish()
                return true
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? true
            group.cancelAll()
            return first
        }
        if !finished {
            logger.warning(
                "metrics: the last publication did not finish in time and was cut short",
                metadata: ["seconds": "\(timeout.components.seconds)"])
        }
    }

    /// One publication: spool gauges, the Prometheus file, CloudWatch or EMF.
    public func publish() async {
        let targets = await targets()
        guard options.prometheusFile != nil || !targets.isEmpty else { return }
        do {
            let status = try await spool.status()
            PipelineMetrics.recordSpoolGauges(
                status, destinations: try await spool.destinations(), into: metrics.registry)
        } catch {
            logger.warning("metrics: spool gauges not refreshed", metadata: ["error": "\(error)"])
        }
        let snapshot = metrics.registry.snapshot(resettingWindows: true)
        if let path = options.prometheusFile {
            do {
                let text = snapshot.prometheusText()
                try await BlockingIO.run { try AtomicFile.replace(path, with: text) }
            } catch {
                logger.warning("metrics file not written", metadata: ["path": "\(path)", "error": "\(error)"])
            }
        }
        let now = Date()
        for target in targets {
            var tracker = trackers[target] ?? IntervalTracker()
            let interval = tracker.interval(snapshot)
            if await send(interval, to: target, timestamp: now) { tracker.commit(snapshot) }
            trackers[target] = tracker
        }
    }

    /// Namespaces (and regions) to publish to: `--cloudwatch-namespace`, and every destination with
    /// `cloudwatchMetrics`.
    private func targets() async -> [Target] {
        guard options.cloudWatch != nil || options.emf != nil else { return [] }
        var targets: [Target] = []
        func add(namespace: String, region: String?) {
            if options.emf != nil {
                targets.append(Target(namespace: namespace, region: ""))
                return
            }
            guard
                let region = region ?? options.cloudWatch?.region ?? nonEmpty(environment["AWS_REGION"])
                    ?? nonEmpty(environment["AWS_DEFAULT_REGION"])
            else {
                warnOnce(
                    "no-region-\(namespace)",
                    "metrics: no region for CloudWatch; set AWS_REGION or --cloudwatch-region",
                    ["namespace": "\(namespace)"])
                return
            }
            targets.append(Target(namespace: namespace, region: region))
        }
        if let namespace = options.cloudWatch?.namespace { add(namespace: namespace, region: nil) }
        do {
            for destination in try await spool.destinations() {
                guard
                    let storage = try? JSONDecoder().decode(
                        StorageOptions.self, from: Data(destination.spec.optionsJSON.utf8)),
                    storage.cloudwatchMetrics
                else { continue }
                add(namespace: storage.metricsNamespace, region: nonEmpty(destination.spec.region))
            }
        } catch {
            logger.warning("metrics: destinations not read", metadata: ["error": "\(error)"])
        }
        if options.emf != nil && targets.isEmpty { targets.append(Target(namespace: "PipelineStorage", region: "")) }
        var seen: Set<Target> = []
        return targets.filter { seen.insert($0).inserted }
    }

    /// Sends one interval; true when it went out.
    private func send(_ interval: [IntervalSample], to target: Target, timestamp: Date) async -> Bool {
        let dimensions = options.cloudWatch?.dimensions ?? []
        if let emf = options.emf {
            let lines = EmbeddedMetricFormat.lines(
                interval, namespace: target.namespace, extraDimensions: dimensions, timestamp: timestamp)
            let text = lines.map { $0 + "\n" }.joined()
            do {
                // Off the task pool: a file's write, or a standard output nobody reads yet, may block.
                try await BlockingIO.run {
                    switch emf {
                    case .standardOutput: try FileHandle.standardOutput.write(contentsOf: Data(text.utf8))
                    case .file(let path): try Self.append(text, to: path)
                    }
                }
                return true
            } catch {
                logger.warning("metrics: EMF lines not written", metadata: ["error": "\(error)"])
                return false
            }
        }
        guard let cloudWatch = options.cloudWatch else { return false }
        let data = interval.compactMap { $0.datum(extraDimensions: dimensions, timestamp: timestamp) }
        do {
            let client: CloudWatchClient
            if let cached = clients[target.region] {
                client = cached
            } else {
                client = try cloudWatch.makeClient(target.region)
                clients[target.region] = client
            }
            let calls = try await client.putMetricData(namespace: target.namespace, data)
            logger.debug(
                "metrics sent to CloudWatch",
                metadata: ["namespace": "\(target.namespace)", "points": "\(data.count)", "calls": "\(calls)"])
            return true
        } catch is CancellationError {
            // Stopping: the final publication sends this interval.
            return false
        } catch {
            let code = (error as? S3Error)?.code ?? "\(type(of: error))"
            logger.warning(
                "metrics: PutMetricData failed; the next interval carries these values",
                metadata: [
                    "namespace": "\(target.namespace)", "region": "\(target.region)", "error_code": "\(code)",
                    "error": "\(error)",
                ])
            return false
        }
    }

    private func warnOnce(_ key: String, _ message: Logger.Message, _ metadata: Logger.Metadata) {
        guard warned.insert(key).inserted else { return }
        logger.warning(message, metadata: metadata)
    }

    private static func append(_ text: String, to path: String) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw AtomicFileError(call: "open", path: path) }
        defer { close(descriptor) }
        try AtomicFile.writeAll(text, to: descriptor, path: path)
    }
}
