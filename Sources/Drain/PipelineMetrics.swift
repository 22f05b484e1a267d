import Spool

/// The metrics of a spool and its drainers: stable names, documented in docs/METRICS.md.
///
/// Gauges describe the spool now (any process can compute them from the index); counters and the histogram count
/// what one drainer process did since it started. `spool-inspect metrics` derives the counters it can from the audit
/// trail instead (totals over the spool's life). Label values are states, kinds, results, value-free error codes and
/// destination names: never a message, an object key, a fetched URL, an endpoint or a secret.
public enum PipelineMetrics {
    // MARK: Spool gauges

    /// Resources by state (`_bundle.json` markers not included).
    public static let resources = MetricDescriptor(
        "pipeline_storage_resources", .gauge, help: "Resources in the spool by state (bundle markers not included).",
        unit: .count, labelNames: ["state"])
    /// Payload bytes of resources by state.
    public static let resourceBytes = MetricDescriptor(
        "pipeline_storage_resource_bytes", .gauge,
        help: "Sizes of the spool's resources by state, in bytes (a done resource's payload is usually removed).",
        unit: .bytes, labelNames: ["state"])
    /// Bytes still to deliver (pending and uploading).
    public static let pendingBytes = MetricDescriptor(
        "pipeline_storage_pending_bytes", .gauge, help: "Payload bytes still to deliver (pending and uploading).",
        unit: .bytes)
    /// Payload bytes the spool holds on disk or inline.
    public static let heldBytes = MetricDescriptor(
        "pipeline_storage_held_bytes", .gauge,
        help: "Payload bytes the spool holds on disk or inline (what maxSpoolBytes limits).", unit: .bytes)
    /// Age of the oldest resource not delivered yet.
    public static let oldestPendingAge = MetricDescriptor(
        "pipeline_storage_oldest_pending_age_seconds", .gauge,
        help: "Seconds since the oldest pending or uploading resource was spooled; 0 when none.", unit: .seconds)
    /// Bundles by state.
    public static let bundles = MetricDescriptor(
        "pipeline_storage_bundles", .gauge, help: "Bundles in the spool by state.", unit: .count,
        labelNames: ["state"])
    /// `_bundle.json` markers waiting to be written.
    public static let manifestsPending = MetricDescriptor(
        "pipeline_storage_manifests_pending", .gauge, help: "Bundle markers (_bundle.json) waiting to be written.",
        unit: .count)
    /// Failed resources by error code.
    public static let failedResources = MetricDescriptor(
        "pipeline_storage_failed_resources", .gauge,
        help: "Resources in state failed by error code (spool-inspect retry requeues them).", unit: .count,
        labelNames: ["code"])
    /// 1 for a paused destination, 0 for one that delivers.
    public static let destinationPaused = MetricDescriptor(
        "pipeline_storage_destination_paused", .gauge,
        help: "1 when the destination is paused by a configuration or permission error, else 0.", unit: .none,
        labelNames: ["destination"])
    /// Paused destinations.
    public static let destinationsPaused = MetricDescriptor(
        "pipeline_storage_destinations_paused", .gauge,
        help: "Destinations paused by configuration or permission errors.",
        unit: .count)
    /// Open bundles whose writer process is gone.
    public static let abandonedOpenBundles = MetricDescriptor(
        "pipeline_storage_abandoned_open_bundles", .gauge,
        help: "Open bundles whose writer process is gone (seal or discard them).", unit: .count)

    /// The gauges computed from the spool's index.
    public static let spoolGauges = [
        resources, resourceBytes, pendingBytes, heldBytes, oldestPendingAge, bundles, manifestsPending,
        failedResources, destinationPaused, destinationsPaused, abandonedOpenBundles,
    ]

    // MARK: Delivery counters

    /// Claims delivered, retried, failed, ... by kind of object and result.
    public static let uploads = MetricDescriptor(
        "pipeline_storage_uploads_total", .counter,
        help: "Delivery attempts by kind of object (resource, manifest) and result.", unit: .count,
        labelNames: ["kind", "result"])
    /// Bytes of delivered objects.
    public static let uploadedBytes = MetricDescriptor(
        "pipeline_storage_uploaded_bytes_total", .counter, help: "Bytes of the objects delivered, by kind of object.",
        unit: .bytes, labelNames: ["kind"])
    /// How long a successful delivery took, from claim to recorded completion.
    public static let uploadDuration = MetricDescriptor(
        "pipeline_storage_upload_duration_seconds", .histogram,
        help: "Seconds from claim to recorded delivery of each delivered object, by kind of object.", unit: .seconds,
        labelNames: ["kind"], buckets: durationBuckets)
    /// Retries scheduled, by error code.
    public static let retries = MetricDescriptor(
        "pipeline_storage_retries_total", .counter, help: "Retries scheduled, by error code.", unit: .count,
        labelNames: ["code"])
    /// Resources that failed for good, by error code.
    public static let failures = MetricDescriptor(
        "pipeline_storage_failures_total", .counter,
        help: "Objects that failed for good (state failed), by error code.", unit: .count, labelNames: ["code"])
    /// Keys taken by a different object.
    public static let conflicts = MetricDescriptor(
        "pipeline_storage_conflicts_total", .counter,
        help: "Objects not written because a different object already held the key (failed with code conflict).",
        unit: .count)
    /// Expired leases taken over.
    public static let leasesReclaimed = MetricDescriptor(
        "pipeline_storage_leases_reclaimed_total", .counter,
        help: "Claims that took over an expired lease (a drainer died or stalled).", unit: .count)
    /// Multipart parts acknowledged by the store.
    public static let partsUploaded = MetricDescriptor(
        "pipeline_storage_multipart_parts_uploaded_total", .counter, help: "Multipart parts uploaded and recorded.",
        unit: .count)
    /// Multipart uploads no row referenced, aborted.
    public static let orphanUploadsAborted = MetricDescriptor(
        "pipeline_storage_orphan_uploads_aborted_total", .counter,
        help: "Multipart uploads no resource referenced any more, aborted.", unit: .count)
    /// Payload files no row referenced, removed.
    public static let orphanFilesRemoved = MetricDescriptor(
        "pipeline_storage_orphan_files_removed_total", .counter,
        help: "Payload files no resource referenced, removed from the spool.", unit: .count)
    /// Deliveries running now.
    public static let uploadsInFlight = MetricDescriptor(
        "pipeline_storage_uploads_in_flight", .gauge, help: "Deliveries this drainer is running now.", unit: .count)

    /// What one drainer process counts.
    public static let drainerFamilies = [
        uploads, uploadedBytes, uploadDuration, retries, failures, conflicts, leasesReclaimed, partsUploaded,
        orphanUploadsAborted, orphanFilesRemoved, uploadsInFlight,
    ]

    /// Every family, in the order they are written.
    public static let all = spoolGauges + drainerFamilies

    /// Bucket bounds of the upload duration histogram, in seconds: from a small object on a local disk to a
    /// multi-gigabyte multipart upload.
    public static let durationBuckets: [Double] = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
    ]

    // MARK: Label values

    /// The `result` label of `pipeline_storage_uploads_total`.
    public enum UploadResult: String, Sendable, CaseIterable {
        /// The object is in place and recorded `done`.
        case delivered
        /// A retry was scheduled (backoff).
        case retry
        /// Failed for good with an error other than `conflict`.
        case failed
        /// Failed for good: a different object holds the key.
        case conflict
        /// Given back because its destination is paused.
        case paused
        /// Another drainer took the lease over; nothing was recorded by this one.
        case leaseLost = "lease_lost"
        /// Given back unfinished when the drainer stopped.
        case released
    }

    /// The `kind` label: `resource` or `manifest` (a bundle's `_bundle.json`).
    public static func kindLabel(_ kind: ResourceKind) -> String { kind.rawValue }

    /// The longest error code kept as a label value.
    public static let maximumCodeLength = 64

    /// An error code as a label value: letters, digits, `.`, `_` and `-`, at most 64 characters; anything else
    /// (which no code of ours or S3's looks like) becomes `other`, so a label never carries a message or a value.
    public static func codeLabel(_ code: String) -> String {
        let allowed = code.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: ".")
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
        guard !code.isEmpty, code.utf8.count <= maximumCodeLength, allowed else { return "other" }
        return code
    }

    /// A destination as a label value: `s3://bucket` or `file:///path`. The endpoint URL is left out.
    public static func destinationLabel(_ spec: DestinationSpec) -> String {
        switch spec.kind {
        case .s3: "s3://\(spec.location)"
        case .file: "file://\(spec.location)"
        }
    }

    /// The release reasons that mean the destination was paused (see `ResourceDelivery` and `Drainer`).
    static let pausedReleasePrefixes = ["destination paused", "destination unusable"]

    // MARK: From the spool

    /// Sets the spool gauges from a status and the destinations.
    public static func recordSpoolGauges(
        _ status: SpoolStatus, destinations: [DestinationRecord], into registry: MetricsRegistry
    ) {
        registry.replaceSeries(resources, status.resources.map { (["state": $0.state], Double($0.count)) })
        registry.replaceSeries(resourceBytes, status.resources.map { (["state": $0.state], Double($0.bytes)) })
        let toDeliver = status.resources.filter {
            $0.state == ResourceState.pending.rawValue || $0.state == ResourceState.uploading.rawValue
        }
        registry.set(pendingBytes, Double(toDeliver.reduce(0) { $0 + $1.bytes }))
        registry.set(heldBytes, Double(status.heldBytes))
        let age = status.oldestPendingSpooledAt.map { max(0, Double(status.generatedAt - $0) / 1000) } ?? 0
        registry.set(oldestPendingAge, age)
        registry.replaceSeries(bundles, status.bundles.map { (["state": $0.state], Double($0.count)) })
        registry.set(manifestsPending, Double(status.manifestsPending))
        var failed: [String: Int] = [:]
        for total in status.failuresByCode { failed[codeLabel(total.code), default: 0] += total.count }
        registry.replaceSeries(failedResources, failed.map { (["code": $0.key], Double($0.value)) })
        var paused: [String: Double] = [:]
        for destination in destinations {
            let label = destinationLabel(destination.spec)
            paused[label] = max(paused[label] ?? 0, destination.pausedAt == nil ? 0 : 1)
        }
        registry.replaceSeries(destinationPaused, paused.map { (["destination": $0.key], $0.value) })
        registry.set(destinationsPaused, Double(destinations.filter { $0.pausedAt != nil }.count))
        registry.set(abandonedOpenBundles, Double(status.abandonedOpenBundles.count))
    }

    /// Adds the delivery counters the audit trail can tell (totals over the spool's life) to a registry: uploads by
    /// result except `lease_lost` (nothing is recorded when a lease is lost), uploaded bytes of rows still in the
    /// index, retries and failures by code, conflicts, reclaimed leases. Rows gone from the index count as resources.
    public static func recordAuditCounters(_ totals: AuditTotals, into registry: MetricsRegistry) {
        let derivable: [UploadResult] = [.delivered, .retry, .failed, .conflict, .paused, .released]
        for kind in [ResourceKind.resource, .manifest] {
            for result in derivable {
                registry.touch(uploads, labels: ["kind": kindLabel(kind), "result": result.rawValue])
            }
            registry.touch(uploadedBytes, labels: ["kind": kindLabel(kind)])
        }
        registry.touch(conflicts)
        registry.register([retries, failures])
        for outcome in totals.outcomes {
            let kind = kindLabel(outcome.kind ?? .resource)
            let count = Double(outcome.count)
            let code = codeLabel(outcome.code ?? "unknown")
            let result: UploadResult
            switch outcome.action {
            case "resource.delivered":
                result = .delivered
                registry.add(uploadedBytes, Double(outcome.bytes), labels: ["kind": kind])
            case "resource.retry_scheduled":
                result = .retry
                registry.add(retries, count, labels: ["code": code])
            case "resource.failed":
                result = outcome.code == "conflict" ? .conflict : .failed
                registry.add(failures, count, labels: ["code": code])
                if result == .conflict { registry.add(conflicts, count) }
            case "resource.released":
                let reason = outcome.code ?? ""
                result = pausedReleasePrefixes.contains { reason.hasPrefix($0) } ? .paused : .released
            default:
                continue
            }
            registry.add(uploads, count, labels: ["kind": kind, "result": result.rawValue])
        }
        registry.add(leasesReclaimed, Double(totals.leasesReclaimed))
    }
}

extension PipelineMetrics {
    /// The metrics any process can compute from a spool: the gauges, and (unless `includingAuditCounters` is false)
    /// the delivery counters the audit trail tells — what `spool-inspect metrics` prints.
    ///
    /// - Throws: `SpoolError` from the index.
    public static func spoolSnapshot(_ spool: SpoolStore, includingAuditCounters: Bool = true) async throws
        -> MetricsSnapshot
    {
        let registry = MetricsRegistry()
        registry.register(spoolGauges)
        recordSpoolGauges(try await spool.status(), destinations: try await spool.destinations(), into: registry)
        if includingAuditCounters {
            recordAuditCounters(try await spool.auditTotals(), into: registry)
        }
        return registry.snapshot()
    }
}
