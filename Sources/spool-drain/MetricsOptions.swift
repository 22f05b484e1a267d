import ArgumentParser
import CommandLineSupport
import Drain
import Foundation
import S3
import Spool

/// `--metrics-file`, `--metrics-interval`, and the CloudWatch and Embedded Metric Format options of `spool-drain`.
struct MetricsOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Rewrite this file with Prometheus text (atomically) every interval and at exit.", valueName: "path"))
    var metricsFile: String?

    @Option(help: "Seconds between metrics publications (file, CloudWatch, EMF).")
    var metricsInterval: Double = 60

    @Option(help: "Send metrics to this CloudWatch namespace (PutMetricData), besides destinations that ask for it.")
    var cloudwatchNamespace: String?

    @Option(help: "Region for --cloudwatch-namespace and for destinations that recorded none (default: AWS_REGION).")
    var cloudwatchRegion: String?

    @Option(
        help: ArgumentHelp(
            "A dimension added to every CloudWatch data point, repeatable (e.g. Host=web-1).", valueName: "name=value"))
    var cloudwatchDimension: [String] = []

    @Flag(help: "Write CloudWatch Embedded Metric Format lines on standard output instead of calling PutMetricData.")
    var emf = false

    @Option(
        help: ArgumentHelp(
            "Append Embedded Metric Format lines to this file instead of calling PutMetricData.", valueName: "path"))
    var emfFile: String?

    /// The metrics' label names: a static dimension must not take one of them.
    static let reservedDimensionNames = Set(PipelineMetrics.all.flatMap(\.labelNames))

    /// CloudWatch takes 30 dimensions per data point; the metrics' own labels need the rest.
    static let maximumStaticDimensions = 25

    func validate() throws {
        guard metricsInterval >= 1, metricsInterval <= 86_400 else {
            throw ValidationError("--metrics-interval must be 1...86400 seconds")
        }
        if emf && emfFile != nil { throw ValidationError("give --emf or --emf-file, not both") }
        for (option, path) in [("--metrics-file", metricsFile), ("--emf-file", emfFile)] {
            guard let path else { continue }
            let parent = (path as NSString).deletingLastPathComponent
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: parent.isEmpty ? "." : parent, isDirectory: &isDirectory),
                isDirectory.boolValue
            else {
                throw ValidationError("\(option) \(path): the directory \(parent) does not exist")
            }
        }
        if let namespace = cloudwatchNamespace {
            var options = StorageOptions()
            options.metricsNamespace = namespace
            do {
                try options.validate()
            } catch let error as SpoolError {
                throw ValidationError("--cloudwatch-namespace: \(error.message)")
            }
        }
        for (name, value) in try staticDimensions() {
            guard (1...255).contains(name.utf8.count), (1...1024).contains(value.utf8.count) else {
                throw ValidationError("--cloudwatch-dimension \(name): names take 1–255 characters, values 1–1024")
            }
            if Self.reservedDimensionNames.contains(name) {
                throw ValidationError("--cloudwatch-dimension \(name) is a label of the metrics; choose another name")
            }
        }
        guard cloudwatchDimension.count <= Self.maximumStaticDimensions else {
            throw ValidationError("at most \(Self.maximumStaticDimensions) --cloudwatch-dimension")
        }
    }

    /// The `--cloudwatch-dimension` pairs, in the order given.
    func staticDimensions() throws -> [(String, String)] {
        let parsed = try parseKeyValuePairs(cloudwatchDimension, option: "--cloudwatch-dimension")
        return cloudwatchDimension.map { pair in
            let name = String(pair.prefix { $0 != "=" })
            return (name, parsed[name] ?? "")
        }
    }

    /// What the reporter does. CloudWatch options are always given, so destinations with `cloudwatchMetrics` are
    /// published to even without `--cloudwatch-namespace`, with `credentials` (the drainer's credential chain).
    func reporterOptions(caBundle: String?, credentials: any CredentialsProvider) throws -> MetricsReporterOptions {
        var options = MetricsReporterOptions()
        options.interval = .milliseconds(Int64(metricsInterval * 1000))
        options.prometheusFile = metricsFile
        options.emf = emf ? .standardOutput : emfFile.map { .file($0) }
        var transportOptions = TransportOptions()
        transportOptions.caBundlePath = caBundle
        let transport = transportOptions
        options.cloudWatch = CloudWatchOptions(
            namespace: cloudwatchNamespace, region: cloudwatchRegion,
            dimensions: try staticDimensions().map { MetricDatum.Dimension($0.0, $0.1) },
            makeClient: { region in
                try CloudWatchClient(region: region, credentials: credentials, transportOptions: transport)
            })
        return options
    }
}
