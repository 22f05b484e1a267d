import Foundation
import Hashing

/// `_bundle.json`, the completion marker written after every resource of a bundle (SPEC §4): a consumer that sees it
/// can trust the whole bundle is there. Keys are sorted, so the same bundle always gives the same bytes.
public enum BundleManifest {
    /// The manifest's bytes.
    public static func encode(bundle: BundleRecord, resources: [ResourceRecord], deliveredAt: Int64) -> [UInt8] {
        var entries: [[String: Any]] = []
        for resource in resources {
            var entry: [String: Any] = [
                "seq": resource.seq, "key": resource.objectKey, "url": resource.url,
                "content_type": resource.contentType, "status_code": resource.statusCode, "size": resource.size,
                "sha256": resource.sha256, "metadata": resource.metadata, "etag": resource.etag ?? "",
                "spooled_at": isoTimestamp(resource.spooledAt),
            ]
            if let versionID = resource.versionID { entry["version_id"] = versionID }
            entries.append(entry)
        }
        var document: [String: Any] = [
            "bundle_id": bundle.id, "metadata": bundle.metadata, "created_at": isoTimestamp(bundle.createdAt),
            "delivered_at": isoTimestamp(deliveredAt), "resource_count": resources.count, "resources": entries,
            "format": 1,
        ]
        if let sealedAt = bundle.sealedAt { document["sealed_at"] = isoTimestamp(sealedAt) }
        let data = try! JSONSerialization.data(
            withJSONObject: document, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        return Array(data) + [0x0A]
    }

    /// `2026-11-24T15:12:03.042Z`.
    public static func isoTimestamp(_ milliseconds: Int64) -> String {
        let date = Date(timeIntervalSince1970: Double(milliseconds) / 1000)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        func pad(_ value: Int?, _ width: Int = 2) -> String {
            let text = String(value ?? 0)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        let millis = Int(((milliseconds % 1000) + 1000) % 1000)
        return "\(pad(parts.year, 4))-\(pad(parts.month))-\(pad(parts.day))T\(pad(parts.hour)):\(pad(parts.minute)):"
            + "\(pad(parts.second)).\(pad(millis, 3))Z"
    }
}

/// SHA-256 (hex) and CRC32C of bytes in memory.
public struct PayloadDigest: Sendable, Hashable {
    /// Lowercase hex SHA-256.
    public var sha256: String
    /// CRC32C.
    public var crc32c: UInt32

    /// Digests of `bytes`.
    public static func compute(_ bytes: [UInt8]) -> PayloadDigest {
        PayloadDigest(sha256: SHA256Hasher.hexDigest(bytes), crc32c: CRC32C.checksum(bytes))
    }
}
