import Foundation
import Spool

/// The storage an application asks for, read from an optional JSON configuration file and from environment variables,
/// which override the file (SPEC §6). `configureApplicationStorage()` builds the storage from it.
///
/// Every setting has a key in the file (`s3.maxRetries`, nested objects or dotted names) and an environment variable
/// (`PIPELINE_STORAGE_S3_MAX_RETRIES`); `ApplicationStorageConfiguration.settings` lists them all and the README
/// documents each. Unknown keys, unknown `PIPELINE_STORAGE_*` variables and bad values are rejected with a message
/// that names them.
public struct ApplicationStorageConfiguration: Sendable {
    /// Where resources are delivered.
    public enum StorageType: String, Sendable, CaseIterable {
        /// An S3 (or S3-compatible) bucket.
        case s3
        /// A local directory with the same object layout.
        case file
    }

    /// `s3` (default) or `file`.
    public var type: StorageType = .s3
    /// The environment name (`prod`, `staging`), substituted for `{environment}` in the bucket name.
    public var environment: String? = nil
    /// The bucket name, possibly a template such as `oc-fetcher-{environment}`.
    public var bucket: String? = nil
    /// The key prefix.
    public var prefix = ""
    /// The bucket's region; nil falls back to `aws.region`, then to what the drainer resolves (`AWS_REGION`, profile).
    public var region: String? = nil
    /// An S3-compatible endpoint; nil for AWS (the drainer also honours `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`).
    public var endpoint: String? = nil
    /// The target directory of the `file` storage type.
    public var directory: String? = nil
    /// The spool directory; nil for the default (`PIPELINE_SPOOL_DIR`, then `~/.local/state/pipeline-storage/spool`).
    public var spoolDirectory: String? = nil
    /// Durability, spool limits and the wait for space.
    public var spoolOptions = SpoolOptions()
    /// Pack each bundle's resources into one `bundle.zip`.
    public var bundleResources = false
    /// Store gzip resources decompressed and zip resources as one resource per member.
    public var unzipResources = false
    /// What the unzip decorator expands, and its zip-bomb limits.
    public var unzipOptions = UnzipOptions()
    /// How the bundle decorator packs bundles.
    public var bundleOptions = BundleOptions()
    /// The AWS region of the drainer's calls (STS, CloudWatch) and the bucket's when `region` is not set.
    public var awsRegion: String? = nil
    /// The shared-config profile the drainer resolves credentials from (recorded in `options`).
    public var awsProfile: String? {
        get { options.awsProfile }
        set { options.awsProfile = newValue }
    }
    /// A role the drainer assumes on top of whatever the credential chain resolves (recorded in `options`).
    public var awsRoleARN: String? {
        get { options.roleARN }
        set { options.roleARN = newValue }
    }
    /// Delivery and bucket options, recorded for the drainer.
    public var options = StorageOptions()

    // Settings that combine into one option, resolved once everything is read (so the order of keys and variables
    // does not matter, and contradictions are reported instead of one silently winning).
    var batchedDurability: Bool? = nil
    var batchMaxDelay: Duration? = nil
    var encryptionName: String? = nil
    var kmsKeyID: String? = nil
    var bucketKey: Bool? = nil

    /// Defaults: an `s3` storage with no bucket yet.
    public init() {}

    /// The environment variable that names the configuration file when none is passed.
    public static let configFileVariable = "PIPELINE_STORAGE_CONFIG"
    /// The prefix of every configuration variable.
    public static let variablePrefix = "PIPELINE_STORAGE_"

    /// One setting: its key in the file, its environment variable, what it means, and how a value is applied.
    public struct Setting: Sendable {
        /// The key in the file, dotted (`s3.maxRetries`).
        public let key: String
        /// The environment variable (`PIPELINE_STORAGE_S3_MAX_RETRIES`).
        public let variable: String
        /// What it sets, for documentation and `--help`-style listings.
        public let summary: String
        let apply: @Sendable (inout ApplicationStorageConfiguration, ConfigurationValue) throws -> Void

        init(
            _ key: String, _ summary: String,
            apply: @escaping @Sendable (inout ApplicationStorageConfiguration, ConfigurationValue) throws -> Void
        ) {
            self.key = key
            self.variable = ApplicationStorageConfiguration.variablePrefix + Self.screamingSnakeCase(key)
            self.summary = summary
            self.apply = apply
        }

        /// `s3.maxRetries` → `S3_MAX_RETRIES`, `aws.roleARN` → `AWS_ROLE_ARN`, `s3.kmsKeyID` → `S3_KMS_KEY_ID`.
        static func screamingSnakeCase(_ key: String) -> String {
            var result = ""
            let characters = Array(key)
            for (index, character) in characters.enumerated() {
                if character == "." {
                    result += "_"
                    continue
                }
                let previous = index > 0 ? characters[index - 1] : "."
                let next = index + 1 < characters.count ? characters[index + 1] : "."
                if character.isUppercase && previous != "."
                    && (previous.isLowercase || previous.isNumber || next.isLowercase)
                {
                    result += "_"
                }
                result += character.uppercased()
            }
            return result
        }
    }

    /// Every setting, in the order the README documents them.
    public static let settings: [Setting] = [
        Setting("type", "Storage type: s3 (default) or file.") {
            $0.type = try $1.choice(StorageType.allCases.map { ($0.rawValue, $0) })
        },
        Setting("environment", "Environment name, substituted for {environment} in the bucket name.") {
            $0.environment = try $1.optionalString()
        },
        Setting("bucket", "Bucket name or template, e.g. oc-fetcher-{environment} (type s3).") {
            $0.bucket = try $1.optionalString()
        },
        Setting("prefix", "Key prefix, e.g. data/.") { $0.prefix = try $1.optionalString() ?? "" },
        Setting("region", "The bucket's region (default: aws.region, else what the drainer resolves).") {
            $0.region = try $1.optionalString()
        },
        Setting("endpoint", "S3-compatible endpoint URL (default: AWS; the drainer also reads AWS_ENDPOINT_URL_S3).") {
            $0.endpoint = try $1.optionalString()
        },
        Setting("directory", "Target directory (type file).") { $0.directory = try $1.optionalString() },
        Setting("spool.directory", "Spool directory (default: PIPELINE_SPOOL_DIR, else ~/.local/state/...).") {
            $0.spoolDirectory = try $1.optionalString()
        },
        Setting("spool.durability", "fsync (default: durable on return) or batched (group commit).") {
            $0.batchedDurability = try $1.choice([("fsync", false), ("batched", true)])
        },
        Setting("spool.batchMaxDelay", "Longest wait for other writers to join a batched commit (default 5ms).") {
            let delay = try $1.duration()
            guard delay <= .seconds(1) else { throw $1.reject("is more than 1 second; use 0 to 1s") }
            $0.batchMaxDelay = delay
        },
        Setting("spool.maxBytes", "Spool size limit (e.g. 20GiB); writers wait, then get spoolFull.") {
            $0.spoolOptions.maxSpoolBytes = try $1.bytes()
        },
        Setting("spool.minFreeDiskBytes", "Free disk space to leave (e.g. 2GiB).") {
            $0.spoolOptions.minFreeDiskBytes = try $1.bytes()
        },
        Setting("spool.fullWait", "How long a writer waits for space before spoolFull (default 30s).") {
            $0.spoolOptions.spoolFullWait = try $1.duration()
        },
        Setting("decorators.bundleResources", "Pack each bundle into one bundle.zip (default false).") {
            $0.bundleResources = try $1.bool()
        },
        Setting("decorators.unzipResources", "Store gzip decompressed, zip as one resource per member (default false).")
        {
            $0.unzipResources = try $1.bool()
        },
        Setting("decorators.unzipGzip", "Expand gzip resources (default true, with unzipResources).") {
            $0.unzipOptions.expandGzip = try $1.bool()
        },
        Setting("decorators.unzipZip", "Expand zip resources into one resource per member (default true).") {
            $0.unzipOptions.expandZip = try $1.bool()
        },
        Setting("decorators.unzipMaxExpandedBytes", "Zip-bomb guard: most bytes one archive may expand to (8GiB).") {
            $0.unzipOptions.maxExpandedBytes = try $1.bytes()
        },
        Setting("decorators.unzipMaxCompressionRatio", "Zip-bomb guard: largest expanded/compressed ratio (200).") {
            $0.unzipOptions.maxCompressionRatio = try $1.integer(in: 1...1_000_000)
        },
        Setting("decorators.unzipMaxMembers", "Zip-bomb guard: most members one zip may hold (10000).") {
            $0.unzipOptions.maxMembers = try $1.integer(in: 1...10_000_000)
        },
        Setting("decorators.bundleArchiveName", "Name of the packed archive in each bundle (bundle.zip).") {
            $0.bundleOptions.archiveName = try $1.string()
        },
        Setting("decorators.bundleMaxMembers", "Most resources one packed bundle may hold (10000).") {
            $0.bundleOptions.maxMembers = try $1.integer(in: 1...10_000_000)
        },
        Setting("aws.region", "Region of the drainer's AWS calls, and the bucket's when region is unset.") {
            $0.awsRegion = try $1.optionalString()
        },
        Setting("aws.profile", "Shared-config profile the drainer takes credentials from.") {
            $0.awsProfile = try $1.optionalString()
        },
        Setting("aws.roleARN", "Role the drainer assumes on top of the credential chain.") {
            $0.awsRoleARN = try $1.optionalString()
        },
        Setting("s3.createBucket", "Create the bucket when missing (default false).") {
            $0.options.createBucket = try $1.bool()
        },
        Setting("s3.bucketPolicy", "Bucket policy: a JSON document, or public-read.") {
            $0.options.bucketPolicy = try $1.optionalString()
        },
        Setting("s3.versioning", "Turn versioning on (true) or suspend it (false); unset leaves it alone.") {
            $0.options.versioning = try $1.bool()
        },
        Setting("s3.publicAccessBlock", "blocked (default), lifted, or unmanaged (left as the bucket has it).") {
            $0.options.publicAccessBlock = try $1.choice(
                StorageOptions.PublicAccessBlock.allCases.map { ($0.rawValue, $0) })
        },
        Setting("s3.lifecyclePolicy", "Lifecycle preset, e.g. archive-after-30-days (see Bucket set-up).") {
            $0.options.lifecyclePolicy = try $1.optionalString()
        },
        Setting(
            "s3.lifecycleRules", "Structured lifecycle: {transitions: [{days, storageClass}], expirationDays, ...}."
        ) {
            $0.options.lifecycleRules = try $1.decoded(LifecycleRules.self)
        },
        Setting("s3.encryption", "Default and object encryption: AES256 or aws:kms.") {
            $0.encryptionName = try $1.choice([("aes256", "AES256"), ("aws:kms", "aws:kms"), ("none", "none")])
        },
        Setting("s3.kmsKeyID", "KMS key id, alias or ARN for aws:kms (default: the AWS-managed key).") {
            $0.kmsKeyID = try $1.optionalString()
        },
        Setting("s3.bucketKey", "Use an S3 bucket key with aws:kms (default false).") { $0.bucketKey = try $1.bool() },
        Setting("s3.storageClass", "Storage class of uploads, e.g. STANDARD_IA.") {
            $0.options.storageClass = try $1.optionalString()
        },
        Setting("s3.multipartThreshold", "Objects at least this large go up in parts (default 16MiB).") {
            $0.options.multipartThresholdBytes = try $1.bytes()
        },
        Setting("s3.multipartChunkSize", "Part size (default 8MiB).") {
            $0.options.multipartChunkSizeBytes = try $1.bytes()
        },
        Setting("s3.maxConcurrentUploads", "Parts and objects uploaded at once (default 8).") {
            $0.options.maxConcurrentUploads = try $1.integer(in: 1...64)
        },
        Setting("s3.uploadTimeout", "Bound on one object's upload (default 15m).") {
            $0.options.uploadTimeoutSeconds = try $1.duration().seconds
        },
        Setting("s3.maxRetries", "Attempts per resource before it is failed (default 10).") {
            $0.options.maxRetries = try $1.integer(in: 0...1000)
        },
        Setting("s3.retryDelay", "First delay between attempts (default 1s).") {
            $0.options.retryDelaySeconds = try $1.duration().seconds
        },
        Setting("s3.exponentialBackoff", "Grow the delay exponentially, with full jitter (default true).") {
            $0.options.exponentialBackoff = try $1.bool()
        },
        Setting("s3.allowInsecureHTTP", "Allow a plain http:// endpoint that is not loopback (default false).") {
            $0.options.allowInsecureHTTP = try $1.bool()
        },
        Setting("metrics.cloudwatch", "Send the drainer's metrics to CloudWatch (default false).") {
            $0.options.cloudwatchMetrics = try $1.bool()
        },
        Setting("metrics.namespace", "CloudWatch namespace (default PipelineStorage).") {
            $0.options.metricsNamespace = try $1.optionalString() ?? "PipelineStorage"
        },
    ]

    /// Reads the configuration: the file first (when one is named), then the environment variables over it.
    ///
    /// - Parameters:
    ///   - environment: The process environment (or another, for tests).
    ///   - configFile: A JSON configuration file; nil to use `PIPELINE_STORAGE_CONFIG` when set, else none.
    /// - Throws: `SpoolError.invalidConfiguration` naming the file, key or variable and the value: an unreadable or
    ///   malformed file, an unknown key or variable, a value of the wrong kind or out of range.
    public static func load(
        environment: [String: String] = ProcessInfo.processInfo.environment, configFile: String? = nil
    ) throws -> ApplicationStorageConfiguration {
        var configuration = ApplicationStorageConfiguration()
        let settingsByKey = Dictionary(uniqueKeysWithValues: settings.map { ($0.key, $0) })
        if let path = configFile ?? environment[configFileVariable].flatMap({ $0.isEmpty ? nil : $0 }) {
            for (key, raw) in try readFile(path) {
                guard let setting = settingsByKey[key] else {
                    let hint = closestName(to: key, among: settings.map(\.key)).map { "; did you mean '\($0)'?" }
                    throw SpoolError(
                        .invalidConfiguration,
                        "unknown key '\(key)' in the configuration file '\(path)'"
                            + (hint ?? "; the README lists every key"))
                }
                try setting.apply(&configuration, ConfigurationValue(raw: raw, source: "key '\(key)' in '\(path)'"))
            }
        }
        let settingsByVariable = Dictionary(uniqueKeysWithValues: settings.map { ($0.variable, $0) })
        for (name, value) in environment.sorted(by: { $0.key < $1.key })
        where name.hasPrefix(variablePrefix) && name != configFileVariable {
            guard let setting = settingsByVariable[name] else {
                let hint = closestName(to: name, among: settings.map(\.variable)).map { "; did you mean \($0)?" }
                throw SpoolError(
                    .invalidConfiguration,
                    "unknown environment variable \(name)"
                        + (hint ?? "; the README lists every PIPELINE_STORAGE_ "
                            + "variable"))
            }
            try setting.apply(&configuration, ConfigurationValue(raw: .string(value), source: name))
        }
        try configuration.resolveCombinedSettings()
        if configuration.type == .s3, configuration.bucket != nil { _ = try configuration.resolvedBucket() }
        try configuration.options.validate()
        _ = try configuration.spoolOptions.validated()
        try configuration.unzipOptions.validate()
        try configuration.bundleOptions.validate()
        return configuration
    }

    private mutating func resolveCombinedSettings() throws {
        switch (batchedDurability, batchMaxDelay) {
        case (false, _?):
            throw SpoolError(
                .invalidConfiguration,
                "spool.batchMaxDelay is set but spool.durability is fsync; remove one, or use durability batched")
        case (true, let delay):
            spoolOptions.durability = delay.map { Durability.batched(maxDelay: $0) } ?? .batched
        case (nil, let delay?):
            spoolOptions.durability = .batched(maxDelay: delay)
        case (false, nil), (nil, nil):
            break
        }
        switch encryptionName {
        case "aws:kms":
            options.encryption = .kms(keyID: kmsKeyID, bucketKey: bucketKey ?? false)
        case let name where kmsKeyID != nil || bucketKey == true:
            throw SpoolError(
                .invalidConfiguration,
                "s3.kmsKeyID or s3.bucketKey is set but s3.encryption is \(name ?? "not set"); set s3.encryption to "
                    + "aws:kms, or remove them")
        case "AES256":
            options.encryption = .aes256
        default:
            options.encryption = nil
        }
    }

    /// The file's settings as dotted keys: nested objects are flattened (`{"s3": {"maxRetries": 3}}` and
    /// `{"s3.maxRetries": 3}` are the same).
    private static func readFile(_ path: String) throws -> [(String, ConfigurationValue.Raw)] {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw SpoolError(
                .invalidConfiguration,
                "cannot read the configuration file '\(path)' (\(String(cString: strerror(errno)))); check the path "
                    + "given in \(configFileVariable) or to configureApplicationStorage")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG, info.st_size <= 1 << 20 else {
            throw SpoolError(
                .invalidConfiguration, "the configuration file '\(path)' is not a regular file of at most 1 MiB")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SpoolError(.invalidConfiguration, "cannot read the configuration file '\(path)'; check permissions")
        }
        let root: ConfigurationValue.Raw
        do {
            root = try JSONDecoder().decode(ConfigurationValue.Raw.self, from: data)
        } catch {
            throw SpoolError(
                .invalidConfiguration,
                "the configuration file '\(path)' is not valid JSON (\(jsonProblem(error))); fix it, see the README "
                    + "for an example")
        }
        guard case .object(let object) = root else {
            throw SpoolError(.invalidConfiguration, "the configuration file '\(path)' must hold one JSON object")
        }
        var flattened: [(String, ConfigurationValue.Raw)] = []
        func flatten(_ object: [String: ConfigurationValue.Raw], under prefix: String, depth: Int) throws {
            for key in object.keys.sorted() {
                let dotted = prefix.isEmpty ? key : prefix + "." + key
                if case .object(let nested) = object[key]!, settingsByKeyPrefix(dotted) {
                    guard depth < 4 else { break }
                    try flatten(nested, under: dotted, depth: depth + 1)
                } else {
                    flattened.append((dotted, object[key]!))
                }
            }
        }
        try flatten(object, under: "", depth: 0)
        return flattened
    }

    /// Whether some setting lives under `prefix` (so an object there is a section, not a value).
    private static func settingsByKeyPrefix(_ prefix: String) -> Bool {
        settings.contains { $0.key.hasPrefix(prefix + ".") }
    }

    private static func jsonProblem(_ error: any Error) -> String {
        if case DecodingError.dataCorrupted(let context) = error {
            let underlying = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
            return underlying ?? context.debugDescription
        }
        return String(describing: error).prefix(200).description
    }
}

extension Duration {
    /// The duration in seconds, with its fraction.
    fileprivate var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
