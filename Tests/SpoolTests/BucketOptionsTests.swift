import Foundation
import SpoolTestSupport
import Testing

@testable import Spool

@Suite("Bucket options: decoding older spools, lifecycle presets and rules, policies, templates, the set-up plan")
struct BucketOptionsTests {
    // MARK: Decoding

    @Test("Options written before the bucket set-up fields existed decode with defaults")
    func olderJSONDecodes() throws {
        // What the build before this one recorded: no publicAccessBlock, no lifecycleRules.
        let older = """
            {"cloudwatchMetrics":false,"createBucket":true,"exponentialBackoff":true,"lifecyclePolicy":\
            "archive-after-30-days","maxConcurrentUploads":4,"maxRetries":3,"metricsNamespace":"PipelineStorage",\
            "multipartChunkSizeBytes":8388608,"multipartThresholdBytes":16777216,"retryDelaySeconds":1,\
            "storageClass":"STANDARD_IA","uploadTimeoutSeconds":900,"versioning":true}
            """
        let options = try StorageOptions.decode(json: older, destination: "s3://b")
        #expect(options.createBucket)
        #expect(options.versioning == true)
        #expect(options.lifecyclePolicy == "archive-after-30-days")
        #expect(options.maxConcurrentUploads == 4)
        #expect(options.maxRetries == 3)
        #expect(options.publicAccessBlock == nil)
        #expect(options.lifecycleRules == nil)
        #expect(try options.resolvedPublicAccessBlock() == .blocked)

        // An empty object, and keys a newer build may add, read as defaults.
        #expect(try StorageOptions.decode(json: "{}", destination: "s3://b") == StorageOptions())
        #expect(
            try StorageOptions.decode(json: #"{"someFutureOption":1,"maxRetries":2}"#, destination: "s3://b")
                .maxRetries == 2)
    }

    @Test("Options round-trip through their recorded JSON, new fields included")
    func roundTrip() throws {
        var options = StorageOptions()
        options.publicAccessBlock = .unmanaged
        options.lifecycleRules = LifecycleRules(
            transitions: [.init(days: 30, storageClass: "STANDARD_IA")], expirationDays: 400,
            noncurrentVersionExpirationDays: 10, abortIncompleteUploadsAfterDays: 3)
        options.encryption = .kms(keyID: "alias/x", bucketKey: true)
        options.bucketPolicy = BucketPolicy.publicRead
        let decoded = try StorageOptions.decode(json: try options.encodedJSON(), destination: "s3://b")
        #expect(decoded == options)
        // Rules missing keys take their defaults too.
        let rules = try JSONDecoder().decode(LifecycleRules.self, from: Data(#"{"expirationDays":9}"#.utf8))
        #expect(rules == LifecycleRules(expirationDays: 9))
    }

    @Test("Options that cannot be decoded are an error naming the destination and the field")
    func undecodableOptions() async {
        await expectSpoolError(.invalidConfiguration, mentioning: ["s3://broken", "maxRetries", "cannot be read"]) {
            _ = try StorageOptions.decode(json: #"{"maxRetries":"ten"}"#, destination: "s3://broken")
        }
        await expectSpoolError(.invalidConfiguration, mentioning: ["s3://broken"]) {
            _ = try StorageOptions.decode(json: "not json", destination: "s3://broken")
        }
    }

    // MARK: Lifecycle

    @Test("Presets resolve to their rules, each with the abort of unfinished uploads")
    func presets() throws {
        func rules(_ name: String) throws -> LifecycleRules {
            var options = StorageOptions()
            options.lifecyclePolicy = name
            return try #require(try options.resolvedLifecycle())
        }
        #expect(try rules("archive-after-30-days").transitions == [.init(days: 30, storageClass: "GLACIER")])
        #expect(try rules("archive-after-90-days").transitions == [.init(days: 90, storageClass: "GLACIER")])
        #expect(
            try rules("infrequent-access-after-30-days").transitions == [.init(days: 30, storageClass: "STANDARD_IA")])
        #expect(try rules("expire-after-365-days").expirationDays == 365)
        #expect(try rules("abort-incomplete-uploads-only") == LifecycleRules())
        for (name, preset) in LifecycleRules.presets {
            try preset.validate()
            #expect(try rules(name).abortIncompleteUploadsAfterDays == 7)
        }
        #expect(try StorageOptions().resolvedLifecycle() == nil)
    }

    @Test("An unknown preset is refused, listing the valid ones")
    func unknownPreset() async {
        var options = StorageOptions()
        options.lifecyclePolicy = "archive-soon"
        await expectSpoolError(
            .invalidConfiguration, mentioning: ["'archive-soon'"] + LifecycleRules.presetNames
        ) { try options.validate() }
    }

    @Test(
        "Rules S3 would refuse are refused here, saying what to change",
        arguments: [
            (LifecycleRules(transitions: [.init(days: 0, storageClass: "GLACIER")]), "greater than 0"),
            (LifecycleRules(transitions: [.init(days: -5, storageClass: "GLACIER")]), "greater than 0"),
            (LifecycleRules(transitions: [.init(days: 30, storageClass: "STANDARD")]), "'STANDARD' is not one"),
            (LifecycleRules(transitions: [.init(days: 30, storageClass: "glacier")]), "DEEP_ARCHIVE"),
            (
                LifecycleRules(transitions: [
                    .init(days: 90, storageClass: "GLACIER"), .init(days: 60, storageClass: "DEEP_ARCHIVE"),
                ]), "increasing days"
            ),
            (
                LifecycleRules(transitions: [
                    .init(days: 90, storageClass: "GLACIER"), .init(days: 90, storageClass: "DEEP_ARCHIVE"),
                ]), "not later"
            ),
            (
                LifecycleRules(transitions: [
                    .init(days: 30, storageClass: "GLACIER"), .init(days: 60, storageClass: "STANDARD_IA"),
                ]), "not colder"
            ),
            (LifecycleRules(transitions: [.init(days: 10, storageClass: "STANDARD_IA")]), "30 days or more"),
            (
                LifecycleRules(transitions: [
                    .init(days: 30, storageClass: "STANDARD_IA"), .init(days: 45, storageClass: "GLACIER"),
                ]), "at least 30 days"
            ),
            (LifecycleRules(expirationDays: 0), "expirationDays must be greater than 0"),
            (
                LifecycleRules(transitions: [.init(days: 90, storageClass: "GLACIER")], expirationDays: 90),
                "not after the last transition"
            ),
            (LifecycleRules(noncurrentVersionExpirationDays: 0), "noncurrentVersionExpirationDays"),
            (LifecycleRules(abortIncompleteUploadsAfterDays: 0), "abortIncompleteUploadsAfterDays"),
        ])
    func invalidRules(rules: LifecycleRules, fragment: String) async {
        var options = StorageOptions()
        options.lifecycleRules = rules
        await expectSpoolError(.invalidConfiguration, mentioning: ["lifecycle", fragment]) { try options.validate() }
    }

    @Test("Valid rules pass: a waterfall of transitions, expiration after them, noncurrent expiration")
    func validRules() throws {
        var options = StorageOptions()
        options.lifecycleRules = LifecycleRules(
            transitions: [
                .init(days: 30, storageClass: "STANDARD_IA"), .init(days: 60, storageClass: "GLACIER_IR"),
                .init(days: 180, storageClass: "DEEP_ARCHIVE"),
            ], expirationDays: 3650, noncurrentVersionExpirationDays: 30)
        try options.validate()
        #expect(try options.resolvedLifecycle() == options.lifecycleRules)
    }

    @Test("A preset and rules together are refused")
    func presetAndRules() async {
        var options = StorageOptions()
        options.lifecyclePolicy = "archive-after-30-days"
        options.lifecycleRules = LifecycleRules()
        await expectSpoolError(.invalidConfiguration, mentioning: ["give one of them"]) { try options.validate() }
    }

    // MARK: Policy

    @Test(
        "Policies that are not a canned name or a policy document are refused",
        arguments: [
            ("private", "neither a canned policy"), ("public-write", "public-read"), ("{not json", "not valid JSON"),
            ("[1, 2]", "neither a canned policy"), (#"{"Version":"2012-10-17"}"#, "no Statement"),
            (#"{"Statement":[]}"#, "no Statement"), (#"{"Statement":["x"]}"#, "no Statement"),
            ("{\"Statement\":[{}],\"Pad\":\"" + String(repeating: "x", count: 21_000) + "\"}", "20480"),
        ])
    func invalidPolicies(policy: String, fragment: String) async {
        var options = StorageOptions()
        options.bucketPolicy = policy
        await expectSpoolError(.invalidConfiguration, mentioning: ["bucketPolicy", fragment]) {
            try options.validate()
        }
    }

    @Test("A policy document or public-read is accepted; public-read lifts the block and refuses one kept on")
    func validPolicies() async throws {
        var options = StorageOptions()
        options.bucketPolicy = #" {"Statement": {"Effect": "Deny", "Principal": "*", "Action": "s3:*"}} "#
        try options.validate()
        #expect(try options.resolvedPublicAccessBlock() == .blocked)
        options.bucketPolicy = "public-read"
        try options.validate()
        #expect(try options.resolvedPublicAccessBlock() == .lifted)
        options.publicAccessBlock = .lifted
        try options.validate()
        for setting in [StorageOptions.PublicAccessBlock.blocked, .unmanaged] {
            options.publicAccessBlock = setting
            await expectSpoolError(.invalidConfiguration, mentioning: ["public-read", setting.rawValue]) {
                try options.validate()
            }
        }
    }

    // MARK: Bucket name templates

    @Test("{environment} is expanded; unknown placeholders and invalid results are refused")
    func bucketNameTemplates() async throws {
        #expect(try BucketName.expand(template: "oc-fetcher-{environment}", environment: "prod") == "oc-fetcher-prod")
        #expect(try BucketName.expand(template: "{environment}.{environment}.data", environment: "qa") == "qa.qa.data")
        #expect(try BucketName.expand(template: "fixed-bucket", environment: "") == "fixed-bucket")
        await expectSpoolError(.invalidConfiguration, mentioning: ["{env}", "{environment}"]) {
            _ = try BucketName.expand(template: "oc-{env}", environment: "prod")
        }
        await expectSpoolError(.invalidConfiguration, mentioning: ["not closed"]) {
            _ = try BucketName.expand(template: "oc-{environment", environment: "prod")
        }
        await expectSpoolError(.invalidConfiguration, mentioning: ["'}' without a '{'"]) {
            _ = try BucketName.expand(template: "oc-environment}", environment: "prod")
        }
        await expectSpoolError(.invalidConfiguration, mentioning: ["empty"]) {
            _ = try BucketName.expand(template: "oc-{environment}", environment: "")
        }
        await expectSpoolError(.invalidConfiguration, mentioning: ["'Prod'", "oc-fetcher-Prod", "lowercase"]) {
            _ = try BucketName.expand(template: "oc-fetcher-{environment}", environment: "Prod")
        }
        await expectSpoolError(.invalidConfiguration, mentioning: ["'ab'"]) {
            _ = try BucketName.expand(template: "ab", environment: "prod")
        }
    }

    // MARK: The set-up plan

    @Test("The fingerprint changes with bucket settings and prefixes only, not with delivery tunables")
    func fingerprints() throws {
        var options = StorageOptions()
        options.versioning = true
        options.lifecyclePolicy = "archive-after-30-days"
        let base = try BucketSetup(bucket: "b", options: options, prefixes: ["b/", "a/", "a/"])
        #expect(base.prefixes == ["a/", "b/"])
        #expect(
            try base.fingerprint() == BucketSetup(bucket: "b", options: options, prefixes: ["a/", "b/"]).fingerprint())

        var tuned = options
        tuned.maxRetries = 99
        tuned.storageClass = "GLACIER"
        #expect(
            try base.fingerprint() == BucketSetup(bucket: "b", options: tuned, prefixes: ["a/", "b/"]).fingerprint())

        var changed = options
        changed.lifecyclePolicy = "archive-after-90-days"
        #expect(
            try base.fingerprint() != BucketSetup(bucket: "b", options: changed, prefixes: ["a/", "b/"]).fingerprint())
        #expect(try base.fingerprint() != BucketSetup(bucket: "b", options: options, prefixes: ["a/"]).fingerprint())
    }

    @Test("The settings recorded in the audit trail name what is applied, and never a policy's text")
    func settings() throws {
        var options = StorageOptions()
        options.encryption = .kms(keyID: "arn:aws:kms:us-east-1:1:key/k", bucketKey: true)
        options.bucketPolicy = #"{"Statement":[{"Sid":"secret-looking-text"}]}"#
        options.lifecycleRules = LifecycleRules(
            transitions: [.init(days: 30, storageClass: "GLACIER")], noncurrentVersionExpirationDays: 5)
        let setup = try BucketSetup(bucket: "b", options: options, prefixes: ["", "data/"])
        let settings = setup.settings
        #expect(settings["encryption"] == "aws:kms")
        #expect(settings["kms_key_id"] == "arn:aws:kms:us-east-1:1:key/k")
        #expect(settings["bucket_key"] == "true")
        #expect(settings["public_access_block"] == "blocked")
        #expect(settings["lifecycle"] == "rules")
        #expect(settings["lifecycle_transitions"] == "GLACIER@30d")
        #expect(settings["lifecycle_abort_incomplete_uploads_days"] == "7")
        #expect(settings["prefixes"] == "(all),data/")
        #expect(settings["policy"]?.hasPrefix("document sha256:") == true)
        #expect(!settings.values.contains { $0.contains("secret-looking-text") })

        var nothing = StorageOptions()
        nothing.publicAccessBlock = .unmanaged
        #expect(try BucketSetup(bucket: "b", options: nothing, prefixes: [""]).isEmpty)
        #expect(try !BucketSetup(bucket: "b", options: StorageOptions(), prefixes: [""]).isEmpty)
    }

    @Test("public-read statements: one per prefix, s3:GetObject on bucket/prefix*, a stable Sid")
    func publicReadStatements() throws {
        let statements = try BucketPolicy.publicReadStatements(bucket: "b", prefixes: ["", "data/"])
        #expect(statements.count == 2)
        let second = try #require(
            try JSONSerialization.jsonObject(with: Data(statements[1].utf8)) as? [String: String])
        #expect(second["Resource"] == "arn:aws:s3:::b/data/*")
        #expect(second["Action"] == "s3:GetObject")
        #expect(second["Principal"] == "*")
        #expect(second["Effect"] == "Allow")
        #expect(second["Sid"] == BucketPolicy.publicReadStatementID(prefix: "data/"))
        #expect(second["Sid"]?.allSatisfy { $0.isLetter || $0.isNumber } == true)
        #expect(BucketPolicy.publicReadStatementID(prefix: "") != BucketPolicy.publicReadStatementID(prefix: "data/"))
    }

    @Test("A key's prefix is what comes before its bundle id")
    func keyPrefixes() {
        #expect(ObjectKey.prefix(ofKey: "data/b-1/000001-x.json", bundleID: "b-1") == "data/")
        #expect(ObjectKey.prefix(ofKey: "b-1/_bundle.json", bundleID: "b-1") == "")
        #expect(ObjectKey.prefix(ofKey: "b-1/b-1/000002-y", bundleID: "b-1") == "b-1/")
        #expect(ObjectKey.prefix(ofKey: "other/000001-x", bundleID: "b-1") == nil)
    }
}

@Suite("Recording bucket set-ups in the spool")
struct BucketSetupRecordTests {
    @Test("A spool at schema 2 is upgraded: the set-up columns and the prefix index are added")
    func upgradeFromSchemaTwo() async throws {
        try await withTemporaryDirectory { base in
            let connection = try SQLiteConnection(
                path: base + "/index.db", create: true, busyTimeoutMilliseconds: 1000)
            let migrations = EmbeddedSchema.migrations
            try SchemaMigrator.migrate(
                connection, spoolDirectory: base, migrations: Array(migrations.prefix(2)), now: 1)
            try connection.execute(
                "INSERT INTO destinations (kind, location, created_at, updated_at) VALUES ('s3', 'old-bucket', 1, 1)")
            try SchemaMigrator.migrate(connection, spoolDirectory: base, migrations: migrations, now: 2)
            #expect(try SchemaMigrator.appliedVersion(connection) == 3)
            #expect(migrations[2].name == "bucket_setup")
            let columns = try connection.query("SELECT name FROM pragma_table_info('destinations')", [], { $0.text(0) })
            for column in ["setup_fingerprint", "setup_applied_at", "setup_applied_by", "setup_settings"] {
                #expect(columns.contains(column), "\(column)")
            }
            let index = try connection.queryFirst(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'bundles_by_destination_prefix'", [], { $0.int(0) })
            #expect(index == 1)
            let kept = try connection.queryFirst(
                "SELECT location FROM destinations WHERE setup_applied_at IS NULL", [], { $0.text(0) })
            #expect(kept == "old-bucket")
        }
    }

    @Test("Recorded set-ups show in the destination, the status (applied, outdated, pending, n/a, invalid), the audit")
    func recordAndStatus() async throws {
        try await withTemporaryDirectory { base in
            let spool = try await TestSpool(base + "/spool")
            try await spool.openBundle("b-1", prefix: "data/")
            try await spool.openBundle("b-2", prefix: "logs/")
            try await spool.openBundle("b-3", prefix: "data/")
            let file = try await spool.store.registerDestination(try .directory(base + "/out"))
            #expect(try await spool.store.keyPrefixes(destinationID: spool.destinationID) == ["data/", "logs/"])

            func state() async throws -> [Int64: DestinationStatus] {
                Dictionary(uniqueKeysWithValues: try await spool.store.status().destinations.map { ($0.id, $0) })
            }
            #expect(try await state()[spool.destinationID]?.bucketSetup == .pending)
            #expect(try await state()[file]?.bucketSetup == .notApplicable)
            #expect(try await spool.store.bucketSetupRecord(destinationID: spool.destinationID) == nil)

            let setup = try BucketSetup(bucket: "test-bucket", options: StorageOptions(), prefixes: ["data/", "logs/"])
            try await spool.store.recordBucketSetup(
                destinationID: spool.destinationID, fingerprint: try setup.fingerprint(), settings: setup.settings,
                appliedBy: "host/1/abcd")
            let record = try #require(try await spool.store.bucketSetupRecord(destinationID: spool.destinationID))
            #expect(record.fingerprint == (try setup.fingerprint()))
            #expect(record.appliedBy == "host/1/abcd")
            #expect(record.settings["public_access_block"] == "blocked")
            let status = try #require(try await state()[spool.destinationID])
            #expect(status.bucketSetup == .applied)
            #expect(status.bucketSetupAppliedAt == record.appliedAt)
            #expect(try await spool.store.destinations().first?.bucketSetup == record)

            // A new prefix makes it outdated; so does a change of options.
            try await spool.openBundle("b-4", prefix: "more/")
            #expect(try await state()[spool.destinationID]?.bucketSetup == .outdated)

            var options = StorageOptions()
            options.lifecyclePolicy = "no-such-preset"
            _ = try await spool.store.registerDestination(
                try .s3(bucket: "test-bucket", region: "us-east-1", optionsJSON: try options.encodedJSON()))
            let invalid = try #require(try await state()[spool.destinationID])
            #expect(invalid.bucketSetup == .invalid)
            #expect(invalid.bucketSetupProblem?.contains("no-such-preset") == true)

            let events = try await spool.store.auditEvents(
                AuditQuery(action: "destination.bucket_configured"), limit: 10)
            #expect(events.count == 1)
            #expect(events.first?.detail["destination_id"] == String(spool.destinationID))
            #expect(events.first?.detail["fingerprint"] == record.fingerprint)
            #expect(events.first?.detail["bucket"] == "test-bucket")
        }
    }
}
