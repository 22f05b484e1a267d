import Foundation
import Testing

@testable import Spool

/// The spool's connection commits with `synchronous = FULL`; a transaction for hints may skip the fsync, and must
/// always give the setting back, or every later commit would silently stop waiting for the disk.
@Suite struct TransactionSyncTests {
    private struct Refused: Error {}

    @Test func aTransactionWithoutSyncRunsWithNormalAndPutsFullBack() async throws {
        try await withTemporaryDirectory { base in
            let store = try SpoolStore.open(base + "/spool")
            let (before, inside, after) = try await store.database.run { connection in
                let before = try connection.queryFirst("PRAGMA synchronous", [], { $0.int(0) })
                let inside = try connection.transactionWithoutSync {
                    try connection.queryFirst("PRAGMA synchronous", [], { $0.int(0) })
                }
                let after = try connection.queryFirst("PRAGMA synchronous", [], { $0.int(0) })
                return (before, inside, after)
            }
            // 2 is FULL, 1 is NORMAL.
            #expect(before == 2)
            #expect(inside == 1)
            #expect(after == 2)
        }
    }

    @Test func aFailedTransactionWithoutSyncRollsBackAndStillPutsFullBack() async throws {
        try await withTemporaryDirectory { base in
            let store = try SpoolStore.open(base + "/spool")
            let (rows, after) = try await store.database.run { connection in
                #expect(throws: Refused.self) {
                    try connection.transactionWithoutSync {
                        _ = try connection.execute(
                            "INSERT INTO counters (name, value) VALUES (?, ?)", [.text("hint-test"), .integer(1)])
                        throw Refused()
                    }
                }
                let rows = try connection.queryFirst(
                    "SELECT COUNT(*) FROM counters WHERE name = ?", [.text("hint-test")], { $0.int(0) })
                let after = try connection.queryFirst("PRAGMA synchronous", [], { $0.int(0) })
                return (rows, after)
            }
            #expect(rows == 0)
            #expect(after == 2)
        }
    }
}
