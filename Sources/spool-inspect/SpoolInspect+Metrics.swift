import ArgumentParser
import CommandLineSupport
import Drain
import Spool

extension SpoolInspect {
    /// `spool-inspect metrics`: the spool's metrics in Prometheus text, with no drainer running.
    struct Metrics: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Current metrics in Prometheus text format: spool gauges and delivery counters.",
            discussion: """
                Gauges (resources and bytes by state, oldest pending age, bundles, paused destinations, ...) come \
                from the index; the counters (uploads by result, uploaded bytes, retries and failures by error code, \
                conflicts, reclaimed leases) are totals over the spool's life, read from the audit trail. Names and \
                labels: docs/METRICS.md.

                Exit status: 0 success; 1 the --output file could not be written, or another failure; 2 no spool \
                at the path; 73 spool made by a newer version; 75 spool busy; 76 spool damaged.
                """)

        @OptionGroup var spoolDirectory: SpoolDirectoryOptions

        @Flag(help: "Only the gauges: do not read the audit trail (faster on very large spools).")
        var gaugesOnly = false

        @Option(
            help: ArgumentHelp(
                "Write to this file, replaced atomically (for a textfile collector), instead of standard output.",
                valueName: "path"))
        var output: String?

        func run() async throws {
            try await runReportingErrors(tool: "spool-inspect") {
                var options = SpoolOptions()
                options.createIfMissing = false
                let spool = try SpoolStore.open(spoolDirectory.directory, options: options)
                let snapshot = try await PipelineMetrics.spoolSnapshot(spool, includingAuditCounters: !gaugesOnly)
                if let output {
                    try snapshot.writePrometheusFile(to: output)
                } else {
                    print(snapshot.prometheusText(), terminator: "")
                }
            }
        }
    }
}
