import ArgumentParser
import CommandLineSupport
import Foundation
import Spool

/// Shows what a spool holds: what is pending, what is stuck, what was delivered.
@main
struct SpoolInspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spool-inspect",
        abstract: "Show and repair what a spool holds: pending, stuck and delivered resources.",
        discussion: """
            Exit status: 0 success; 1 problems found (verify) or other failure; 2 spool, resource or bundle not \
            found; 64 usage, or a confirmation refused or impossible (no terminal and no --yes); 65 invalid input, \
            or an operation that does not apply (retrying a resource that is not failed); 73 spool not writable or \
            too new; 75 spool busy, or a live drainer or writer holds the subject (--force where offered); 76 spool \
            damaged. Each command's help lists its own.
            """,
        subcommands: [
            Status.self, List.self, Show.self, Stuck.self, Retry.self, Abort.self,
            Seal.self, Discard.self, Purge.self, Verify.self, Find.self, Audit.self, Metrics.self,
        ],
        defaultSubcommand: Status.self)
}

/// Options every subcommand takes.
struct CommonOptions: ParsableArguments {
    @OptionGroup var spoolDirectory: SpoolDirectoryOptions

    @Flag(help: "Print JSON (a stable contract, see docs/JSON.md) instead of tables.")
    var json = false

    func openSpool() throws -> SpoolStore {
        var options = SpoolOptions()
        options.createIfMissing = false
        return try SpoolStore.open(spoolDirectory.directory, options: options)
    }
}

extension SpoolInspect {
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Counts and bytes by state, oldest pending, failures by error code, paused destinations.")

        @OptionGroup var common: CommonOptions

        func run() async throws {
            try await runReportingErrors(tool: "spool-inspect") {
                let status = try await common.openSpool().status()
                if common.json {
                    try JSONOutput.print(status)
                } else {
                    print(render(status))
                }
            }
        }

        func render(_ status: SpoolStatus) -> String {
            var lines = ["Spool \(status.spool) (schema \(status.schemaVersion))", ""]
            var table = Table([.init("RESOURCES"), .init("COUNT", .right), .init("BYTES", .right)])
            for total in status.resources {
                table.append([total.state, String(total.count), Units.bytes(total.bytes)])
            }
            lines.append(table.render())
            lines.append("")
            lines.append(
                "Bundles:       "
                    + status.bundles.map { "\($0.state) \($0.count)" }.joined(separator: " · "))
            lines.append("Markers:       \(status.manifestsPending) _bundle.json waiting")
            lines.append("Held on disk:  \(Units.bytes(status.heldBytes))")
            if let oldest = status.oldestPendingSpooledAt {
                lines.append(
                    "Oldest pending: \(Units.duration(milliseconds: status.generatedAt - oldest)) ago "
                        + "(\(Units.timestamp(milliseconds: oldest)))")
            } else {
                lines.append("Oldest pending: nothing pending")
            }
            if status.failuresByCode.isEmpty {
                lines.append("Failures:      none")
            } else {
                lines.append("Failures by error code:")
                for failure in status.failuresByCode { lines.append("  \(failure.code): \(failure.count)") }
            }
            if status.pausedDestinations.isEmpty {
                lines.append("Paused:        none")
            } else {
                lines.append("Paused destinations:")
                for paused in status.pausedDestinations {
                    lines.append(
                        "  \(paused.destination) since \(Units.timestamp(milliseconds: paused.pausedAt)): "
                            + "\(paused.errorCode): \(paused.message)")
                }
            }
            if !status.destinations.isEmpty {
                lines.append("Destinations:")
                var table = Table([.init("ID", .right), .init("DESTINATION"), .init("BUCKET SET-UP"), .init("APPLIED")])
                for destination in status.destinations {
                    var setup = SpoolInspect.describe(destination.bucketSetup)
                    if let problem = destination.bucketSetupProblem { setup += ": " + problem }
                    if destination.paused { setup += " (destination paused)" }
                    table.append([
                        String(destination.id), destination.destination, setup,
                        destination.bucketSetupAppliedAt.map { Units.timestamp(milliseconds: $0) } ?? "-",
                    ])
                }
                lines.append(table.render())
            }
            if !status.abandonedOpenBundles.isEmpty {
                lines.append(
                    "Open bundles whose writer is gone (seal or discard them): "
                        + status.abandonedOpenBundles.joined(separator: ", "))
            }
            return lines.joined(separator: "\n")
        }
    }

    static func describe(_ state: DestinationStatus.BucketSetupState) -> String {
        switch state {
        case .applied: "applied"
        case .outdated: "outdated (options or prefixes changed; applied again before the next delivery)"
        case .pending: "not applied yet (applied before the first delivery)"
        case .invalid: "invalid options"
        case .notApplicable: "none (local directory)"
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List resources, oldest first.")

        @OptionGroup var common: CommonOptions

        @Option(help: "Only this state: pending, uploading, done, failed.")
        var state: ResourceState?

        @Option(help: "Only this bundle.")
        var bundle: String?

        @Option(help: "Only resources spooled longer ago than this (e.g. 30s, 10m, 2h, 1d).")
        var olderThan: String?

        @Option(help: "At most this many rows.")
        var limit = 100

        @Flag(help: "Include the bundles' _bundle.json rows.")
        var manifests = false

        func validate() throws {
            if let olderThan, Units.parseDuration(olderThan) == nil {
                throw ValidationError("--older-than '\(olderThan)' is not a duration; use e.g. 30s, 10m, 2h, 1d")
            }
            if limit < 0 { throw ValidationError("--limit must not be negative") }
        }

        func run() async throws {
            try await runReportingErrors(tool: "spool-inspect") {
                let spool = try common.openSpool()
                let now = spool.options.clock.nowMilliseconds()
                let filter = ResourceFilter(
                    state: state, bundleID: bundle,
                    spooledBefore: olderThan.flatMap(Units.parseDuration).map { now - $0 },
                    limit: limit, includeManifests: manifests)
                let resources = try await spool.listResources(filter)
                if common.json {
                    try JSONOutput.print(resources)
                    return
                }
                guard !resources.isEmpty else {
                    print("no resources match")
                    return
                }
                var table = Table([
                    .init("ID", .right), .init("BUNDLE"), .init("SEQ", .right), .init("STATE"),
                    .init("SIZE", .right), .init("TRIES", .right), .init("AGE", .right), .init("KEY"), .init("ERROR"),
                ])
                for resource in resources {
                    table.append([
                        String(resource.id), resource.bundleID, String(resource.seq), resource.state.rawValue,
                        Units.bytes(resource.size), String(resource.attempts),
                        Units.duration(milliseconds: now - resource.spooledAt), resource.objectKey,
                        resource.lastErrorCode ?? "",
                    ])
                }
                print(table.render())
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Every field of one resource, its multipart parts and its history.")

        @OptionGroup var common: CommonOptions

        @Argument(help: "The resource id (from 'list').")
        var id: Int64

        func run() async throws {
            try await runReportingErrors(tool: "spool-inspect") {
                let detail = try await common.openSpool().resourceDetail(id)
                if common.json {
                    try JSONOutput.print(detail)
                    return
                }
                print(render(detail))
            }
        }

        func bucketSetup(_ destination: DestinationRecord) -> String {
            guard destination.spec.kind == .s3 else { return "none (local directory)" }
            guard let setup = destination.bucketSetup else { return "not applied yet" }
            return "applied \(Units.timestamp(milliseconds: setup.appliedAt))"
                + (setup.appliedBy.map { " by \($0)" } ?? "")
        }

        func render(_ detail: ResourceDetail) -> String {
            let resource = detail.resource
            func time(_ value: Int64?) -> String { value.map { Units.timestamp(milliseconds: $0) } ?? "-" }
            var fields: [(String, String)] = [
                ("id", String(resource.id)),
                ("kind", resource.kind.rawValue),
                ("bundle", "\(resource.bundleID) (\(detail.bundle.state.rawValue))"),
                ("seq", String(resource.seq)),
                ("state", resource.state.rawValue),
                ("destination", detail.destination.spec.displayName),
                ("bucket set-up", bucketSetup(detail.destination)),
                ("key", resource.objectKey),
                ("url", resource.url),
                ("content type", resource.contentType),
                ("status code", String(resource.statusCode)),
                ("size", "\(Units.bytes(resource.size)) (\(resource.size) bytes)"),
                ("sha256", resource.sha256),
                ("crc32c", String(resource.crc32c, radix: 16)),
                (
                    "payload",
                    resource.payloadPath.map { "\(resource.payloadStorage.rawValue): \($0)" }
                        ?? resource.payloadStorage.rawValue
                ),
                ("attempts", String(resource.attempts)),
                ("next attempt", time(resource.nextAttemptAt)),
                ("lease", resource.leaseOwner.map { "\($0) until \(time(resource.leaseExpiresAt))" } ?? "-"),
                ("fencing token", String(resource.fencingToken)),
                ("last error", resource.lastErrorCode.map { "\($0): \(resource.lastErrorMessage ?? "")" } ?? "-"),
                ("upload id", resource.uploadID ?? "-"),
                ("etag", resource.etag ?? "-"),
                ("version id", resource.versionID ?? "-"),
                ("spooled", time(resource.spooledAt)),
                ("updated", time(resource.updatedAt)),
                ("completed", time(resource.completedAt)),
            ]
            for key in resource.metadata.keys.sorted() { fields.append(("meta \(key)", resource.metadata[key]!)) }
            let labelWidth = fields.map(\.0.count).max() ?? 0
            var lines = fields.map { $0.0 + String(repeating: " ", count: labelWidth - $0.0.count) + "  " + $0.1 }
            if !detail.parts.isEmpty {
                lines.append("")
                var parts = Table([.init("PART", .right), .init("SIZE", .right), .init("ETAG"), .init("RECORDED")])
                for part in detail.parts {
                    parts.append([String(part.partNumber), Units.bytes(part.size), part.etag, time(part.recordedAt)])
                }
                lines.append(parts.render())
            }
            lines.append("")
            var events = Table([.init("WHEN"), .init("ACTION"), .init("BY"), .init("DETAIL")])
            for event in detail.events {
                events.append([
                    time(event.at), event.action, "\(event.actorUser)@\(event.actorHost):\(event.actorPID)",
                    event.detail.keys.sorted().map { "\($0)=\(event.detail[$0]!)" }.joined(separator: " "),
                ])
            }
            lines.append(events.render())
            return lines.joined(separator: "\n")
        }
    }
}

extension ResourceState: ExpressibleByArgument {}
