import Foundation
import PipelineStorage
import Testing

@testable import Spool

/// `configureApplicationStorage()`: a JSON file, environment variables over it, every mistake named.
@Suite struct ConfigurationTests {
    /// Writes `text` to a file in `directory` and returns its path.
    private func writeConfig(_ text: String, in directory: String, name: String = "storage.json") throws -> String {
        let path = directory + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func everySettingHasTheDocumentedVariableName() {
        let variables = Dictionary(
            uniqueKeysWithValues: ApplicationStorageConfiguration.settings.map { ($0.key, $0.variable) })
        #expect(variables["type"] == "PIPELINE_STORAGE_TYPE")
        #expect(variables["s3.maxRetries"] == "PIPELINE_STORAGE_S3_MAX_RETRIES")
        #expect(variables["aws.roleARN"] == "PIPELINE_STORAGE_AWS_ROLE_ARN")
        #expect(variables["s3.kmsKeyID"] == "PIPELINE_STORAGE_S3_KMS_KEY_ID")
        #expect(variables["spool.minFreeDiskBytes"] == "PIPELINE_STORAGE_SPOOL_MIN_FREE_DISK_BYTES")
        #expect(variables["decorators.unzipResources"] == "PIPELINE_STORAGE_DECORATORS_UNZIP_RESOURCES")
        #expect(Set(variables.values).count == variables.count, "two settings share a variable")
        #expect(ApplicationStorageConfiguration.settings.allSatisfy { !$0.summary.isEmpty })
    }

    @Test func theREADMEDocumentsEveryKeyAndVariable() throws {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        for setting in ApplicationStorageConfiguration.settings {
            let documentsKey = text.contains("`\(setting.key)`")
            let documentsVariable = text.contains("`\(setting.variable)`")
            #expect(documentsKey, "README misses the key \(setting.key)")
            #expect(documentsVariable, "README misses the variable \(setting.variable)")
        }
    }

    @Test func aNestedFileWithEnvironmentOverridesBuildsTheConfiguration() throws {
        try withTemporaryDirectory { directory in
            let path = try writeConfig(
                """
                {
                  "type": "s3", "environment": "staging", "bucket": "oc-fetcher-{environment}", "prefix": "data/",
                  "spool": { "directory": "\(directory)/spool", "durability": "batched", "batchMaxDelay": "2ms",
                             "maxBytes": "20GiB", "minFreeDiskBytes": 1073741824, "fullWait": 45 },
                  "decorators": { "bundleResources": true, "unzipResources": false },
                  "aws": { "region": "eu-west-1", "profile": "fetcher", "roleARN": "arn:aws:iam::123456789012:role/Fetcher" },
                  "s3": { "createBucket": true, "versioning": true, "lifecyclePolicy": "archive-after-30-days",
                          "encryption": "aws:kms", "kmsKeyID": "alias/fetcher", "bucketKey": true,
                          "storageClass": "STANDARD_IA", "publicAccessBlock": "unmanaged", "multipartThreshold": "32MiB", "multipartChunkSize": "16MiB",
                          "maxConcurrentUploads": 4, "uploadTimeout": "10m", "maxRetries": 5, "retryDelay": "500ms",
                          "exponentialBackoff": false },
                  "metrics.cloudwatch": true, "metrics.namespace": "Fetcher"
                }
                """, in: directory)
            let configuration = try ApplicationStorageConfiguration.load(
                environment: [
                    "PIPELINE_STORAGE_ENVIRONMENT": "prod", "PIPELINE_STORAGE_S3_MAX_RETRIES": "7",
                    "PIPELINE_STORAGE_DECORATORS_UNZIP_RESOURCES": "yes", "PIPELINE_SPOOL_DIR": "/elsewhere",
                    "HOME": "/root",
                ], configFile: path)
            #expect(configuration.type == .s3)
            #expect(try configuration.resolvedBucket() == "oc-fetcher-prod", "the variable wins over the file")
            #expect(configuration.prefix == "data/")
            #expect(configuration.spoolDirectory == directory + "/spool")
            #expect(configuration.spoolOptions.durability == .batched(maxDelay: .milliseconds(2)))
            #expect(configuration.spoolOptions.maxSpoolBytes == 20 << 30)
            #expect(configuration.spoolOptions.minFreeDiskBytes == 1 << 30)
            #expect(configuration.spoolOptions.spoolFullWait == .seconds(45))
            #expect(configuration.bundleResources && configuration.unzipResources)
            #expect(configuration.awsRegion == "eu-west-1")
            #expect(configuration.awsProfile == "fetcher")
            #expect(configuration.awsRoleARN == "arn:aws:iam::123456789012:role/Fetcher")
            let options = configuration.options
            #expect(options.createBucket && options.versioning == true)
            #expect(options.lifecyclePolicy == "archive-after-30-days")
            #expect(options.publicAccessBlock == .unmanaged)
            #expect(options.encryption == .kms(keyID: "alias/fetcher", bucketKey: true))
            #expect(options.storageClass == "STANDARD_IA")
            #expect(options.multipartThresholdBytes == 32 << 20 && options.multipartChunkSizeBytes == 16 << 20)
            #expect(options.maxConcurrentUploads == 4 && options.uploadTimeoutSeconds == 600)
            #expect(options.maxRetries == 7, "the variable wins over the file")
            #expect(options.retryDelaySeconds == 0.5 && !options.exponentialBackoff)
            #expect(options.cloudwatchMetrics && options.metricsNamespace == "Fetcher")
        }
    }

    @Test func theConfigFileCanBeNamedByTheEnvironment() throws {
        try withTemporaryDirectory { directory in
            let path = try writeConfig(#"{"type": "file", "directory": "/srv/out"}"#, in: directory)
            let configuration = try ApplicationStorageConfiguration.load(
                environment: ["PIPELINE_STORAGE_CONFIG": path])
            #expect(configuration.type == .file && configuration.directory == "/srv/out")
            // No file at all: defaults, with the variables.
            let fromVariables = try ApplicationStorageConfiguration.load(
                environment: ["PIPELINE_STORAGE_BUCKET": "plain-bucket"])
            #expect(fromVariables.bucket == "plain-bucket" && fromVariables.options == StorageOptions())
        }
    }

    @Test func theStorageRecordsTheOptionsProfileAndRoleForTheDrainer() async throws {
        try await withTemporaryDirectoryAsync { directory in
            let stack = try configureApplicationStorage(
                environment: [
                    "PIPELINE_STORAGE_TYPE": "s3", "PIPELINE_STORAGE_BUCKET": "oc-fetcher-{environment}",
                    "PIPELINE_STORAGE_ENVIRONMENT": "test", "PIPELINE_STORAGE_SPOOL_DIRECTORY": directory + "/spool",
                    "PIPELINE_STORAGE_AWS_PROFILE": "fetcher", "PIPELINE_STORAGE_S3_ENCRYPTION": "AES256",
                    "PIPELINE_STORAGE_AWS_REGION": "eu-central-1",
                ])
            #expect(stack is PipelineStorage, "no decorator switched on: the storage itself")
            let storage = try #require(stack as? PipelineStorage)
            try await storage.withBundle("configured") { bundle in
                try await bundle.writeResource(
                    url: "https://example.com/a", contentType: "text/plain", statusCode: 200, bytes: Array("a".utf8))
            }
            let destinations = try await storage.spool.destinations()
            try #require(destinations.count == 1)
            #expect(destinations[0].spec.location == "oc-fetcher-test")
            #expect(destinations[0].spec.region == "eu-central-1", "aws.region stands in for an unset region")
            let recorded = try JSONDecoder().decode(
                StorageOptions.self, from: Data(destinations[0].spec.optionsJSON.utf8))
            #expect(recorded.awsProfile == "fetcher")
            #expect(recorded.encryption == .aes256)
        }
    }

    /// Every kind of mistake, each with the words its message must contain.
    static let mistakes: [(file: String?, environment: [String: String], mentions: [String])] = [
        (#"{"s3": {"maxRetry": 3}}"#, [:], ["unknown key 's3.maxRetry'", "did you mean 's3.maxRetries'"]),
        (#"{"bukcet": "x"}"#, [:], ["unknown key 'bukcet'", "did you mean 'bucket'"]),
        (
            nil, ["PIPELINE_STORAGE_S3_MAX_RETRY": "3"],
            ["PIPELINE_STORAGE_S3_MAX_RETRY", "PIPELINE_STORAGE_S3_MAX_RETRIES"]
        ),
        (#"{"s3": {"createBucket": "maybe"}}"#, [:], ["s3.createBucket", "\"maybe\"", "true or false"]),
        (#"{"s3": {"createBucket": 1}}"#, [:], ["s3.createBucket", "true or false"]),
        (
            nil, ["PIPELINE_STORAGE_S3_MAX_RETRIES": "lots"],
            ["PIPELINE_STORAGE_S3_MAX_RETRIES", "lots", "whole number"]
        ),
        (#"{"s3": {"maxConcurrentUploads": 100}}"#, [:], ["s3.maxConcurrentUploads", "100", "1...64"]),
        (#"{"s3": {"multipartChunkSize": "1MiB"}}"#, [:], ["multipartChunkSize", "5 MiB"]),
        (#"{"s3": {"multipartThreshold": "big"}}"#, [:], ["s3.multipartThreshold", "64MiB"]),
        (#"{"s3": {"uploadTimeout": "soon"}}"#, [:], ["s3.uploadTimeout", "30s"]),
        (#"{"s3": {"storageClass": "COLD"}}"#, [:], ["storageClass 'COLD'", "STANDARD_IA"]),
        (#"{"s3": {"encryption": "rot13"}}"#, [:], ["s3.encryption", "aws:kms"]),
        (#"{"s3": {"kmsKeyID": "alias/x"}}"#, [:], ["s3.kmsKeyID", "aws:kms"]),
        (#"{"type": "ftp"}"#, [:], ["key 'type'", "\"ftp\"", "s3, file"]),
        (#"{"prefix": 5}"#, [:], ["key 'prefix'", "in quotes"]),
        (#"{"spool": {"durability": "fsync", "batchMaxDelay": "5ms"}}"#, [:], ["spool.batchMaxDelay", "fsync"]),
        (#"{"spool": {"batchMaxDelay": "2s"}}"#, [:], ["spool.batchMaxDelay", "1 second"]),
        (#"{"spool": {"maxBytes": 0}}"#, [:], ["maxSpoolBytes", "positive"]),
        (#"{"aws": {"roleARN": "Fetcher"}}"#, [:], ["aws.roleARN 'Fetcher'", "arn:aws:iam::"]),
        (#"{"aws": {"profile": "two words"}}"#, [:], ["aws.profile 'two words'"]),
        (#"{"metrics": {"namespace": "AWS/S3"}}"#, [:], ["metricsNamespace 'AWS/S3'"]),
        (#"{"bucket": "x", "#, [:], ["not valid JSON"]),
        (#"{"s3": {"publicAccessBlock": "open"}}"#, [:], ["s3.publicAccessBlock", "blocked, lifted, unmanaged"]),
        (#"{"s3": {"lifecycleRules": {"transitions": [{"days": 0, "storageClass": "GLACIER"}]}}}"#, [:], ["days"]),
        (#"{"s3": {"lifecycleRules": {"transitions": "soon"}}}"#, [:], ["s3.lifecycleRules"]),
        (
            #"{"s3": {"lifecyclePolicy": "archive-after-30-days", "lifecycleRules": {"expirationDays": 9}}}"#, [:],
            ["both"]
        ),
        (#"{"bucket": "oc-{env}", "environment": "prod"}"#, [:], ["{env}"]),
        (#"{"decorators": {"unzipMaxCompressionRatio": 0}}"#, [:], ["decorators.unzipMaxCompressionRatio"]),
        (#"{"decorators": {"bundleArchiveName": "../x.zip"}}"#, [:], ["../x.zip"]),
        (#"["bucket"]"#, [:], ["one JSON object"]),
        (nil, ["PIPELINE_STORAGE_PREFIX": "a\nb"], ["PIPELINE_STORAGE_PREFIX", "control characters"]),
    ]

    @Test(arguments: 0..<mistakes.count)
    func aMistakeIsNamed(index: Int) async throws {
        let mistake = Self.mistakes[index]
        try await withTemporaryDirectoryAsync { directory in
            let path = try mistake.file.map { try writeConfig($0, in: directory) }
            await expectSpoolError(.invalidConfiguration, mentioning: mistake.mentions) {
                _ = try ApplicationStorageConfiguration.load(environment: mistake.environment, configFile: path)
            }
        }
    }

    @Test func mistakesFoundWhenTheStorageIsBuilt() async throws {
        try await withTemporaryDirectoryAsync { directory in
            let spool = ["PIPELINE_STORAGE_SPOOL_DIRECTORY": directory + "/spool"]
            await expectSpoolError(.invalidConfiguration, mentioning: ["no bucket", "PIPELINE_STORAGE_BUCKET"]) {
                _ = try configureApplicationStorage(environment: spool)
            }
            await expectSpoolError(
                .invalidConfiguration, mentioning: ["oc-fetcher-{environment}", "PIPELINE_STORAGE_ENVIRONMENT"]
            ) {
                _ = try configureApplicationStorage(
                    environment: spool.merging(["PIPELINE_STORAGE_BUCKET": "oc-fetcher-{environment}"]) { $1 })
            }
            await expectSpoolError(.invalidConfiguration, mentioning: ["Prod_Env", "lowercase"]) {
                _ = try configureApplicationStorage(
                    environment: spool.merging([
                        "PIPELINE_STORAGE_BUCKET": "oc-fetcher-{environment}",
                        "PIPELINE_STORAGE_ENVIRONMENT": "Prod_Env",
                    ]) { $1 })
            }
            await expectSpoolError(.invalidConfiguration, mentioning: ["type is file", "PIPELINE_STORAGE_DIRECTORY"]) {
                _ = try configureApplicationStorage(
                    environment: spool.merging(["PIPELINE_STORAGE_TYPE": "file"]) { $1 })
            }
            await expectSpoolError(
                .invalidConfiguration, mentioning: [directory + "/missing.json", "PIPELINE_STORAGE_CONFIG"]
            ) {
                _ = try configureApplicationStorage(environment: spool, configFile: directory + "/missing.json")
            }
            await expectSpoolError(
                .invalidConfiguration,
                mentioning: ["http://s3.internal.example:9000", "plain HTTP", "allowInsecureHTTP"]
            ) {
                _ = try configureApplicationStorage(
                    environment: spool.merging([
                        "PIPELINE_STORAGE_BUCKET": "b-1",
                        "PIPELINE_STORAGE_ENDPOINT": "http://s3.internal.example:9000",
                    ]) { $1 })
            }
            #expect(
                !FileManager.default.fileExists(atPath: directory + "/spool"), "no spool made from a bad configuration")
            // Loopback needs nothing; a remote host over plain HTTP needs the explicit switch.
            for (endpoint, allow) in [
                ("http://127.0.0.1:9000", "false"), ("http://[::1]:9000", "false"),
                ("http://s3.internal.example", "true"),
            ] {
                _ = try configureApplicationStorage(
                    environment: spool.merging([
                        "PIPELINE_STORAGE_BUCKET": "b-1", "PIPELINE_STORAGE_ENDPOINT": endpoint,
                        "PIPELINE_STORAGE_S3_ALLOW_INSECURE_HTTP": allow,
                    ]) { $1 })
            }
        }
    }

    @Test func theDecoratorSwitchesBuildTheStack() async throws {
        try await withTemporaryDirectoryAsync { directory in
            let base = [
                "PIPELINE_STORAGE_TYPE": "file", "PIPELINE_STORAGE_DIRECTORY": directory + "/out",
                "PIPELINE_STORAGE_SPOOL_DIRECTORY": directory + "/spool",
            ]
            let configuration = try ApplicationStorageConfiguration.load(
                environment: base.merging([
                    "PIPELINE_STORAGE_DECORATORS_UNZIP_RESOURCES": "true",
                    "PIPELINE_STORAGE_DECORATORS_BUNDLE_RESOURCES": "true",
                    "PIPELINE_STORAGE_DECORATORS_UNZIP_MAX_EXPANDED_BYTES": "1GiB",
                    "PIPELINE_STORAGE_DECORATORS_UNZIP_MAX_MEMBERS": "500",
                    "PIPELINE_STORAGE_DECORATORS_BUNDLE_ARCHIVE_NAME": "pages.zip",
                ]) { $1 })
            #expect(configuration.unzipOptions.maxExpandedBytes == 1 << 30)
            #expect(configuration.unzipOptions.maxMembers == 500)
            #expect(configuration.bundleOptions.archiveName == "pages.zip")
            let stack = try configuration.makeStorageStack()
            #expect(stack is UnzipResourcesDecorator<BundleResourcesDecorator<PipelineStorage>>, "expand, then pack")
            let unzipOnly = try configureApplicationStorage(
                environment: base.merging(["PIPELINE_STORAGE_DECORATORS_UNZIP_RESOURCES": "yes"]) { $1 })
            #expect(unzipOnly is UnzipResourcesDecorator<PipelineStorage>)
        }
    }

    @Test func structuredLifecycleRulesFromTheFileOrAVariable() throws {
        let fromVariable = try ApplicationStorageConfiguration.load(environment: [
            "PIPELINE_STORAGE_S3_LIFECYCLE_RULES":
                #"{"transitions": [{"days": 30, "storageClass": "STANDARD_IA"}, {"days": 90, "storageClass": "GLACIER"}], "expirationDays": 365}"#
        ])
        let rules = try #require(fromVariable.options.lifecycleRules)
        #expect(rules.transitions.map(\.days) == [30, 90])
        #expect(rules.expirationDays == 365)
        #expect(rules.abortIncompleteUploadsAfterDays == 7, "the abort rule is always there")
    }

    @Test func booleansSizesAndDurationsAcceptTheUsualSpellings() throws {
        for (text, expected) in [
            ("true", true), ("YES", true), ("on", true), ("1", true), ("false", false), ("no", false), ("0", false),
        ] {
            let configuration = try ApplicationStorageConfiguration.load(environment: [
                "PIPELINE_STORAGE_S3_CREATE_BUCKET": text
            ])
            #expect(configuration.options.createBucket == expected, "\(text)")
        }
        let sized = try ApplicationStorageConfiguration.load(environment: [
            "PIPELINE_STORAGE_SPOOL_MAX_BYTES": "1.5GiB", "PIPELINE_STORAGE_SPOOL_FULL_WAIT": "1m30s",
        ])
        #expect(sized.spoolOptions.maxSpoolBytes == 1_610_612_736)
        #expect(sized.spoolOptions.spoolFullWait == .seconds(90))
        for bad in ["inf", "nan", "1e300", "-5", "5x"] {
            #expect(throws: SpoolError.self, "\(bad)") {
                try ApplicationStorageConfiguration.load(environment: ["PIPELINE_STORAGE_SPOOL_FULL_WAIT": bad])
            }
        }
    }
}

private func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("config-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

private func withTemporaryDirectoryAsync<T>(_ body: (String) async throws -> T) async throws -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("config-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}
