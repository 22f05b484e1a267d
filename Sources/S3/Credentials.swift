import Foundation

/// AWS credentials: an access key, its secret, and for temporary credentials a session token and an expiry.
///
/// `description` never shows the secret or the token, so credentials can appear in logs and errors safely.
public struct AWSCredentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The access key id (not secret).
    public var accessKeyID: String
    /// The secret access key.
    public var secretAccessKey: String
    /// The session token of temporary credentials.
    public var sessionToken: String?
    /// When temporary credentials expire.
    public var expiration: Date?

    /// Credentials from their parts.
    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
    }

    /// The key id and whether there is a session token; never the secret.
    public var description: String {
        "AWSCredentials(accessKeyID: \(accessKeyID), secret: <redacted>"
            + (sessionToken == nil ? "" : ", session token: <redacted>")
            + (expiration.map { ", expires: \($0)" } ?? "") + ")"
    }

    /// Same as `description`: the secret never reaches a debugger's or logger's output either.
    public var debugDescription: String { description }
}

extension AWSCredentials: CustomReflectable {
    /// What `dump` and debuggers show: the key id, never the secret or the token.
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "accessKeyID": accessKeyID, "secretAccessKey": "<redacted>",
                "sessionToken": sessionToken == nil ? "nil" : "<redacted>", "expiration": expiration as Any,
            ])
    }
}

/// Something that resolves credentials: static values, the environment, and (later) the full AWS chain.
///
/// Called before every request; implementations cache what they resolve and refresh temporary credentials before
/// they expire.
public protocol CredentialsProvider: Sendable {
    /// The credentials to sign the next request with.
    ///
    /// - Throws: `S3Error` with code `CredentialsNotFound` (or the provider's own) when none can be resolved.
    func credentials() async throws -> AWSCredentials
}

/// Always the same credentials.
public struct StaticCredentialsProvider: CredentialsProvider {
    /// The credentials.
    public let value: AWSCredentials

    /// A provider of these credentials.
    public init(_ credentials: AWSCredentials) { value = credentials }

    /// The credentials.
    public func credentials() async throws -> AWSCredentials { value }
}

/// Credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
public struct EnvironmentCredentialsProvider: CredentialsProvider {
    private let environment: [String: String]

    /// Reads the process environment (or the given one, for tests).
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    /// The credentials, when both the key id and the secret are set.
    public var resolved: AWSCredentials? {
        guard let id = environment["AWS_ACCESS_KEY_ID"], !id.isEmpty,
            let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty
        else { return nil }
        let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token)
    }

    /// The credentials.
    ///
    /// - Throws: `S3Error` `CredentialsNotFound` naming the variables to set.
    public func credentials() async throws -> AWSCredentials {
        guard let resolved else {
            throw S3Error.credentialsNotFound(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not both set; set them, or configure a profile")
        }
        return resolved
    }
}
