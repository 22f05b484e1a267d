import ArgumentParser
import CommandLineSupport
import Spool

extension SpoolInspect {
    struct Stuck: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What needs an operator: failures, pauses, expired leases, abandoned bundles, many retries.",
            discussion: """
                One section per kind: failed resources (requeue them with 'retry'); destinations the drainer paused \
                (fix the cause: the drainer probes and resumes by itself); resources uploading under an expired lease \
                or a drainer of this host that is gone (the next claim takes them over); open bundles whose writer \
                process on this host is gone, and open bundles of writers on other hosts with their age (seal or \
                discard them); pending or uploading resources with more than --retried-more-than attempts.

                Exit status: 0 success (whether or not something is stuck); 2 no spool; 73 spool not writable or \
                too new; 75 spool busy; 1 other failure.
                """)

        @OptionGroup var common: CommonOptions

        @Option(help: "List pending or uploading resources with more attempts than this.")
        var retriedMoreThan = 3

        @Option(help: "At most this many rows per section.")
        var limit = 50

        func validate() throws {
            if retriedMoreThan < 0 { throw ValidationError("--retried-more-than must not be negative") }
            if limit < 1 { throw ValidationError("--limit must be at least 1") }
        }

        func run() async throws {
            try await runReportingErrors(tool: "spool-inspect") {
                let report = try await common.openSpool().stuck(retriedMoreThan: retriedMoreThan, limit: limit)
                if common.json {
                    try JSONOutput.print(report)
                } else {
                    print(render(report))
                }
            }
        }

        func render(_ report: StuckReport) -> String {
            let now = report.generatedAt
            func ago(_ time: Int64?) -> String { time.map { Units.duration(milliseconds: now - $0) } ?? "-" }
            var sections: [String] = []
            func section(_ title: String, shown: Int, total: Int, table: () -> Table, hint: String? = nil) {
                guard total > 0 else { return }
                var lines = ["\(title) (\(total))", table().render()]
                if shown < total { lines.append("… \(total - shown) more; raise --limit to see them") }
                if let hint { lines.append(hint) }
                sections.append(lines.joined(separator: "\n"))
            }
            section(
                "Failed", shown: report.failed.count, total: report.totals.failed,
                table: {
                    var table = Table([
                        .init("ID", .right), .init("BUNDLE"), .init("SEQ", .right), .init("TRIES", .right),
                        .init("FAILED", .right), .init("ERROR"), .init("KEY"), .init("MESSAGE"),
                    ])
                    for resource in report.failed {
                        table.append([
                            String(resource.id), resource.bundleID, String(resource.seq), String(resource.attempts),
                            ago(resource.updatedAt) + " ago", resource.lastErrorCode ?? "-", resource.objectKey,
                            resource.lastErrorMessage ?? "",
                        ])
                    }
                    return table
                }, hint: "Requeue: spool-inspect retry ID… (or --all-failed)")
            section(
                "Paused destinations", shown: report.pausedDestinations.count,
                total: report.totals.pausedDestinations,
                table: {
                    var table = Table([
                        .init("DESTINATION"), .init("PAUSED", .right), .init("WAITING", .right),
                        .init("NEXT PROBE", .right), .init("ERROR"), .init("REASON"),
                    ])
                    for paused in report.pausedDestinations {
                        table.append([
                            paused.destination, ago(paused.pausedAt) + " ago", String(paused.waiting),
                            paused.nextCheckAt.map {
                                $0 <= now ? "due" : "in " + Units.duration(milliseconds: $0 - now)
                            }
                                ?? "-",
                            paused.errorCode, paused.message,
                        ])
                    }
                    return table
                }, hint: "Fix the cause (bucket, permissions, credentials): the drainer probes and resumes by itself.")
            section(
                "Expired leases", shown: report.expiredLeases.count, total: report.totals.expiredLeases,
                table: {
                    var table = Table([
                        .init("ID", .right), .init("BUNDLE"), .init("SEQ", .right), .init("OWNER"), .init("LEASE"),
                        .init("UPLOAD"), .init("KEY"),
                    ])
                    for resource in report.expiredLeases {
                        let lease: String
                        if let expires = resource.leaseExpiresAt, expires >= now {
                            lease = "owner gone"
                        } else {
                            lease = "expired " + ago(resource.leaseExpiresAt) + " ago"
                        }
                        table.append([
                            String(resource.id), resource.bundleID, String(resource.seq), resource.leaseOwner ?? "-",
                            lease, resource.uploadID ?? "-", resource.objectKey,
                        ])
                    }
                    return table
                }, hint: "A running drainer takes these over at its next claim; 'abort ID' drops a multipart upload.")
            func bundles(_ list: [StuckReport.OpenBundle]) -> Table {
                var table = Table([
                    .init("BUNDLE"), .init("WRITER"), .init("AGE", .right), .init("IDLE", .right),
                    .init("RESOURCES", .right), .init("BYTES", .right),
                ])
                for bundle in list {
                    table.append([
                        bundle.id, "\(bundle.writerHost ?? "?"):\(bundle.writerPID.map(String.init) ?? "?")",
                        ago(bundle.createdAt), ago(bundle.updatedAt), String(bundle.resources),
                        Units.bytes(bundle.bytes),
                    ])
                }
                return table
            }
            section(
                "Open bundles whose writer is gone", shown: report.abandonedBundles.count,
                total: report.totals.abandonedBundles, table: { bundles(report.abandonedBundles) },
                hint:
                    "Seal (deliver what was written): spool-inspect seal BUNDLE; or drop: spool-inspect discard BUNDLE")
            section(
                "Open bundles of writers on other hosts", shown: report.openBundlesElsewhere.count,
                total: report.totals.openBundlesElsewhere, table: { bundles(report.openBundlesElsewhere) },
                hint:
                    "Their writers cannot be checked from \(report.host); judge by age (seal or discard need --force).")
            section(
                "Retried more than \(report.retriedMoreThan) times", shown: report.retried.count,
                total: report.totals.retried,
                table: {
                    var table = Table([
                        .init("ID", .right), .init("BUNDLE"), .init("STATE"), .init("TRIES", .right),
                        .init("NEXT", .right), .init("ERROR"), .init("KEY"),
                    ])
                    for resource in report.retried {
                        table.append([
                            String(resource.id), resource.bundleID, resource.state.rawValue, String(resource.attempts),
                            resource.nextAttemptAt <= now
                                ? "due" : "in " + Units.duration(milliseconds: resource.nextAttemptAt - now),
                            resource.lastErrorCode ?? "-", resource.objectKey,
                        ])
                    }
                    return table
                })
            return sections.isEmpty ? "Nothing is stuck." : sections.joined(separator: "\n\n")
        }
    }
}
