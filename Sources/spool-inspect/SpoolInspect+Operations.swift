import ArgumentParser
import CommandLineSupport
import Drain
import Foundation
import Spool

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// The repairs: retry, abort, seal, discard, purge. Each change and its `operator.*` audit event are one transaction
// in the spool; what a live drainer or writer holds is refused (exit 75) unless forced.

extension SpoolInspect {
    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Requeue failed resources: pending, due now, attempts back to 0.",
            discussion: """
                The last error moves from the resource to its 'operator.retry' audit event ('show ID' and 'audit' \
                show it). All or nothing: if one of the ids cannot be requeued, none is.

                Exit status: 0 requeued; 2 no such resource or spool; 65 a resource is not failed (pending ones are \
                accepted, and left as they are, with --force); 73 spool not writable; 75 spool busy; 1 other failure.
                """)

        @OptionGroup var common: CommonOptions

        @Argument(help: "Resource ids (from 'stuck' or 'list --state failed').")
        var ids: [Int64] = []

        @Flag(help: "Requeue every failed resource.")
        var allFailed = false

        @Flag(help: "Accept resources that are already pending (they are left as they are).")
        var force = false

        func validate() throws {
            if ids.isEmpty && !allFailed { throw ValidationError("give resource ids or --all-failed") }
            if !ids.isEmpty && allFailed { throw ValidationError("give resource ids or --all-failed, not both") }
        }

        func run() async throws {
            try await runReportingErrors(tool: "spool-inspect") {
                let spool = try common.openSpool()
                let result =
                    allFailed ? try await spool.requeueAllFailed() : try await spool.requeue(ids, allowPending: force)
                if common.json {
                    try JSONOutput.print(RetryOutput(result))
                    return
                }
                var line = "requeued \(result.requeued.count) resource\(result.requeued.count == 1 ? "" : "s")"
                if !result.requeued.isEmpty && result.requeued.count <= 20 {
                    line += ": " + result.requeued.map(String.init).joined(separator: ", ")
                }
                print(line)
                if !result.unchanged.isEmpty {
                    print(
                        "left \(result.unchanged.count) already pending: "
                            + result.unchanged.map(String.init).joined(separator: ", "))
                }
            }
        }

        struct RetryOutput: Encodable {
            var requeued: [Int64]
            var unchanged: [Int64]
            var count: Int
            init(_ result: RequeueResult) {
                requeued = result.requeued
                unchanged = result.unchanged
                count = result.requeued.count
            }
        }
    }

    struct Abort: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Abort a resource's multipart upload at its destination, then requeue it (or fail it).",
            discussion: """
                Aborts the upload at the destination (an upload the destination no longer has is simply forgotten), \
                forgets it and its parts in the spool, and requeues the resource: the next delivery starts a new \
                upload. With --fail the resource is marked failed with error 'aborted-by-operator' instead. Refused \
                while a running drainer holds the resource's lease, unless --force (the drainer then loses its claim).

                Credentials: the AWS credential chain, as spool-drain (environment, --profile or AWS_PROFILE in the \
                shared files, web identity, container, EC2 instance metadata). Region and endpoint: what the spool \
                recorded for the destination, else --region/--endpoint, else the AWS variables.

                Exit status: 0 aborted; 2 no such resource or spool; 65 the resource has no multipart upload in \
                progress (or is delivered); 75 a live drainer holds it, or the spool is busy; 1 the destination \
                refused (the spool is unchanged) or other failure.
                """)

        @OptionGroup var common: CommonOptions

        @Argument(help: "The resource id.")
        var id: Int64

        @Flag(help: "Mark the resource failed (aborted-by-operator) instead of requeuing it.")
        var fail = false

        @Flag(help: "Abort even though a running drainer holds the resource's lease.")
        var force = false

        @Option(help: "Region for a destination that recorded none.")
        var region: String?

        @Option(help: "S3 endpoint for a destination that recorded none.")
        var endpoint: String?

        @Option(help: "A PEM file of CA certificates to verify the endpoint's TLS certificate with.")
        var caBundle: String?

        @Option(help: "AWS profile for a destination that recorded none (default: AWS_PROFILE, else default).")
        var profile: String?

        func run() async throws {
            try await runReportingErrors(tool: "spool-inspect") {
                let spool = try common.openSpool()
                let plan = try await spool.prepareAbort(id, force: force)
                let stores = DestinationStores(
                    region: region, endpoint: endpoint, caBundle: caBundle, uploadTimeout: nil, profile: profile)
                let store = try stores.store(for: plan.destination)
                let outcome: String
                do {
                    try await store.abortUpload(key: plan.resource.objectKey, uploadID: plan.uploadID)
                    outcome = "aborted"
                } catch let error as ObjectStoreError where error.kind == .noSuchUpload {
                    outcome = "gone"
                } catch {
                    throw AbortFailure(
                        message:
                            "could not abort multipart upload \(plan.uploadID) of resource \(id) at "
                            + "\(store.displayName): \(error); the spool is unchanged")
                }
                let result = try await spool.completeAbort(plan, outcome: outcome, fail: fail, force: force)
                if common.json {
                    try JSONOutput.print(result)
                    return
                }
                let what =
                    outcome == "aborted"
                    ? "aborted multipart upload \(plan.uploadID)"
                    : "\(store.displayName) no longer had multipart upload \(plan.uploadID); forgot it"
                let now =
                    result.state == .failed
                    ? "resource \(id) is failed (aborted-by-operator)"
                    : "resource \(id) is pending again: the next delivery starts a new upload"
                print("\(what) (\(plan.resource.objectKey)); \(now)")
            }
        }
    }

    struct Seal: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Seal an open bundle whose writer is gone, so that it is delivered with what it holds.",
            discussion: """
                Its _bundle.json is delivered after its resources. Refused while the bundle's writer is alive on \
                this host, or when it runs on another host, unless --force (the writer's next write then fails).

                Exit status: 0 sealed (or already sealed or delivered); 2 no such bundle or spool; 75 its writer is \
                alive, or the spool is busy; 1 the bundle was discarded, or other failure.
                """)

        @OptionGroup var common: CommonOptions

        @Argument(help: "The bundle id.")
        var bundle: String

        @Flag(help: "Seal even though its writer is alive (or on another host).")
        var force = false

        func run() async throws {
            try await runReportingErrors(tool: "spool-inspect") {
                let (record, changed) = try await common.openSpool().sealAsOperator(bundle, force: force)
                if common.json {
                    try JSONOutput.print(SealOutput(bundle: record, changed: changed))
                } else if changed {
                    print(
                        "sealed bundle \(bundle) (\(record.resourceCount) resources); its _bundle.json is delivered "
                            + "after them")
                } else {
                    print("bundle \(bundle) is already \(record.state.rawValue); nothing to do")
                }
            }
        }

        struct SealOutput: Encodable {
            var bundle: BundleRecord
            var changed: Bool
        }
    }

    struct Discard: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drop a bundle: its undelivered resources and their payloads are removed.",
            discussion: """
                The bundle becomes 'discarded'; its pending and failed resources (and uploading ones whose lease \
                expired) are deleted with their payloads, each with a 'resource.discarded' audit event; its \
                _bundle.json is not delivered; delivered resources stay as they are (their objects are not deleted). \
                Multipart uploads of removed resources are aborted by the drainer's orphan sweep. Asks for \
                confirmation on a terminal; --yes skips it, and without a terminal --yes is required.

                Exit status: 0 discarded (or already discarded); 2 no such bundle or spool; 64 not confirmed; 65 the \
                bundle is delivered; 75 a live drainer is uploading one of its resources, or its writer is alive \
                (--force overrides the writer), or the spool is busy; 1 other failure.
                """)

        @OptionGroup var common: CommonOptions

        @Argument(help: "The bundle id.")
        var bundle: String

        @Flag(name: [.customShort("y"), .long], help: "Do not ask for confirmation.")
        var yes = false

        @Flag(help: "Discard even though its writer is alive (or on another host).")
        var force = false

        func run() async throws {
            try await runReportingErrors(tool: "spool-inspect") {
                let spool = try common.openSpool()
                let plan = try await spool.discardPlan(bundle)
                // Ask only when the discard can go ahead; otherwise discardBundle refuses, changing nothing.
                let refused =
                    plan.state == .discarded || plan.state == .delivered || plan.liveLeases > 0
                    || (!force && (plan.writerAlive || plan.writerElsewhere))
                if !refused {
                    try Confirmation.require(
                        "discard bundle \(bundle) with \(plan.undeliveredResources) undelivered resources "
                            + "(\(Units.bytes(plan.undeliveredBytes)))? [y/N] ",
                        assumeYes: yes, action: "discard bundle \(bundle)")
                }
                let result = try await spool.discardBundle(bundle, force: force)
                if common.json {
                    try JSONOutput.print(result)
                } else if result.changed {
                    print(
                        "discarded bundle \(bundle): removed \(result.removedResources) undelivered resources "
                            + "(\(Units.bytes(result.removedBytes))), kept \(result.keptDelivered) delivered")
                } else {
                    print("bundle \(bundle) is already discarded; nothing to do")
                }
            }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove the payloads kept for delivered resources (spool-drain --retain-delivered).",
            discussion: """
                Removes the payload (file or inline bytes) of every resource delivered longer ago than --older-than. \
                The rows stay, marked 'removed': ids are never reused and 'show' and 'audit' keep their history. \
                Each batch appends an 'operator.purge' audit event with its counts. Asks for confirmation on a \
                terminal; --yes skips it, and without a terminal --yes is required.

                Exit status: 0 purged (or nothing to purge); 2 no spool; 64 usage or not confirmed; 73 spool not \
                writable; 75 spool busy; 1 other failure.
                """)

        @OptionGroup var common: CommonOptions

        @Flag(help: "Purge payloads of delivered resources (required: the only kind purge removes).")
        var delivered = false

        @Option(help: "Only resources delivered longer ago than this (e.g. 1h, 7d).")
        var olderThan: String

        @Flag(name: [.customShort("y"), .long], help: "Do not ask for confirmation.")
        var yes = false

        @Flag(help: "Only show what would be removed.")
        var dryRun = false

        func validate() throws {
            guard delivered else {
                throw ValidationError("give --delivered: purge removes only the payloads of delivered resources")
            }
            guard Units.parseDuration(olderThan) != nil else {
                throw ValidationError("--older-than '\(olderThan)' is not a duration; use e.g. 30s, 10m, 2h, 7d")
            }
        }

        func run() async throws {
            try await runReportingErrors(tool: "spool-inspect") {
                let spool = try common.openSpool()
                let cutoff = spool.options.clock.nowMilliseconds() - Units.parseDuration(olderThan)!
                let preview = try await spool.purgeDeliveredPayloads(completedBefore: cutoff, dryRun: true)
                var result = preview
                if !dryRun && preview.payloads > 0 {
                    try Confirmation.require(
                        "purge the payloads of \(preview.payloads) resources delivered more than \(olderThan) ago "
                            + "(\(Units.bytes(preview.bytes)))? [y/N] ",
                        assumeYes: yes, action: "purge delivered payloads")
                    result = try await spool.purgeDeliveredPayloads(completedBefore: cutoff, dryRun: false)
                }
                if common.json {
                    try JSONOutput.print(result)
                } else if result.payloads == 0 {
                    print(
                        "nothing to purge: no payload kept for a resource delivered before "
                            + Units.timestamp(milliseconds: cutoff))
                } else {
                    print(
                        "\(result.dryRun ? "would purge" : "purged") the payloads of \(result.payloads) resources "
                            + "(\(Units.bytes(result.bytes))) delivered before \(Units.timestamp(milliseconds: cutoff))"
                    )
                }
            }
        }
    }
}

/// The destination refused to abort an upload.
struct AbortFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Asking before destructive actions.
enum Confirmation {
    /// Returns when the operator confirmed (or `assumeYes`); otherwise exits with status 64. Without a terminal on
    /// standard input there is nobody to ask: `--yes` is required.
    static func require(_ question: String, assumeYes: Bool, action: String) throws {
        if assumeYes { return }
        guard isatty(STDIN_FILENO) == 1 else {
            printError(
                "spool-inspect: refusing to \(action) without confirmation: standard input is not a terminal; pass "
                    + "--yes")
            throw ExitCode(ExitStatus.usage)
        }
        FileHandle.standardError.write(Data(question.utf8))
        let answer = readLine()?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
        guard answer == "y" || answer == "yes" else {
            printError("spool-inspect: \(action): not confirmed; nothing was changed")
            throw ExitCode(ExitStatus.usage)
        }
    }
}
