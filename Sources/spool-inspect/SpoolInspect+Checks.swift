import ArgumentParser
import CommandLineSupport
import Foundation
import Spool

// Checking and searching: verify, find, audit.

extension SpoolInspect {
    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the index and every payload; list orphans; --fix repairs what can be repaired.",
            discussion: """
                Runs SQLite's integrity and foreign-key checks; reads every payload the spool holds (files streamed, \
                inline bytes from the index) and compares its size and SHA-256 with what the writer recorded; lists \
                payload files no resource refers to (older than --orphan-age: younger ones may be a write in \
                progress), inline bytes of resources that are not inline, and multipart uploads no resource refers \
                to (spool-drain aborts those).

                --fix removes orphan files and stray inline bytes, and marks each undelivered resource whose payload \
                is missing or damaged 'failed' (error payload-missing or corrupt-payload: it cannot be delivered), \
                dropping the bad bytes; for a delivered resource only the damaged retained copy is dropped. \
                Resources a running drainer holds are left to it. An 'operator.verify' audit event records the counts.

                Exit status: 0 clean; 1 problems found (also when --fix fixed them: run verify again to confirm); \
                2 no spool; 73 spool not writable; 75 spool busy; 76 the index is damaged beyond reading.
                """)

        @OptionGroup var common: CommonOptions

        @Flag(help: "Repair: remove orphans, fail resources whose payload is missing or damaged.")
        var fix = false

        @Option(help: "Report (and with --fix remove) unreferenced payload files older than this.")
        var orphanAge = "10m"

        func validate() throws {
            guard Units.parseDuration(orphanAge) != nil else {
                throw ValidationError("--orphan-age '\(orphanAge)' is not a duration; use e.g. 0s, 10m, 1h")
            }
        }

        func run() async throws {
            try await runReportingErrors(tool: "spool-inspect") {
                let report = try await common.openSpool().verify(
                    fix: fix, orphanMinimumAge: .milliseconds(Units.parseDuration(orphanAge)!))
                if common.json {
                    try JSONOutput.print(report)
                } else {
                    print(render(report))
                }
                if !report.clean { throw ExitCode(ExitStatus.failure) }
            }
        }

        func render(_ report: VerifyReport) -> String {
            var lines = [
                "Index:    integrity \(report.integrity == ["ok"] ? "ok" : "FAILED")",
                "Payloads: \(report.resourcesChecked) checked (\(Units.bytes(report.bytesChecked)) hashed), "
                    + "\(report.filesInData) files in data/",
            ]
            guard !report.clean else {
                lines.append("No problems found.")
                return lines.joined(separator: "\n")
            }
            lines.append("")
            var table = Table([
                .init("PROBLEM"), .init("RESOURCE", .right), .init("BUNDLE"), .init("PATH"), .init("DETAIL"),
                .init(report.fixRequested ? "FIXED" : "FIX"),
            ])
            for problem in report.problems {
                let fix: String
                if report.fixRequested {
                    fix = problem.fixed ? "yes: " + problem.fix : (problem.fix.isEmpty ? "no" : "no: " + problem.fix)
                } else {
                    fix = problem.fix.isEmpty ? "-" : problem.fix
                }
                table.append([
                    problem.kind, problem.resourceID.map(String.init) ?? "", problem.bundleID ?? "", problem.path ?? "",
                    problem.detail, fix,
                ])
            }
            lines.append(table.render())
            lines.append("")
            let orphanFiles = report.problems.filter { $0.kind == "orphan-file" }.count
            if orphanFiles > 100 {
                lines.append(
                    "\(orphanFiles) payload files are referenced by no resource: the index may have lost its latest "
                        + "commits (a damaged or truncated WAL, a restored backup). They are the only copy of those "
                        + "resources: keep them until you know (spool-drain does not remove that many).")
                lines.append("")
            }
            let count = report.problems.count
            if report.fixRequested {
                lines.append("\(count) problem\(count == 1 ? "" : "s") found, \(report.fixedCount) fixed.")
            } else {
                lines.append("\(count) problem\(count == 1 ? "" : "s") found; --fix repairs what can be repaired.")
            }
            return lines.joined(separator: "\n")
        }
    }

    struct Find: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Find resources by URL pattern, metadata value or SHA-256.",
            discussion: """
                --url takes a pattern where '*' matches any run of characters (e.g. '*example.com/2026/*'); other \
                characters match themselves, ASCII letters case-insensitively. --meta key=value matches a metadata \
                value exactly. --sha256 matches the content's digest. Given together, all must match. Searches scan \
                the index (no index on these columns): narrow with --limit on very large spools.

                Exit status: 0 success (also when nothing matches); 2 no spool; 64 usage; 65 invalid metadata key or \
                SHA-256; 1 other failure.
                """)

        @OptionGroup var common: CommonOptions

        @Option(help: "URL pattern; '*' matches any run of characters.")
        var url: String?

        @Option(help: "A metadata key=value the resource must have.")
        var meta: String?

        @Option(help: "The SHA-256 of the content (64 hex digits).")
        var sha256: String?

        @Option(help: "At most this many rows, lowest id first.")
        var limit = 100

        func validate() throws {
            if url == nil && meta == nil && sha256 == nil {
                throw ValidationError("give --url PATTERN, --meta key=value or --sha256 HEX")
            }
            if let meta { _ = try parseKeyValuePairs([meta], option: "--meta") }
            if limit < 0 { throw ValidationError("--limit must not be negative") }
        }

        func run() async throws {
            try await runReportingErrors(tool: "spool-inspect") {
                if let sha256, sha256.count != 64 || !sha256.allSatisfy(\.isHexDigit) {
                    throw SpoolError(.invalidConfiguration, "--sha256 '\(sha256)' is not 64 hexadecimal digits")
                }
                let pair = try meta.map { try parseKeyValuePairs([$0], option: "--meta").first! }
                let query = FindQuery(
                    urlPattern: url, metadata: pair.map { (key: $0.key, value: $0.value) }, sha256: sha256,
                    limit: limit)
                let resources = try await common.openSpool().findResources(query)
                if common.json {
                    try JSONOutput.print(resources)
                    return
                }
                guard !resources.isEmpty else {
                    print("no resources match")
                    return
                }
                var table = Table([
                    .init("ID", .right), .init("BUNDLE"), .init("STATE"), .init("KEY"), .init("URL"),
                ])
                for resource in resources {
                    table.append([
                        String(resource.id), resource.bundleID, resource.state.rawValue, resource.objectKey,
                        resource.url,
                    ])
                }
                print(table.render())
                if resources.count == limit { print("(first \(limit); raise --limit for more)") }
            }
        }
    }

    struct Audit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The audit trail: who did what, when (a compliance report).",
            discussion: """
                Every state change and every operator action, oldest first: the time, the actor \
                (user@host:pid), the action (e.g. resource.spooled, resource.delivered, operator.retry), the bundle \
                and resource, and details. --since and --until take an ISO 8601 time (2026-11-24T10:00:00Z; no zone \
                means UTC) or a duration ago (2h, 7d). --action takes a name or a pattern with '*' (operator.*).

                --json prints JSON lines, one event per line, every matching event (streamed): for export. The table \
                shows the last --limit events (default 100).

                Exit status: 0 success; 2 no spool; 64 usage; 1 other failure.
                """)

        @OptionGroup var common: CommonOptions

        @Option(help: "Events at or after this time: ISO 8601 or a duration ago (2h).")
        var since: String?

        @Option(help: "Events before this time: ISO 8601 or a duration ago.")
        var until: String?

        @Option(help: "Only events about this resource.")
        var resource: Int64?

        @Option(help: "Only events about this bundle.")
        var bundle: String?

        @Option(help: "Only this action, or a pattern with '*' (e.g. operator.*).")
        var action: String?

        @Option(help: "Only the last N matching events (default: all with --json, 100 for the table).")
        var limit: Int?

        func validate() throws {
            for (name, value) in [("--since", since), ("--until", until)] {
                if let value, Units.parseTime(value, now: 0) == nil {
                    throw ValidationError(
                        "\(name) '\(value)' is neither an ISO 8601 time (2026-11-24T10:00:00Z) nor a duration (2h)")
                }
            }
            if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        }

        func run() async throws {
            try await runReportingErrors(tool: "spool-inspect") {
                let spool = try common.openSpool()
                let now = spool.options.clock.nowMilliseconds()
                let query = AuditQuery(
                    since: since.flatMap { Units.parseTime($0, now: now) },
                    until: until.flatMap { Units.parseTime($0, now: now) }, resourceID: resource, bundleID: bundle,
                    action: action)
                if common.json {
                    try await exportLines(spool, query)
                    return
                }
                let shown = limit ?? 100
                let events = try await spool.lastAuditEvents(query, limit: shown)
                guard !events.isEmpty else {
                    print("no audit events match")
                    return
                }
                var table = Table([
                    .init("WHEN"), .init("ACTION"), .init("BY"), .init("BUNDLE"), .init("RESOURCE", .right),
                    .init("DETAIL"),
                ])
                for event in events {
                    table.append([
                        Units.timestamp(milliseconds: event.at), event.action,
                        "\(event.actorUser)@\(event.actorHost):\(event.actorPID)", event.bundleID ?? "",
                        event.resourceID.map(String.init) ?? "",
                        event.detail.keys.sorted().map { "\($0)=\(event.detail[$0]!)" }.joined(separator: " "),
                    ])
                }
                print(table.render())
                if events.count == shown {
                    let total = try await spool.auditEventCount(query)
                    if total > shown {
                        print(
                            "(the last \(shown) of \(total) events; narrow with --since, --resource, --bundle, "
                                + "--action, or raise --limit)")
                    }
                }
            }
        }

        /// JSON lines, streamed a page at a time so that exporting a long trail keeps memory flat.
        private func exportLines(_ spool: SpoolStore, _ query: AuditQuery) async throws {
            if let limit {
                for event in try await spool.lastAuditEvents(query, limit: limit) {
                    try JSONOutput.print(event, pretty: false)
                }
                return
            }
            var after: Int64 = 0
            while true {
                let page = try await spool.auditEvents(query, afterID: after, limit: 1000)
                for event in page { try JSONOutput.print(event, pretty: false) }
                guard let last = page.last, page.count == 1000 else { break }
                after = last.id
            }
        }
    }
}
