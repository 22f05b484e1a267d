import Foundation
import Testing

@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

@Suite struct MigrationTests {
    @Test func openCreatesAMissingNestedDirectoryWithPrivateModes() async throws {
        try await withTemporaryDirectory { base in
            let root = base + "/a/b/spool"
            #expect(!fileExists(base + "/a"))

            let store = try SpoolStore.open(root)

            #expect(store.layout.root == root)
            #expect(store.crashLeftoversRemoved == 0)
            for directory in [base + "/a", base + "/a/b", root, root + "/data", root + "/tmp"] {
                #expect(permissionBits(directory) == 0o700, "\(directory)")
            }
            #expect(permissionBits(root + "/spool.db") == 0o600)
            // SQLite gives the WAL the index's mode; it exists while a connection has the database open.
            #expect(permissionBits(root + "/spool.db-wal") == 0o600)
            #expect(try await store.schemaVersion() == SchemaMigrator.latestVersion)
            #expect(SchemaMigrator.latestVersion == EmbeddedSchema.migrations.count)
            #expect(SchemaMigrator.latestVersion >= 1)

            let raw = try RawDatabase(root + "/spool.db")
            #expect(try raw.scalar("PRAGMA journal_mode") == "wal")
            #expect(try raw.scalar("PRAGMA application_id") == String(SchemaMigrator.applicationID))
            let recorded = try raw.rows("SELECT version, name FROM schema_migrations ORDER BY version")
            #expect(recorded.map { $0[0] } == EmbeddedSchema.migrations.map { String($0.version) })
            #expect(recorded.map { $0[1] } == EmbeddedSchema.migrations.map { $0.name })
            // The first migration's tables are there.
            let tables = try raw.rows("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").map { $0[0] }
            for table in [
                "audit_events", "bundles", "counters", "destinations", "payloads", "resource_parts", "resources",
            ] {
                #expect(tables.contains(table), "\(table)")
            }
        }
    }

    @Test func openingTwiceIsIdempotent() async throws {
        try await withTemporaryDirectory { base in
            let root = base + "/spool"
            let first = try SpoolStore.open(root)
            let raw = try RawDatabase(root + "/spool.db")
            let migrationsBefore = try raw.rows("SELECT version, name, applied_at FROM schema_migrations")
            let destination = try await first.registerDestination(try .s3(bucket: "test-bucket"))

            let second = try SpoolStore.open(root)
            let third = try SpoolStore.open(root)

            #expect(try raw.rows("SELECT version, name, applied_at FROM schema_migrations") == migrationsBefore)
            #expect(try raw.scalar("SELECT COUNT(*) FROM counters") == "1")
            #expect(try await second.schemaVersion() == SchemaMigrator.latestVersion)
            #expect(try await third.destinations().map(\.id) == [destination])
            #expect(second.crashLeftoversRemoved == 0)
            // Registering the same destination again is recognised, not duplicated.
            #expect(try await third.registerDestination(try .s3(bucket: "test-bucket")) == destination)
        }
    }

    /// Several processes creating one spool at the same moment: while another connection holds the new file's write
    /// lock (in the rollback journal mode every new file starts in), SQLite refuses the switch to WAL with SQLITE_BUSY
    /// at once, without consulting its busy handler. `open` waits for the lock instead of failing.
    @Test func openWaitsForAnotherConnectionWhileSwitchingToWAL() async throws {
        try await withTemporaryDirectory { base in
            let root = base + "/spool"
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            // Used by the releasing thread only after this one is done with it.
            nonisolated(unsafe) let other = try SQLiteConnection(
                path: root + "/spool.db", create: true, busyTimeoutMilliseconds: 1000)
            try other.executeScript(
                "CREATE TABLE unrelated (x INTEGER); BEGIN IMMEDIATE; INSERT INTO unrelated VALUES (1);")
            // Released from a thread of its own: `open` blocks this one, and the task pool may be busy.
            let releaser = Thread {
                usleep(300_000)
                try? other.executeScript("COMMIT")
            }
            let started = ContinuousClock.now
            releaser.start()
            let store = try SpoolStore.open(root)
            #expect(ContinuousClock.now - started >= .milliseconds(250), "open did not wait for the writer")
            #expect(try await store.schemaVersion() == SchemaMigrator.latestVersion)
        }
    }

    @Test func migratorAppliesOnlyPendingMigrationsEachInATransaction() async throws {
        try await withTemporaryDirectory { base in
            let connection = try SQLiteConnection(
                path: base + "/index.db", create: true, busyTimeoutMilliseconds: 1000)
            let one = SchemaMigration(version: 1, name: "001_one", sql: "CREATE TABLE one (x INTEGER);")
            let two = SchemaMigration(version: 2, name: "002_two", sql: "CREATE TABLE two (y INTEGER);")
            let broken = SchemaMigration(
                version: 3, name: "003_broken",
                sql: "CREATE TABLE three (z INTEGER); INSERT INTO no_such_table VALUES (1);")

            try SchemaMigrator.migrate(connection, spoolDirectory: base, migrations: [one], now: 10)
            #expect(try SchemaMigrator.appliedVersion(connection) == 1)

            // An older spool is upgraded: only the new migration runs.
            try SchemaMigrator.migrate(connection, spoolDirectory: base, migrations: [one, two], now: 20)
            #expect(try SchemaMigrator.appliedVersion(connection) == 2)
            let applied = try connection.query(
                "SELECT version, applied_at FROM schema_migrations ORDER BY version", [], { ($0.int(0), $0.int64(1)) })
            #expect(applied.map(\.0) == [1, 2])
            #expect(applied.map(\.1) == [10, 20])

            // A failing migration is rolled back whole: no half-made table, no record.
            #expect(throws: SpoolError.self) {
                try SchemaMigrator.migrate(connection, spoolDirectory: base, migrations: [one, two, broken], now: 30)
            }
            #expect(try SchemaMigrator.appliedVersion(connection) == 2)
            let three = try connection.queryFirst(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'three'"
            ) { $0.int(0) }
            #expect(three == 0)

            // A build that knows only version 1 refuses the version-2 index.
            let error = #expect(throws: SpoolError.self) {
                try SchemaMigrator.migrate(connection, spoolDirectory: base, migrations: [one], now: 40)
            }
            #expect(error?.code == .schemaTooNew)
        }
    }

    @Test func aNewerSchemaIsRefusedNamingTheDirectoryAndVersion() async throws {
        try await withTemporaryDirectory { base in
            let root = base + "/spool"
            _ = try SpoolStore.open(root)
            let raw = try RawDatabase(root + "/spool.db")
            try raw.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '999_future', 0)")

            await expectSpoolError(.schemaTooNew, mentioning: [root, "999"]) {
                _ = try SpoolStore.open(root)
            }
            // Nothing was changed by the refused open.
            #expect(try raw.scalar("SELECT MAX(version) FROM schema_migrations") == "999")
        }
    }

    @Test func anotherApplicationsSQLiteFileIsRefusedAsCorrupt() async throws {
        try await withTemporaryDirectory { base in
            let root = base + "/spool"
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            do {
                let raw = try RawDatabase(root + "/spool.db")
                try raw.execute("PRAGMA application_id = 12345; CREATE TABLE notes (body TEXT);")
            }

            await expectSpoolError(.corrupt, mentioning: [root + "/spool.db"]) {
                _ = try SpoolStore.open(root)
            }
            // The foreign database was not migrated into.
            let raw = try RawDatabase(root + "/spool.db")
            #expect(try raw.scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'resources'") == "0")
            #expect(try raw.scalar("PRAGMA application_id") == "12345")
        }
    }

    @Test func aFileThatIsNotSQLiteIsRefusedAsCorrupt() async throws {
        try await withTemporaryDirectory { base in
            let root = base + "/spool"
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            let garbage = Data(repeating: 0x5A, count: 8192)
            try garbage.write(to: URL(fileURLWithPath: root + "/spool.db"))

            await expectSpoolError(.corrupt, mentioning: [root + "/spool.db"]) {
                _ = try SpoolStore.open(root)
            }
            #expect(try Data(contentsOf: URL(fileURLWithPath: root + "/spool.db")) == garbage)
        }
    }

    @Test func invalidOptionsAreRefusedBeforeAnythingIsCreated() async throws {
        try await withTemporaryDirectory { base in
            let root = base + "/spool"
            var tooLargeInline = SpoolOptions()
            tooLargeInline.inlineThresholdBytes = SpoolOptions.maximumInlineThresholdBytes + 1
            await expectSpoolError(
                .invalidConfiguration, mentioning: ["\(SpoolOptions.maximumInlineThresholdBytes + 1)"]
            ) {
                _ = try SpoolStore.open(root, options: tooLargeInline)
            }
            var zeroLimit = SpoolOptions()
            zeroLimit.maxSpoolBytes = 0
            await expectSpoolError(.invalidConfiguration, mentioning: ["maxSpoolBytes 0"]) {
                _ = try SpoolStore.open(root, options: zeroLimit)
            }
            var negativeFloor = SpoolOptions()
            negativeFloor.minFreeDiskBytes = -1
            await expectSpoolError(.invalidConfiguration, mentioning: ["minFreeDiskBytes -1"]) {
                _ = try SpoolStore.open(root, options: negativeFloor)
            }
            var slowBatch = SpoolOptions()
            slowBatch.durability = .batched(maxDelay: .seconds(2))
            await expectSpoolError(.invalidConfiguration, mentioning: ["maxDelay"]) {
                _ = try SpoolStore.open(root, options: slowBatch)
            }
            #expect(!fileExists(root))
        }
    }
}
