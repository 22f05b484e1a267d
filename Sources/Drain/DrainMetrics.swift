import Spool

/// What a drainer counts, in `PipelineMetrics` terms: the calls `Drainer` and `ResourceDelivery` make, over a
/// registry that exporters (`--metrics-file`, CloudWatch, EMF) read.
public final class DrainMetrics: Sendable {
    /// The registry the counters live in (the spool gauges are added to it by `MetricsReporter`).
    public let registry: MetricsRegistry

    /// Counters at zero in `registry` (a new one by default), every known series present from the start.
    public init(registry: MetricsRegistry = MetricsRegistry()) {
        self.registry = registry
        registry.register(PipelineMetrics.all)
        for kind in [ResourceKind.resource, .manifest] {
            let label = PipelineMetrics.kindLabel(kind)
            for result in PipelineMetrics.UploadResult.allCases {
                registry.touch(PipelineMetrics.uploads, labels: ["kind": label, "result": result.rawValue])
            }
            registry.touch(PipelineMetrics.uploadedBytes, labels: ["kind": label])
            registry.touch(PipelineMetrics.uploadDuration, labels: ["kind": label])
        }
        for counter in [
            PipelineMetrics.conflicts, PipelineMetrics.leasesReclaimed, PipelineMetrics.partsUploaded,
            PipelineMetrics.orphanUploadsAborted, PipelineMetrics.orphanFilesRemoved, PipelineMetrics.uploadsInFlight,
        ] {
            registry.touch(counter)
        }
    }

    /// The counters and gauges now.
    public func snapshot() -> MetricsSnapshot { registry.snapshot() }

    /// Counts how a delivery ended.
    ///
    /// - Parameters:
    ///   - outcome: The outcome.
    ///   - kind: Resource or `_bundle.json`.
    ///   - duration: From claim to the recorded outcome (observed for deliveries only).
    func record(_ outcome: DeliveryOutcome, kind: ResourceKind, duration: Duration) {
        let kindLabel = PipelineMetrics.kindLabel(kind)
        let result: PipelineMetrics.UploadResult
        switch outcome {
        case .delivered(let bytes):
            result = .delivered
            registry.add(PipelineMetrics.uploadedBytes, Double(bytes), labels: ["kind": kindLabel])
            registry.observe(PipelineMetrics.uploadDuration, duration.seconds, labels: ["kind": kindLabel])
        case .retryScheduled(let code):
            result = .retry
            registry.add(PipelineMetrics.retries, labels: ["code": PipelineMetrics.codeLabel(code)])
        case .failed(let code):
            result = code == "conflict" ? .conflict : .failed
            registry.add(PipelineMetrics.failures, labels: ["code": PipelineMetrics.codeLabel(code)])
            if result == .conflict { registry.add(PipelineMetrics.conflicts) }
        case .paused: result = .paused
        case .leaseLost: result = .leaseLost
        case .released: result = .released
        }
        registry.add(PipelineMetrics.uploads, labels: ["kind": kindLabel, "result": result.rawValue])
    }

    /// A claim took over an expired lease.
    func leaseReclaimed() { registry.add(PipelineMetrics.leasesReclaimed) }

    /// A multipart part was acknowledged and recorded.
    func partUploaded() { registry.add(PipelineMetrics.partsUploaded) }

    /// An upload no row referenced (or a leftover of a lost answer) was aborted.
    func orphanUploadAborted() { registry.add(PipelineMetrics.orphanUploadsAborted) }

    /// Orphan payload files were removed.
    func orphanFilesRemoved(_ count: Int) { registry.add(PipelineMetrics.orphanFilesRemoved, Double(count)) }

    /// Deliveries running now.
    func inFlight(_ count: Int) { registry.set(PipelineMetrics.uploadsInFlight, Double(count)) }
}

extension Duration {
    /// The duration in seconds, fractions included.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
