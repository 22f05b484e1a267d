import Foundation
import S3
import Testing

// MARK: moto's IAM

/// IAM calls against the local moto_server, signed with its admin key: roles and users for the STS tests.
struct MotoIAM {
    let server: LocalS3.Server
    let client: QueryAPIClient
    var admin: StaticCredentialsProvider {
        StaticCredentialsProvider(
            AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: server.secretAccessKey))
    }

    init(_ server: LocalS3.Server) throws {
        self.server = server
        client = try QueryAPIClient(
            service: "iam", region: server.region, endpoint: server.endpoint, apiVersion: "2010-05-08",
            transport: CurlTransport())
    }

    static func json(_ object: Any) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }

    /// A role anyone in the account may assume (with `externalID` when given), allowed s3:* and sts:AssumeRole.
    func createRole(_ name: String, externalID: String? = nil) async throws -> String {
        var statement: [String: Any] = [
            "Effect": "Allow", "Principal": ["AWS": "*"], "Action": "sts:AssumeRole",
        ]
        if let externalID { statement["Condition"] = ["StringEquals": ["sts:ExternalId": externalID]] }
        let federated: [String: Any] = [
            "Effect": "Allow", "Principal": ["Federated": "*"], "Action": "sts:AssumeRoleWithWebIdentity",
        ]
        let trust: [String: Any] = ["Version": "2012-10-17", "Statement": [statement, federated]]
        let root = try await client.call(
            "CreateRole", [("RoleName", name), ("AssumeRolePolicyDocument", Self.json(trust))], credentials: admin)
        let permissions: [String: Any] = [
            "Version": "2012-10-17",
            "Statement": [["Effect": "Allow", "Action": ["s3:*", "sts:AssumeRole"], "Resource": "*"]],
        ]
        _ = try await client.call(
            "PutRolePolicy",
            [("RoleName", name), ("PolicyName", "allow-s3"), ("PolicyDocument", Self.json(permissions))],
            credentials: admin)
        return try #require(root.child("CreateRoleResult")?.child("Role")?.string("Arn"))
    }

    /// A new user allowed `actions` (everything by default), with `keys` access keys.
    func createUser(_ name: String, keys: Int, actions: [String] = ["*"]) async throws -> [AWSCredentials] {
        _ = try await client.call("CreateUser", [("UserName", name)], credentials: admin)
        let policy: [String: Any] = [
            "Version": "2012-10-17", "Statement": [["Effect": "Allow", "Action": actions, "Resource": "*"]],
        ]
        _ = try await client.call(
            "PutUserPolicy", [("UserName", name), ("PolicyName", "all"), ("PolicyDocument", Self.json(policy))],
            credentials: admin)
        var created: [AWSCredentials] = []
        for _ in 0..<keys {
            let root = try await client.call("CreateAccessKey", [("UserName", name)], credentials: admin)
            let key = try #require(root.child("CreateAccessKeyResult")?.child("AccessKey"))
            created.append(
                AWSCredentials(
                    accessKeyID: try #require(key.string("AccessKeyId")),
                    secretAccessKey: try #require(key.string("SecretAccessKey"))))
        }
        return created
    }
}
