/// One numbered migration from the repository's `schema/` folder.
struct SchemaMigration: Sendable {
    let version: Int
    let name: String
    let sql: String
}

/// Brings a spool index to the current schema: each pending migration in its own transaction, recorded in
/// `schema_migrations`. A spool made by a newer build is refused rather than guessed at.
enum SchemaMigrator {
    /// `PRAGMA application_id` of a spool index ("PSP1"): tells a spool apart from any other SQLite file.
    static let applicationID: Int64 = 0x5053_5031

    /// The newest schema version this build understands.
    static var latestVersion: Int { EmbeddedSchema.migrations.last?.version ?? 0 }

    static func migrate(
        _ connection: SQLiteConnection, spoolDirectory: String,
        migrations: [SchemaMigration] = EmbeddedSchema.migrations, now: Int64
    ) throws {
        let existingID = try connection.queryFirst("PRAGMA application_id") { $0.int64(0) } ?? 0
        guard existingID == 0 || existingID == applicationID else {
            throw SpoolError(
                .corrupt,
                "'\(spoolDirectory)/spool.db' is an SQLite database but not a spool index; point --spool at an "
                    + "empty directory or an existing spool")
        }
        try connection.executeScript(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    INTEGER PRIMARY KEY,
                name       TEXT    NOT NULL,
                applied_at INTEGER NOT NULL
            );
            """)
        let latest = migrations.last?.version ?? 0
        let applied = try appliedVersion(connection)
        if applied > latest {
            throw SpoolError(
                .schemaTooNew,
                "the spool at '\(spoolDirectory)' uses schema version \(applied), newer than this build of "
                    + "PipelineStorage understands (up to \(latest)); upgrade PipelineStorage and its tools, or use "
                    + "another spool directory")
        }
        for migration in migrations where migration.version > applied {
            try connection.transaction {
                // Another process may have applied it while we waited for the write lock.
                guard try appliedVersion(connection) < migration.version else { return }
                try connection.executeScript(migration.sql)
                try connection.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    [.int(migration.version), .text(migration.name), .integer(now)])
                try connection.executeScript("PRAGMA application_id = \(applicationID)")
            }
        }
    }

    static func appliedVersion(_ connection: SQLiteConnection) throws -> Int {
        try connection.queryFirst("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") { $0.int(0) } ?? 0
    }
}
