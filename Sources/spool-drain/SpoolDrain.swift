import ArgumentParser
import CommandLineSupport
import CredentialChain
import Dispatch
import Drain
import Foundation
import Logging
import S3
import Spool
import Synchronization

/// Delivers a spool to S3 (or a local directory) exactly once: claims, uploads, records, and survives SIGKILL.
@main
struct SpoolDrain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spool-drain",
        abstract: "Deliver the spool to its destinations, exactly once, until stopped.",
        discussion: """
            Runs until SIGTERM or SIGINT (which stop claiming, let deliveries in flight finish within the grace \
            period, release the rest, and exit 0); --once drains what is due now and exits; --until-done waits out \
            backoffs and exits when nothing is pending. Several drainers may work on one spool at once.

            Credentials come from the AWS credential chain, in the AWS SDKs' order: AWS_ACCESS_KEY_ID/\
            AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN; the profile (--profile, else AWS_PROFILE, else default) in \
            ~/.aws/credentials and ~/.aws/config (role_arn with source_profile or credential_source, \
            web_identity_token_file, credential_process, static keys); AWS_WEB_IDENTITY_TOKEN_FILE with \
            AWS_ROLE_ARN; ECS/EKS container credentials; EC2 instance metadata (IMDSv2 only unless \
            --allow-imdsv1). --log-level debug shows which one answered. A destination's region and endpoint come \
            from the spool (what the writer recorded), else --region/--endpoint, else AWS_REGION/AWS_DEFAULT_REGION \
            and AWS_ENDPOINT_URL_S3/AWS_ENDPOINT_URL.

            Metrics (docs/METRICS.md): --metrics-file rewrites a Prometheus text file atomically every \
            --metrics-interval and at exit. Destinations whose options enable cloudwatchMetrics, and \
            --cloudwatch-namespace, get PutMetricData calls every interval (endpoint from \
            AWS_ENDPOINT_URL_CLOUDWATCH/AWS_ENDPOINT_URL, else monitoring.<region>.amazonaws.com); --emf or \
            --emf-file write Embedded Metric Format lines instead. Metrics failures are logged, never fatal.

            Exit status: 0 success (resources that failed are kept in the spool: see spool-inspect); 1 failure; \
            2 no spool at the path; 73 spool not writable or too new; 75 the index stayed locked; 76 the spool \
            index is damaged (a damaged payload only fails its resource: delivery goes on).
            """)

    @OptionGroup var spoolDirectory: SpoolDirectoryOptions

    @Flag(help: "Deliver what is due now, then exit.")
    var once = false

    @Flag(help: "Keep going, waiting out backoffs, until nothing is pending or uploading; then exit.")
    var untilDone = false

    @Option(help: "Resources (and transfers) in flight at once.")
    var concurrency = 8

    @Option(help: "Lease length in seconds (5...3600); renewed every third of it while an upload runs.")
    var leaseSeconds: Double = 60

    @Option(help: "Bound on one object's upload, in seconds (default: the destination's uploadTimeout, 900).")
    var uploadTimeout: Double?

    @Option(help: "Seconds deliveries in flight may take to finish after SIGTERM/SIGINT.")
    var gracePeriod: Double = 30

    @Flag(help: "Keep payloads of delivered resources (remove them later with spool-inspect purge).")
    var retainDelivered = false

    @Option(help: "Region for destinations that recorded none.")
    var region: String?

    @Option(help: "S3 endpoint for destinations that recorded none.")
    var endpoint: String?

    @Option(help: "A PEM file of CA certificates to verify the endpoint's TLS certificate with.")
    var caBundle: String?

    @Option(help: "AWS profile for destinations that recorded none (default: AWS_PROFILE, else default).")
    var profile: String?

    @Flag(help: "Let EC2 instance credentials fall back to IMDSv1 when IMDSv2 is refused (off: IMDSv2 only).")
    var allowImdsv1 = false

    @Option(help: "json (one object per line) or text.")
    var logFormat: String = "text"

    @Option(help: "trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Flag(inversion: .prefixedNo, help: "Show a progress line (default: when standard error is a terminal).")
    var progress: Bool?

    @OptionGroup(title: "Metrics") var metrics: MetricsOptions

    func validate() throws {
        guard concurrency >= 1 && concurrency <= 256 else { throw ValidationError("--concurrency must be 1...256") }
        guard leaseSeconds >= 5 && leaseSeconds <= 3600 else {
            throw ValidationError("--lease-seconds must be 5...3600")
        }
        guard StandardErrorLogHandler.Format(rawValue: logFormat) != nil else {
            throw ValidationError("--log-format must be json or text")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError(
                "--log-level '\(logLevel)' is not a level: trace, debug, info, notice, warning, error")
        }
        if once && untilDone { throw ValidationError("give --once or --until-done, not both") }
        if let caBundle, !FileManager.default.isReadableFile(atPath: caBundle) {
            throw ValidationError("--ca-bundle '\(caBundle)' is not a readable file of PEM certificates")
        }
        try metrics.validate()
    }

    func run() async throws {
        let format = StandardErrorLogHandler.Format(rawValue: logFormat)!
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in StandardErrorLogHandler(label: label, format: format, level: level) }
        let logger = Logger(label: "spool-drain")
        try await runReportingErrors(tool: "spool-drain") {
            var spoolOptions = SpoolOptions()
            spoolOptions.createIfMissing = false
            let spool = try SpoolStore.open(spoolDirectory.directory, options: spoolOptions)
            var options = DrainOptions()
            options.concurrency = concurrency
            options.leaseDuration = .milliseconds(Int64(leaseSeconds * 1000))
            options.once = once
            options.untilDone = untilDone
            options.retainDelivered = retainDelivered
            options.gracePeriod = .milliseconds(Int64(gracePeriod * 1000))
            var chainOptions = CredentialChain.Options()
            chainOptions.allowsIMDSv1 = allowImdsv1
            let resolver = DestinationStores(
                region: region, endpoint: endpoint, caBundle: caBundle, uploadTimeout: uploadTimeout,
                profile: profile, chainOptions: chainOptions, logger: logger)
            let drainer = Drainer(spool: spool, options: options, logger: logger) { try resolver.store(for: $0) }
            let reporter = MetricsReporter(
                spool: spool, metrics: drainer.metrics,
                options: try metrics.reporterOptions(caBundle: caBundle, credentials: resolver.defaultCredentials),
                logger: logger)
            let publishing = Task { await reporter.run() }
            let signals = SignalHandler { drainer.stop() }
            defer { signals.cancel() }
            logger.info(
                "drainer started",
                metadata: [
                    "spool": "\(spool.layout.root)", "owner": "\(drainer.owner)", "concurrency": "\(concurrency)",
                ])
            let showProgress = progress ?? Terminal.standardErrorIsTerminal
            let progressReporter = showProgress ? Task { await Self.reportProgress(drainer, spool: spool) } : nil
            let outcome: Result<DrainProgress, any Error>
            do {
                outcome = .success(try await drainer.run())
            } catch {
                outcome = .failure(error)
            }
            progressReporter?.cancel()
            ProgressLine.clear()
            publishing.cancel()
            await publishing.value
            await reporter.publishFinal()
            let result = try outcome.get()
            logger.info(
                "drainer stopped",
                metadata: [
                    "delivered": "\(result.delivered)", "bytes": "\(result.deliveredBytes)",
                    "failed": "\(result.failed)",
                    "retries": "\(result.retriesScheduled)", "pauses": "\(result.pauses)",
                    "leases_lost": "\(result.leasesLost)",
                ])
        }
    }

    private static func reportProgress(_ drainer: Drainer, spool: SpoolStore) async {
        let started = ContinuousClock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            let progress = drainer.progress
            let status = try? await spool.status()
            let pending = status?.resources.first { $0.state == "pending" }
            let elapsed = max(0.001, Double((ContinuousClock.now - started).components.seconds))
            var text =
                "delivered \(progress.delivered) (\(Units.bytes(progress.deliveredBytes)), "
                + "\(Units.bytes(Int64(Double(progress.deliveredBytes) / elapsed)))/s) · in flight \(progress.inFlight)"
            if let pending { text += " · pending \(pending.count) (\(Units.bytes(pending.bytes)))" }
            if progress.retriesScheduled > 0 { text += " · retries \(progress.retriesScheduled)" }
            if progress.failed > 0 { text += " · failed \(progress.failed)" }
            if let paused = status?.pausedDestinations, !paused.isEmpty { text += " · PAUSED \(paused.count)" }
            ProgressLine.draw(text)
        }
    }
}

/// SIGTERM and SIGINT ask the drainer to stop gracefully; a second signal exits at once.
final class SignalHandler: @unchecked Sendable {
    // @unchecked: `sources` is set once in init and only cancelled afterwards; dispatch sources are thread-safe.
    private let sources: [any DispatchSourceSignal]

    init(onStop: @escaping @Sendable () -> Void) {
        let count = Mutex(0)
        // A queue of its own: the global queue is the pool the drainer's tasks run on, and a signal must be handled
        // even while that pool is busy.
        let queue = DispatchQueue(label: "spool-drain.signals")
        sources = [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler {
                let seen = count.withLock { value -> Int in
                    value += 1
                    return value
                }
                if seen > 1 { exit(128 + number) }
                onStop()
            }
            source.resume()
            return source
        }
    }

    func cancel() { sources.forEach { $0.cancel() } }
}
