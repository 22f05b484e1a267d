import Foundation
import Hashing
import Testing

@testable import Spool

/// "Durable on return" seen from outside: once `writeResource` returns, a second connection to the same spool (as
/// another process would have) sees the row and its bytes. This checks visibility, not fsync itself (which a test
/// cannot observe without pulling the power).
@Suite struct VisibilityTests {
    enum Mode: String, CaseIterable, Sendable {
        case fsync
        case batched

        var durability: Durability {
            switch self {
            case .fsync: .fsync
            case .batched: .batched(maxDelay: .milliseconds(50))
            }
        }
    }

    @Test(arguments: Mode.allCases)
    func eachWriteIsVisibleToAnotherConnectionWhenItReturns(mode: Mode) async throws {
        try await withTemporaryDirectory { directory in
            var options = SpoolOptions()
            options.durability = mode.durability
            let writer = try await TestSpool(directory + "/spool", options: options)
            try await writer.openBundle("b")
            // A second SpoolStore on the directory: its own SQLite connection.
            let observer = try SpoolStore.open(directory + "/spool")

            let results = try await withThrowingTaskGroup(of: (SpooledResource, [UInt8], Bool).self) { group in
                for index in 0..<8 {
                    group.addTask {
                        let bytes = testBytes(4096, seed: UInt64(index))
                        let resource = try await writer.write(
                            bytes, to: "b", url: "https://example.com/\(index).bin")
                        // Checked right after the return, before any other writer of this task group is awaited.
                        let seen = try await observer.listResources(ResourceFilter(bundleID: "b"))
                            .contains { $0.id == resource.id && $0.sha256 == resource.sha256 }
                        return (resource, bytes, seen)
                    }
                }
                var results: [(SpooledResource, [UInt8], Bool)] = []
                for try await result in group { results.append(result) }
                return results
            }

            #expect(results.count == 8)
            for (resource, bytes, seen) in results {
                #expect(seen, "resource \(resource.id) was not visible to another connection on return")
                #expect(try await observer.payloadBytes(of: resource.id) == bytes)
                #expect(resource.sha256 == SHA256Hasher.hexDigest(bytes))
            }
            #expect(Set(results.map(\.0.seq)) == Set(1...8))

            // And a spool opened afresh after the writes sees them all.
            let reopened = try SpoolStore.open(directory + "/spool")
            #expect(try await reopened.listResources(ResourceFilter(bundleID: "b")).count == 8)
        }
    }

    @Test("A lone writer is not held back by the batch delay: its group commit starts at once")
    func aSingleWriterIsNotHeldBackByTheBatchDelay() async throws {
        // With one writer in flight there is nobody to wait for, so every commit must be started immediately, never
        // by the maxDelay timer. Counted, not timed: the machine may be busy.
        try await withTemporaryDirectory { directory in
            var options = SpoolOptions()
            options.durability = .batched(maxDelay: .seconds(1))
            let spool = try await TestSpool(directory + "/spool", options: options)
            try await spool.openBundle("b")
            for index in 0..<10 {
                try await spool.write([UInt8(index)], to: "b")
            }
            let statistics = spool.store.committer.statistics
            #expect(statistics.immediateCommits == 10)
            #expect(statistics.delayedCommits == 0)
            #expect(statistics.resources == 10)
            #expect(try await spool.store.listResources(ResourceFilter(bundleID: "b")).map(\.seq) == Array(1...10))
        }
    }
}
