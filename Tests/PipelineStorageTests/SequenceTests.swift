import Foundation
import Hashing
import PipelineStorage
import Testing

@testable import Spool

@Suite struct SequenceTests {
    enum Mode: String, CaseIterable, Sendable {
        case fsync
        case batched

        var durability: Durability {
            switch self {
            case .fsync: .fsync
            case .batched: .batched
            }
        }
    }

    @Test(arguments: Mode.allCases)
    func sequentialWritesAreNumberedInOrder(mode: Mode) async throws {
        try await withTemporarySpool { spool in
            var options = SpoolOptions()
            options.durability = mode.durability
            let storage = try spool.storage(spoolOptions: options)
            let written = try await storage.withBundle("sequential") { bundle in
                var written: [SpooledResource] = []
                for index in 1...50 {
                    written.append(
                        try await bundle.writeResource(
                            url: "https://example.com/item-\(index).json", contentType: "application/json",
                            statusCode: 200, bytes: Array("item \(index)".utf8)))
                }
                return written
            }
            #expect(written.map(\.seq) == Array(1...50))
            #expect(
                written.map(\.objectKey) == (1...50).map { String(format: "data/sequential/%06d-item-%d.json", $0, $0) }
            )
            let listed = try await resources(of: "sequential", in: storage)
            #expect(listed.map(\.seq) == Array(1...50))
            #expect(listed.map(\.url) == (1...50).map { "https://example.com/item-\($0).json" })
            #expect(try await storage.spool.bundle("sequential")?.resourceCount == 50)
        }
    }

    @Test(arguments: Mode.allCases)
    func concurrentWritersGetDistinctGaplessNumbers(mode: Mode) async throws {
        try await withTemporarySpool { spool in
            var options = SpoolOptions()
            options.durability = mode.durability
            let storage = try spool.storage(spoolOptions: options)
            let bundle = try await storage.openBundle("concurrent")

            // Mostly small (inline) resources, every tenth above the inline threshold (a payload file).
            func payload(task: Int, index: Int) -> [UInt8] {
                let size = index % 10 == 9 ? 70_000 + task * 1_000 + index : 100 + task * 37 + index * 13
                return testBytes(size, seed: UInt64(task * 1_000 + index))
            }
            let written = try await withThrowingTaskGroup(of: [(SpooledResource, task: Int, index: Int)].self) {
                group in
                for task in 0..<8 {
                    group.addTask {
                        var results: [(SpooledResource, task: Int, index: Int)] = []
                        for index in 0..<25 {
                            let resource = try await bundle.writeResource(
                                url: "https://example.com/t\(task)/r\(index).bin",
                                contentType: "application/octet-stream", statusCode: 200,
                                metadata: ["task": String(task), "index": String(index)],
                                bytes: payload(task: task, index: index))
                            results.append((resource, task, index))
                        }
                        return results
                    }
                }
                var all: [(SpooledResource, task: Int, index: Int)] = []
                for try await results in group { all += results }
                return all
            }
            try await bundle.close()

            #expect(written.count == 200)
            #expect(written.map(\.0.seq).sorted() == Array(1...200))
            #expect(Set(written.map(\.0.objectKey)).count == 200)
            // Within one task, later writes get later numbers.
            for task in 0..<8 {
                let seqs = written.filter { $0.task == task }.sorted { $0.index < $1.index }.map(\.0.seq)
                #expect(seqs == seqs.sorted(), "task \(task)")
            }

            let listed = try await resources(of: "concurrent", in: storage)
            #expect(listed.count == 200)
            #expect(listed.map(\.seq).sorted() == Array(1...200))
            for (resource, task, index) in written {
                let expected = payload(task: task, index: index)
                let record = try #require(listed.first { $0.id == resource.id })
                #expect(record.seq == resource.seq)
                #expect(record.url == "https://example.com/t\(task)/r\(index).bin")
                #expect(record.metadata == ["task": String(task), "index": String(index)])
                #expect(record.sha256 == SHA256Hasher.hexDigest(expected))
                #expect(record.payloadStorage == (expected.count > 65_536 ? .file : .inline))
                #expect(try await storage.spool.payloadBytes(of: resource.id) == expected)
            }
            #expect(try await storage.spool.bundle("concurrent")?.resourceCount == 200)
            #expect(spool.dataFiles.count == 8 * 2)
            #expect(spool.temporaryFiles.isEmpty)
        }
    }

    @Test func twoBundlesAreNumberedIndependently() async throws {
        try await withTemporarySpool { spool in
            let storage = try spool.storage()
            let a = try await storage.openBundle("bundle-a")
            let b = try await storage.openBundle("bundle-b")
            var seqsA: [Int] = []
            var seqsB: [Int] = []
            for index in 0..<5 {
                seqsA.append(
                    try await a.writeResource(
                        url: "https://e.com/a\(index)", contentType: "text/plain",
                        statusCode: 200, bytes: [UInt8(index)]
                    ).seq)
                seqsB.append(
                    try await b.writeResource(
                        url: "https://e.com/b\(index)", contentType: "text/plain",
                        statusCode: 200, bytes: [UInt8(index)]
                    ).seq)
            }
            #expect(seqsA == Array(1...5))
            #expect(seqsB == Array(1...5))
        }
    }
}
