import Drain
import Foundation
import PipelineStorage
import S3
import Testing

@testable import LocalS3Support
@testable import Spool

/// Where the end-to-end scenario delivers.
enum DeliveryTarget: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case directory
    case versionedBucket
    var testDescription: String { rawValue }
}

/// One resource of the scenario as the writer handed it over.
struct WrittenResource: Sendable {
    var spooled: SpooledResource
    var url: String
    var contentType: String
    var statusCode: Int
    var metadata: [String: String]
    /// SHA-256 computed by the test from the bytes it generated.
    var sha256: String
}

/// 200 resources in 10 bundles of 20: mostly small (0 B, 1 B, KiBs, the inline threshold ±1), some of 1–5 MiB (both
/// sides of the 5 MiB multipart threshold), and three large ones (7, 12 and 40 MiB: 2, 3 and 8 parts).
enum Scenario {
    static let bundleCount = 10
    static let perBundle = 20
    static let specialSizes = [
        0, 1, 2, 100, 1024, 4096, 65_535, 65_536, 65_537, 131_072, 1 << 20, 2 << 20, (3 << 20) + 7, (5 << 20) - 1,
        5 << 20, (7 << 20) + 12_345, 12 << 20, 40 << 20,
    ]

    static func size(of index: Int) -> Int {
        if index % 11 == 0, index / 11 < specialSizes.count { return specialSizes[index / 11] }
        if index % 17 == 5 { return 0 }
        return (index &* 2_654_435_761) % 20_000
    }

    static var totalBytes: Int { (0..<(bundleCount * perBundle)).reduce(0) { $0 + size(of: $1) } }

    /// Spools the scenario; bundle id → its resources in sequence order.
    static func write(into storage: PipelineStorage, tag: String) async throws -> [String: [WrittenResource]] {
        var written: [String: [WrittenResource]] = [:]
        for bundleNumber in 0..<bundleCount {
            let bundleID = "\(tag)-bundle-\(bundleNumber)"
            let resources = try await storage.withBundle(bundleID, metadata: ["batch": String(bundleNumber)]) {
                bundle in
                var resources: [WrittenResource] = []
                for index in bundleNumber * perBundle..<(bundleNumber + 1) * perBundle {
                    let size = size(of: index)
                    let chunks = contentChunks(size: size, seed: index)
                    let url =
                        index == 3
                        ? "https://example.com/café/ü-\(index).bin?x=1"
                        : "https://example.com/b\(bundleNumber)/resource-\(index).bin"
                    let contentType = index % 2 == 0 ? "application/octet-stream" : "text/plain; charset=utf-8"
                    let statusCode = index % 13 == 0 ? 404 : 200
                    let metadata = ["index": String(index), "fetched-by": "drain-tests"]
                    let spooled = try await bundle.writeResource(
                        url: url, contentType: contentType, statusCode: statusCode, metadata: metadata,
                        stream: chunkStream(chunks))
                    resources.append(
                        WrittenResource(
                            spooled: spooled, url: url, contentType: contentType, statusCode: statusCode,
                            metadata: metadata, sha256: sha256Hex(chunks: chunks)))
                }
                return resources
            }
            written[bundleID] = resources
        }
        return written
    }
}

@Suite("Delivery end to end: 200 resources in 10 bundles, 0 B to 40 MiB")
struct EndToEndDeliveryTests {
    @Test(
        "Every resource arrives exactly once with its bytes and metadata, _bundle.json last; the spool is emptied",
        arguments: DeliveryTarget.allCases)
    func deliversTheWholeScenario(target: DeliveryTarget) async throws {
        #expect(Scenario.totalBytes < 100 << 20)
        try await withTestDirectory { directory in
            let prefix = "data/"
            let storage: PipelineStorage
            var server: LocalS3.Server?
            var client: S3Client?
            var bucket = ""
            switch target {
            case .directory:
                storage = try PipelineStorage(
                    directory: directory.target, prefix: prefix, options: testStorageOptions(),
                    spool: .directory(directory.spool))
            case .versionedBucket:
                let local = try await LocalS3.shared.server()
                let s3 = localClient(local)
                bucket = try await freshBucket(s3, versioned: true)
                server = local
                client = s3
                storage = try PipelineStorage(
                    bucket: bucket, prefix: prefix, region: local.region, endpoint: local.endpoint,
                    options: testStorageOptions(), spool: .directory(directory.spool))
            }
            let spool = storage.spool
            let written = try await Scenario.write(into: storage, tag: target.rawValue)
            let all = written.values.flatMap { $0 }
            #expect(all.count == 200)
            for resource in all {
                #expect(resource.spooled.sha256 == resource.sha256, "the writer recorded the SHA-256 of the bytes")
            }
            #expect(directoryEntries(directory.data).count == all.filter { $0.spooled.size > 64 << 10 }.count)

            let progress = try await drain(spool, resolver(server: server))
            #expect(progress.delivered == 210)
            #expect(progress.failed == 0)
            #expect(progress.retriesScheduled == 0)
            #expect(progress.pauses == 0)

            // The spool: every row done, every bundle delivered, nothing held, nothing pending.
            let rows = try await spool.allRows()
            #expect(rows.count == 210)
            #expect(rows.allSatisfy { $0.state == .done }, "\(rows.filter { $0.state != .done }.map(\.objectKey))")
            #expect(rows.allSatisfy { $0.attempts == 0 && $0.etag != nil && $0.payloadStorage == .removed })
            if target == .versionedBucket { #expect(rows.allSatisfy { $0.versionID != nil }) }
            for bundleID in written.keys {
                let bundle = try await spool.bundle(bundleID)
                #expect(bundle?.state == .delivered)
                #expect(bundle?.deliveredAt != nil)
            }
            #expect(directoryEntries(directory.data).isEmpty, "payload files are removed after delivery")
            #expect(try await spool.inlinePayloadCount() == 0, "inline payloads are removed after delivery")
            let status = try await spool.status()
            #expect(status.count(.pending) == 0 && status.count(.uploading) == 0 && status.count(.failed) == 0)
            #expect(status.count(.done) == 200)
            #expect(status.manifestsPending == 0)
            #expect(status.heldBytes == 0)
            #expect(status.oldestPendingSpooledAt == nil)
            #expect(status.bundles(.delivered) == 10)
            #expect(status.pausedDestinations.isEmpty)

            // The audit trail: each row delivered once, and each _bundle.json after all of its bundle's resources.
            let deliveredEvents = try await spool.auditEvents(action: "resource.delivered")
            var eventOf: [Int64: Int64] = [:]
            for event in deliveredEvents {
                let id = try #require(event.resourceID)
                #expect(eventOf[id] == nil, "resource \(id) recorded as delivered twice")
                eventOf[id] = event.id
            }
            #expect(eventOf.count == 210)
            let manifests = rows.filter { $0.kind == .manifest }
            #expect(manifests.count == 10)
            for manifest in manifests {
                let manifestEvent = try #require(eventOf[manifest.id])
                for resource in written[manifest.bundleID] ?? [] {
                    let resourceEvent = try #require(eventOf[resource.spooled.id])
                    #expect(resourceEvent < manifestEvent, "\(manifest.objectKey) was recorded before a resource")
                }
            }

            // The target.
            let expectedKeys = Set(all.map(\.spooled.objectKey) + manifests.map(\.objectKey))
            #expect(expectedKeys.count == 210)
            #expect(expectedKeys.allSatisfy { $0.hasPrefix(prefix) })
            #expect(manifests.allSatisfy { $0.objectKey.hasSuffix("/_bundle.json") })
            let fetch: @Sendable (String) async throws -> [UInt8]
            switch target {
            case .directory:
                let listed = filesUnder(directory.target)
                #expect(
                    listed.count == 210,
                    "no leftovers beside the objects: \(listed.filter { !expectedKeys.contains($0) })")
                #expect(Set(listed) == expectedKeys)
                let root = directory.target
                fetch = { key in try readFile(root + "/" + key) }
            case .versionedBucket:
                let client = try #require(client)
                let objects = try await client.listAllObjects(bucket: bucket, prefix: prefix)
                #expect(objects.count == 210)
                #expect(Set(objects.map(\.key)) == expectedKeys)
                let versions = try await client.listAllObjectVersions(bucket: bucket, prefix: prefix)
                #expect(versions.count == 210, "exactly one version per key")
                #expect(Set(versions.map(\.key)) == expectedKeys)
                #expect(versions.allSatisfy { !$0.isDeleteMarker && $0.isLatest })
                #expect(try await client.listAllMultipartUploads(bucket: bucket).isEmpty, "no unfinished uploads")
                let bucketName = bucket
                fetch = { key in try await client.getObjectBytes(bucket: bucketName, key: key).bytes }
            }

            for resource in all {
                let bytes = try await fetch(resource.spooled.objectKey)
                #expect(bytes.count == Int(resource.spooled.size), "\(resource.spooled.objectKey)")
                #expect(sha256Hex(bytes) == resource.spooled.sha256, "\(resource.spooled.objectKey)")
            }

            for manifest in manifests {
                let bytes = try await fetch(manifest.objectKey)
                #expect(sha256Hex(bytes) == manifest.sha256, "the marker is the bytes the spool recorded")
                let document = try #require(
                    try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any], "\(manifest.objectKey)")
                #expect(document["bundle_id"] as? String == manifest.bundleID)
                let bundleNumber = manifest.bundleID.split(separator: "-").last.map(String.init)
                #expect((document["metadata"] as? [String: String])?["batch"] == bundleNumber)
                #expect(document["resource_count"] as? Int == 20)
                #expect(document["sealed_at"] is String && document["created_at"] is String)
                let entries = try #require(document["resources"] as? [[String: Any]])
                let expected = written[manifest.bundleID] ?? []
                #expect(entries.count == expected.count)
                for (entry, resource) in zip(entries, expected) {
                    #expect(entry["key"] as? String == resource.spooled.objectKey)
                    #expect(entry["sha256"] as? String == resource.sha256)
                    #expect((entry["size"] as? NSNumber)?.int64Value == resource.spooled.size)
                    #expect((entry["etag"] as? String).map { !$0.isEmpty } == true, "ETag recorded")
                    #expect(entry["url"] as? String == resource.url)
                    #expect(entry["content_type"] as? String == resource.contentType)
                    #expect(entry["status_code"] as? Int == resource.statusCode)
                    #expect(entry["metadata"] as? [String: String] == resource.metadata)
                    if target == .versionedBucket { #expect(entry["version_id"] is String) }
                }
            }

            guard target == .versionedBucket, let client else { return }
            // The four objects of 5 MiB and more went up as multipart uploads (ETag "<md5>-<parts>"), recorded
            // before their first part and completed.
            let large = all.filter { $0.spooled.size >= 5 << 20 }
            #expect(large.count == 4)
            for resource in large {
                let parts = (resource.spooled.size + (5 << 20) - 1) / (5 << 20)
                let row = try await spool.row(resource.spooled.id)
                #expect(row.etag?.hasSuffix("-\(parts)") == true, "\(row.objectKey): ETag \(row.etag ?? "nil")")
            }
            let uploads = try await spool.recordedUploads()
            #expect(uploads.count == 4)
            #expect(uploads.values.allSatisfy { $0.finished && $0.outcome == "completed" })
            let single = try #require(all.first { $0.spooled.size == (5 << 20) - 1 })
            #expect(try await spool.row(single.spooled.id).etag?.contains("-") == false, "below the threshold: one PUT")

            for manifest in manifests {
                let manifestHead = try await client.headObject(bucket: bucket, key: manifest.objectKey)
                #expect(manifestHead.metadata["bundle-id"] == manifest.bundleID)
                let manifestTime = try #require(manifestHead.lastModified)
                for resource in written[manifest.bundleID] ?? [] {
                    let head = try await client.headObject(bucket: bucket, key: resource.spooled.objectKey)
                    #expect(head.contentLength == resource.spooled.size)
                    #expect(head.contentType == resource.contentType)
                    #expect(head.metadata["sha256"] == resource.sha256)
                    #expect(head.metadata["bundle-id"] == manifest.bundleID)
                    #expect(head.metadata["seq"] == String(resource.spooled.seq))
                    #expect(head.metadata["status-code"] == String(resource.statusCode))
                    #expect(head.metadata["spooled-at"] == BundleManifest.isoTimestamp(resource.spooled.spooledAt))
                    let expectedURL =
                        resource.url.contains("café")
                        ? resource.url.replacingOccurrences(of: "é", with: "%C3%A9")
                            .replacingOccurrences(of: "ü", with: "%C3%BC")
                        : resource.url
                    #expect(head.metadata["url"] == expectedURL)
                    let resourceTime = try #require(head.lastModified)
                    #expect(manifestTime >= resourceTime, "\(manifest.objectKey) is older than a resource")
                }
            }
        }
    }
}
