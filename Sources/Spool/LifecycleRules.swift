/// The lifecycle the drainer puts on a bucket for a destination's key prefixes (SPEC §6): transitions to colder
/// storage classes, expiration, expiration of noncurrent versions, and — always — the abort of multipart uploads left
/// unfinished (a drainer killed mid-upload leaves parts S3 bills for until something aborts them).
///
/// Given as a named preset (`StorageOptions.lifecyclePolicy`) or as rules (`StorageOptions.lifecycleRules`).
public struct LifecycleRules: Sendable, Hashable, Codable {
    /// Objects move to `storageClass` this many days after they were written.
    public struct Transition: Sendable, Hashable, Codable {
        /// Days after creation (more than 0).
        public var days: Int
        /// One of `LifecycleRules.transitionStorageClasses`.
        public var storageClass: String

        /// A transition.
        public init(days: Int, storageClass: String) {
            self.days = days
            self.storageClass = storageClass
        }
    }

    /// Days an unfinished multipart upload is kept before S3 aborts it, unless told otherwise.
    public static let defaultAbortIncompleteUploadsDays = 7

    /// Transitions, in increasing days, each to a colder class than the one before.
    public var transitions: [Transition]
    /// Objects are deleted this many days after they were written (after the last transition); nil to keep them.
    public var expirationDays: Int?
    /// Versions that stopped being current are deleted after this many days (versioned buckets); nil to keep them.
    public var noncurrentVersionExpirationDays: Int?
    /// Unfinished multipart uploads are aborted this many days after they began. Always part of the lifecycle.
    public var abortIncompleteUploadsAfterDays: Int

    /// Rules; with no argument, only the abort of unfinished uploads after 7 days.
    public init(
        transitions: [Transition] = [], expirationDays: Int? = nil, noncurrentVersionExpirationDays: Int? = nil,
        abortIncompleteUploadsAfterDays: Int = LifecycleRules.defaultAbortIncompleteUploadsDays
    ) {
        self.transitions = transitions
        self.expirationDays = expirationDays
        self.noncurrentVersionExpirationDays = noncurrentVersionExpirationDays
        self.abortIncompleteUploadsAfterDays = abortIncompleteUploadsAfterDays
    }

    enum CodingKeys: String, CodingKey {
        case transitions, expirationDays, noncurrentVersionExpirationDays, abortIncompleteUploadsAfterDays
    }

    /// Decodes rules; a missing key takes its default, so rules recorded by an older build still read.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        transitions = try container.decodeIfPresent([Transition].self, forKey: .transitions) ?? []
        expirationDays = try container.decodeIfPresent(Int.self, forKey: .expirationDays)
        noncurrentVersionExpirationDays = try container.decodeIfPresent(
            Int.self, forKey: .noncurrentVersionExpirationDays)
        abortIncompleteUploadsAfterDays =
            try container.decodeIfPresent(Int.self, forKey: .abortIncompleteUploadsAfterDays)
            ?? Self.defaultAbortIncompleteUploadsDays
    }

    // MARK: Presets

    /// The named presets, in the order they are documented.
    public static let presets: [(name: String, rules: LifecycleRules)] = [
        ("archive-after-30-days", LifecycleRules(transitions: [Transition(days: 30, storageClass: "GLACIER")])),
        ("archive-after-90-days", LifecycleRules(transitions: [Transition(days: 90, storageClass: "GLACIER")])),
        (
            "infrequent-access-after-30-days",
            LifecycleRules(transitions: [Transition(days: 30, storageClass: "STANDARD_IA")])
        ),
        ("expire-after-365-days", LifecycleRules(expirationDays: 365)),
        ("abort-incomplete-uploads-only", LifecycleRules()),
    ]

    /// The preset names.
    public static var presetNames: [String] { presets.map(\.name) }

    /// The rules of a preset.
    ///
    /// - Throws: `SpoolError.invalidConfiguration` for an unknown name, listing the valid ones.
    public static func preset(named name: String) throws -> LifecycleRules {
        guard let preset = presets.first(where: { $0.name == name }) else {
            throw SpoolError(
                .invalidConfiguration,
                "lifecyclePolicy \(Validation.quoted(name)) is not a preset; use one of "
                    + presetNames.joined(separator: ", ") + ", or give lifecycleRules (transitions and expiration)")
        }
        return preset.rules
    }

    // MARK: Validation

    /// The storage classes a lifecycle rule can move objects to, warmest first: S3 only transitions objects down
    /// this list ("waterfall"), never back up.
    public static let transitionStorageClasses = [
        "STANDARD_IA", "INTELLIGENT_TIERING", "ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE",
    ]

    /// Classes S3 moves objects to only after 30 days, and keeps them in 30 days before the next transition.
    static let infrequentAccessClasses: Set<String> = ["STANDARD_IA", "ONEZONE_IA"]

    /// S3's minimum for the infrequent-access classes.
    static let infrequentAccessMinimumDays = 30

    /// Checks the rules against what S3 accepts.
    ///
    /// - Throws: `SpoolError.invalidConfiguration` naming the rule and saying what to change.
    public func validate() throws {
        func reject(_ message: String) -> SpoolError { SpoolError(.invalidConfiguration, "lifecycle: " + message) }
        func describe(_ transition: Transition) -> String {
            "\(transition.storageClass) after \(transition.days) days"
        }
        var previous: Transition?
        for transition in transitions {
            guard let rank = Self.transitionStorageClasses.firstIndex(of: transition.storageClass) else {
                throw reject(
                    "transition storage class \(Validation.quoted(transition.storageClass)) is not one S3 moves "
                        + "objects to; use one of " + Self.transitionStorageClasses.joined(separator: ", "))
            }
            guard transition.days > 0 else {
                throw reject("transition \(describe(transition)): days must be greater than 0")
            }
            if Self.infrequentAccessClasses.contains(transition.storageClass),
                transition.days < Self.infrequentAccessMinimumDays
            {
                throw reject(
                    "transition \(describe(transition)): S3 moves objects to \(transition.storageClass) only "
                        + "\(Self.infrequentAccessMinimumDays) days or more after they were written")
            }
            if let previous {
                guard transition.days > previous.days else {
                    throw reject(
                        "transition \(describe(transition)) is not later than the one before it "
                            + "(\(describe(previous))); list transitions in increasing days")
                }
                guard rank > Self.transitionStorageClasses.firstIndex(of: previous.storageClass)! else {
                    throw reject(
                        "transition \(describe(transition)) goes from \(previous.storageClass) to a class that is "
                            + "not colder; S3 only moves objects down "
                            + Self.transitionStorageClasses.joined(separator: " → "))
                }
                if Self.infrequentAccessClasses.contains(previous.storageClass),
                    transition.days - previous.days < Self.infrequentAccessMinimumDays
                {
                    throw reject(
                        "transition \(describe(transition)) comes \(transition.days - previous.days) days after "
                            + "\(describe(previous)); S3 keeps objects in \(previous.storageClass) at least "
                            + "\(Self.infrequentAccessMinimumDays) days before moving them on")
                }
            }
            previous = transition
        }
        if let expirationDays {
            guard expirationDays > 0 else { throw reject("expirationDays must be greater than 0") }
            if let last = transitions.last, expirationDays <= last.days {
                throw reject(
                    "expirationDays \(expirationDays) is not after the last transition (\(describe(last))); "
                        + "expire later or drop the transition")
            }
        }
        if let noncurrentVersionExpirationDays, noncurrentVersionExpirationDays <= 0 {
            throw reject("noncurrentVersionExpirationDays must be greater than 0")
        }
        guard abortIncompleteUploadsAfterDays > 0 else {
            throw reject("abortIncompleteUploadsAfterDays must be greater than 0")
        }
    }
}
