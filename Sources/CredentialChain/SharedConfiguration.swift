import Foundation
import S3

/// The AWS shared config file (`AWS_CONFIG_FILE`, default `~/.aws/config`) and credentials file
/// (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`), read once, with their profiles as botocore maps
/// them:
///
/// - config file: `[default]` and `[profile NAME]` are profiles (botocore's `build_profile_map`: a section whose
///   name starts with `profile` and splits, shell-style, into exactly two words names the profile after the second,
///   so `[profile "my name"]` is `my name`); other sections (`[sso-session x]`, `[services x]`, a bare `[x]`) are not.
///   When two headers name the same profile, the later one wins.
/// - credentials file: every section is a profile, named as written (`[x]`, `[default]`).
/// - The merged view (`profile(_:)`) is the config file's profile with the credentials file's keys written over it,
///   key by key, as botocore's `Session.full_config` does.
public struct SharedConfiguration: Sendable {
    /// One profile's settings.
    public struct Profile: Sendable, Hashable {
        /// The profile's name.
        public var name: String
        /// Its keys (lowercased) and values, with the file each came from.
        public var entries: [String: Setting]

        /// A key's value and origin.
        public struct Setting: Sendable, Hashable {
            /// The value.
            public var value: AWSConfigFile.Value
            /// The file it was read from.
            public var file: String
            /// The line of its key.
            public var line: Int
        }

        /// A plain value (nil when unset or a nested section).
        public subscript(key: String) -> String? {
            if case .string(let value)? = entries[key]?.value { return value }
            return nil
        }

        /// A nested section's keys and values (nil when unset or a plain value).
        public func section(_ key: String) -> [String: String]? {
            if case .section(let values)? = entries[key]?.value { return values }
            return nil
        }

        /// `'key' of profile 'name' (file line N)`, for messages.
        public func describe(_ key: String) -> String {
            guard let setting = entries[key] else { return "'\(key)' of profile '\(name)'" }
            return "'\(key)' of profile '\(name)' (\(setting.file) line \(setting.line))"
        }

        /// Whether the profile has static keys (botocore's `_has_static_credentials`).
        var hasStaticCredentials: Bool {
            entries["aws_access_key_id"] != nil || entries["aws_secret_access_key"] != nil
        }
    }

    /// The config file's path (after `~` and `$VAR` expansion).
    public var configFile: String
    /// The credentials file's path.
    public var credentialsFile: String
    /// Profiles of the config file alone.
    public var configProfiles: [String: Profile]
    /// Profiles of the credentials file alone.
    public var credentialsProfiles: [String: Profile]

    /// Reads both files; a missing file is an empty one.
    ///
    /// - Parameter environment: Where `AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE` and `HOME` are looked up.
    /// - Throws: `S3Error` `InvalidConfiguration` when a file cannot be read or does not parse (naming file and line).
    public static func load(environment: [String: String]) throws(S3Error) -> SharedConfiguration {
        let configFile = PathExpansion.expand(
            environment.nonEmpty("AWS_CONFIG_FILE") ?? "~/.aws/config", environment: environment)
        let credentialsFile = PathExpansion.expand(
            environment.nonEmpty("AWS_SHARED_CREDENTIALS_FILE") ?? "~/.aws/credentials", environment: environment)
        return SharedConfiguration(
            configFile: configFile, credentialsFile: credentialsFile,
            config: try AWSConfigFile.load(path: configFile),
            credentials: try AWSConfigFile.load(path: credentialsFile))
    }

    /// The profiles of two parsed files.
    public init(configFile: String, credentialsFile: String, config: AWSConfigFile?, credentials: AWSConfigFile?) {
        self.configFile = configFile
        self.credentialsFile = credentialsFile
        configProfiles = [:]
        credentialsProfiles = [:]
        for section in config?.sections ?? [] {
            guard let name = Self.profileName(configSection: section.name) else { continue }
            configProfiles[name] = Self.profile(name, section, file: configFile)
        }
        for section in credentials?.sections ?? [] {
            credentialsProfiles[section.name] = Self.profile(section.name, section, file: credentialsFile)
        }
    }

    /// The merged profile: the config file's keys, overwritten by the credentials file's; nil when in neither.
    public func profile(_ name: String) -> Profile? {
        let fromConfig = configProfiles[name]
        let fromCredentials = credentialsProfiles[name]
        guard var merged = fromConfig ?? fromCredentials else { return nil }
        if fromConfig != nil, let fromCredentials {
            merged.entries.merge(fromCredentials.entries) { _, credentials in credentials }
        }
        return merged
    }

    /// `the config file (path) or the credentials file (path)`, for messages.
    var filesDescription: String { "\(configFile) or \(credentialsFile)" }

    /// The profile a config-file section header names, as botocore's `build_profile_map` reads it.
    static func profileName(configSection name: String) -> String? {
        if name == "default" { return name }
        guard name.hasPrefix("profile"), let words = try? ShellWords.split(name), words.count == 2 else { return nil }
        return words[1]
    }

    private static func profile(_ name: String, _ section: AWSConfigFile.Section, file: String) -> Profile {
        Profile(
            name: name,
            entries: section.entries.mapValues { Profile.Setting(value: $0.value, file: file, line: $0.line) })
    }
}
