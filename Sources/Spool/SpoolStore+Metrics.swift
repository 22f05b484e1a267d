/// What the audit trail says delivery did over the spool's life: outcomes of claims by action, resource kind and
/// error code, and reclaimed leases. `spool-inspect metrics` turns it into counters without a drainer running.
public struct AuditTotals: Sendable, Codable, Hashable {
    /// Events of one action for one kind of row, with one error code (or release reason).
    public struct Outcome: Sendable, Codable, Hashable {
        /// The audit action: `resource.delivered`, `resource.retry_scheduled`, `resource.failed`,
        /// `resource.released`.
        public var action: String
        /// Resource or `_bundle.json`; nil when the row is gone from the index (discarded or purged).
        public var kind: ResourceKind?
        /// The error code (retries, failures) or the release reason (releases); nil for deliveries.
        public var code: String?
        /// How many events.
        public var count: Int
        /// For deliveries: the payload bytes of the rows still in the index.
        public var bytes: Int64
    }

    /// Delivery outcomes, grouped.
    public var outcomes: [Outcome]
    /// `lease.reclaimed` events: claims that took over an expired lease (a drainer died or stalled).
    public var leasesReclaimed: Int
}

extension SpoolStore {
    /// The audit actions `auditTotals()` groups.
    static let outcomeActions = [
        "resource.delivered", "resource.retry_scheduled", "resource.failed", "resource.released",
    ]

    /// Totals of delivery outcomes from the audit trail: one pass over it, grouped by action, the row's kind and the
    /// error code or release reason (both value-free: codes, never messages).
    ///
    /// Reads the whole trail: seconds for tens of millions of events; meant for operators and periodic jobs, not for
    /// every drainer loop.
    /// - Throws: `SpoolError` from the index.
    public func auditTotals() async throws -> AuditTotals {
        try await database.run { connection in
            let outcomes = try connection.query(
                """
                SELECT a.action, r.kind,
                       CASE a.action WHEN 'resource.released' THEN json_extract(a.detail, '$.reason')
                                     WHEN 'resource.delivered' THEN NULL
                                     ELSE json_extract(a.detail, '$.error') END AS code,
                       COUNT(*), COALESCE(SUM(CASE a.action WHEN 'resource.delivered' THEN r.size END), 0)
                FROM audit_events a LEFT JOIN resources r ON r.id = a.resource_id
                WHERE a.action IN (?, ?, ?, ?)
                GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
                """, Self.outcomeActions.map { .text($0) }
            ) { row in
                AuditTotals.Outcome(
                    action: row.text(0), kind: row.optionalText(1).flatMap(ResourceKind.init(rawValue:)),
                    code: row.optionalText(2), count: row.int(3), bytes: row.int64(4))
            }
            let reclaimed =
                try connection.queryFirst(
                    "SELECT COUNT(*) FROM audit_events WHERE action = 'lease.reclaimed'", [], { $0.int(0) }) ?? 0
            return AuditTotals(outcomes: outcomes, leasesReclaimed: reclaimed)
        }
    }
}
