import Foundation
import PipelineStorage
import CredentialChain
import S3

/// What is fuzzed: the parsers that read bytes from outside — S3's XML answers, and the configuration (a JSON file
/// and `PIPELINE_STORAGE_*` variables). A target must never crash, whatever the bytes: it either parses or throws.
enum FuzzTarget: String, CaseIterable, Sendable {
    /// `XMLNode.parse`, then every accessor over the tree it returns.
    case xml
    /// `ApplicationStorageConfiguration.load` reading the bytes as its JSON configuration file.
    case configFile = "config-file"
    /// `ApplicationStorageConfiguration.load` with the bytes as `PIPELINE_STORAGE_*` variables.
    case configEnvironment = "config-env"
    /// The AWS shared config/credentials parser (`AWSConfigFile.parse`), then every profile's keys, nested sections
    /// and `credential_process` command line (`ShellWords.split`), as the credential chain reads them.
    case profile

    /// Runs the target on one input.
    ///
    /// - Returns: how it ended, as a short value-free label (`ok`, or the kind of error) for the run's statistics.
    func run(_ bytes: [UInt8], scratchFile: String) -> String {
        switch self {
        case .xml: return Self.parseXML(bytes)
        case .configFile: return Self.loadConfigurationFile(bytes, path: scratchFile)
        case .configEnvironment: return Self.loadConfigurationEnvironment(bytes)
        case .profile: return Self.parseProfiles(bytes)
        }
    }

    private static func parseXML(_ bytes: [UInt8]) -> String {
        do {
            let root = try XMLNode.parse(bytes)
            var stack = [root]
            var visited = 0
            while let node = stack.popLast() {
                visited += 1
                // What the S3 client reads from answers.
                _ = node.string("Key")
                _ = node.int("Size")
                _ = node.bool("IsTruncated")
                _ = node.child("Error")?.attributes
                _ = node.children(node.name).count
                stack += node.children
            }
            return visited > 1 ? "ok: elements" : "ok: one element"
        } catch {
            return "XMLParseError"
        }
    }

    private static func parseProfiles(_ bytes: [UInt8]) -> String {
        do {
            let file = try AWSConfigFile.parse(String(decoding: bytes, as: UTF8.self), path: "fuzz/config")
            var keys = 0
            for section in file.sections {
                for key in ["aws_access_key_id", "role_arn", "source_profile", "s3", "region", "duration_seconds"] {
                    if case .section(let nested)? = section.entries[key]?.value { keys += nested.count }
                    if case .string? = section.entries[key]?.value { keys += 1 }
                }
                if case .string(let command)? = section.entries["credential_process"]?.value {
                    _ = try? ShellWords.split(command)
                }
            }
            _ = file.section("default")
            return keys > 0 ? "ok: keys" : "ok"
        } catch {
            return "S3Error " + error.code
        }
    }

    private static func loadConfigurationFile(_ bytes: [UInt8], path: String) -> String {
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else { return "scratch file failed" }
        return label(of: { try ApplicationStorageConfiguration.load(environment: [:], configFile: path) })
    }

    /// The bytes as lines of variables: a line's first byte picks a setting's variable (or, past the settings, a
    /// misspelt one), the rest of the line is its value.
    private static func loadConfigurationEnvironment(_ bytes: [UInt8]) -> String {
        let settings = ApplicationStorageConfiguration.settings
        var environment: [String: String] = [:]
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            let pick = Int(line.first!)
            let value = String(decoding: line.dropFirst(), as: UTF8.self)
            if pick < settings.count * 2 {
                environment[settings[pick % settings.count].variable] = value
            } else {
                environment[ApplicationStorageConfiguration.variablePrefix + "FUZZ_\(pick)"] = value
            }
        }
        return label(of: { try ApplicationStorageConfiguration.load(environment: environment, configFile: nil) })
    }

    private static func label(of load: () throws -> ApplicationStorageConfiguration) -> String {
        do {
            let configuration = try load()
            // What configureApplicationStorage reads next.
            _ = configuration.spoolOptions.maxSpoolBytes
            _ = configuration.options.multipartChunkSizeBytes
            return "ok"
        } catch let error as SpoolError {
            return "SpoolError " + error.code.rawValue
        } catch {
            return String(describing: type(of: error))
        }
    }

    /// Inputs the fuzzer starts from: real answers and real configurations, from which mutations reach the corners.
    var seeds: [[UInt8]] {
        switch self {
        case .xml: return Self.xmlSeeds.map { Array($0.utf8) }
        case .configFile: return Self.configurationSeeds.map { Array($0.utf8) }
        case .profile: return Self.profileSeeds.map { Array($0.utf8) }
        case .configEnvironment:
            let settings = ApplicationStorageConfiguration.settings
            let values = ["s3", "file", "64MiB", "30s", "1h30m", "true", "no", "aws:kms", "batched", "5ms", "0", "1e3"]
            return (0..<settings.count).map { index in
                [UInt8(index)] + Array(values[index % values.count].utf8) + [UInt8(ascii: "\n"), UInt8(index + 1)]
                    + Array(values[(index + 3) % values.count].utf8)
            }
        }
    }

    /// Fragments mutations insert: the syntax the parser decides on, and values at the edges.
    var dictionary: [[UInt8]] {
        let tokens: [String]
        switch self {
        case .xml:
            tokens = [
                "<", ">", "</", "/>", "<a>", "</a>", "&amp;", "&lt;", "&#", "&#x", "&#0;", "&#x110000;", "&#xD800;",
                ";", "<![CDATA[", "]]>", "<!--", "-->", "<?", "?>", "<!DOCTYPE a>", "<!ENTITY", "\"", "'", "=",
                "xmlns:s3=\"u\"", "s3:", ":", "\u{FEFF}", "\u{0}", "\u{FFFF}", "<Key>", "</Key>", "<Size>", "</Size>",
                "99999999999999999999", "-1", "true", "<Error><Code>", "</Code></Error>",
            ]
        case .configFile:
            tokens = [
                "{", "}", "[", "]", "\"", ":", ",", "null", "true", "false", "1e999", "-1e999", "1e308", "-0", "NaN",
                "Infinity", "-Infinity", "9223372036854775807", "9223372036854775808", "18446744073709551616",
                "1e-400", "0.5", "\\u0000", "\\ud800", "\\n", "\"spool\":", "\"s3\":", "\"aws\":", "\"maxBytes\":",
                "\"fullWait\":", "\"maxRetries\":", "\"multipartChunkSize\":", "\"uploadTimeout\":",
                "\"spool.batchMaxDelay\":", "\"1.5GiB\"", "\"9999999TiB\"", "\"1h30m\"", "\"99999999999999w\"",
                "\"inf\"", "\"nan\"", "\"-5s\"", "\"1e300s\"", "\"{environment}\"",
            ]
        case .profile:
            tokens = [
                "[", "]", "[profile ", "[default]", "[sso-session x]", "=", " = ", "\n", "\r\n", "\r", "#", ";", " #",
                "\t", "  ", "aws_access_key_id", "aws_secret_access_key", "role_arn", "source_profile",
                "credential_process", "s3 =\n  max_concurrent_requests = 10", "\"", "'", "\\", "$HOME", "~",
                "\u{0}", "\u{FEFF}", "é", "duration_seconds = 99999999999999999999",
            ]
        case .configEnvironment:
            tokens = [
                "\n", "0", "-1", "1e999", "inf", "nan", "NaN", "-0", "9223372036854775808", "1.5", "64MiB", "1e300",
                "9999999TiB", "1h30m", "99999999999999w", "500ms", "yes", "maybe", "aws:kms", "AES256", "none",
                "\u{0}", "\u{7F}", "\t", "\r", "١٢٣", "½", "Ⅻ",
            ]
        }
        return tokens.map { Array($0.utf8) }
    }

    static let profileSeeds = [
        """
        [default]
        aws_access_key_id = AKIDEXAMPLE
        aws_secret_access_key = wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY ; not a comment
        region = eu-west-1
        s3 =
          max_concurrent_requests = 10
          addressing_style = path
        # a comment

        [profile chained]
        role_arn = arn:aws:iam::123456789012:role/Fetcher
        source_profile = default
        external_id = abc
        duration_seconds = 900
        credential_process = /usr/bin/env "helper tool" --profile 'x y' \\escaped
        """,
        "[profile web]\r\nweb_identity_token_file = /var/run/token\r\nrole_arn=arn:aws:iam::1:role/x\r\n",
        "[x]\n\tkey = value\n  continued\n",
    ]

    static let xmlSeeds = [
        """
        <?xml version="1.0" encoding="UTF-8"?>
        <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix>
        <KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
        <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
        <Contents><Key>p/a%20b</Key><LastModified>2026-11-24T10:00:00.000Z</LastModified>
        <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>434234</Size><StorageClass>STANDARD</StorageClass>
        </Contents><CommonPrefixes><Prefix>p/x/</Prefix></CommonPrefixes><EncodingType>url</EncodingType>
        </ListBucketResult>
        """,
        """
        <ListVersionsResult><Version><Key>k</Key><VersionId>v1</VersionId><IsLatest>true</IsLatest><Size>3</Size>
        <ETag>"e"</ETag></Version><DeleteMarker><Key>k</Key><VersionId>v2</VersionId><IsLatest>false</IsLatest>
        </DeleteMarker><NextKeyMarker>k</NextKeyMarker><NextVersionIdMarker>v2</NextVersionIdMarker></ListVersionsResult>
        """,
        "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>",
        """
        <CompleteMultipartUploadResult><Location>http://b.s3/k</Location><Bucket>b</Bucket><Key>k</Key>
        <ETag>"3858f62230ac3c915f300c664312c11f-9"</ETag><ChecksumCRC32C>AAAAAA==</ChecksumCRC32C>
        </CompleteMultipartUploadResult>
        """,
        """
        <ListPartsResult><Bucket>b</Bucket><Key>k</Key><UploadId>u</UploadId><PartNumberMarker>1</PartNumberMarker>
        <NextPartNumberMarker>3</NextPartNumberMarker><IsTruncated>true</IsTruncated><Part><PartNumber>2</PartNumber>
        <ETag>"7778aef83f66abc1fa1e8477f296d394"</ETag><Size>10485760</Size></Part></ListPartsResult>
        """,
        "<Error><Code>NoSuchKey</Code><Message>The resource you requested does not exist</Message><Resource>/b/k</Resource><RequestId>4442587FB7D0A2F9</RequestId></Error>",
        "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>r</RequestId></ErrorResponse>",
        "\u{FEFF}<a x='1' y=\"&lt;2&gt;\"><!-- c --><?pi data?><b><![CDATA[x<y>&z]]></b>&#233;&#x4E2D;<c/></a>",
    ]

    static let configurationSeeds = [
        """
        {
          "type": "s3", "environment": "prod", "bucket": "oc-fetcher-{environment}", "prefix": "data/",
          "spool": { "directory": "/var/spool/fetcher", "durability": "batched", "maxBytes": "20GiB" },
          "decorators": { "unzipResources": true },
          "aws": { "region": "eu-west-1", "roleARN": "arn:aws:iam::123456789012:role/Fetcher" },
          "s3": { "createBucket": true, "versioning": true, "lifecyclePolicy": "archive-after-30-days",
                  "encryption": "aws:kms", "kmsKeyID": "alias/fetcher", "bucketKey": true }
        }
        """,
        """
        {"type": "file", "directory": "/srv/out", "spool.fullWait": "1h30m", "spool.minFreeDiskBytes": 2147483648,
         "spool.batchMaxDelay": 0.005, "s3.maxRetries": 3, "s3.retryDelay": "500ms", "s3.uploadTimeout": 900,
         "s3.multipartThreshold": "16MiB", "s3.multipartChunkSize": 8388608, "metrics.cloudwatch": false}
        """,
        """
        {"bucket": "b", "region": "us-east-1", "endpoint": "http://127.0.0.1:9000", "s3.allowInsecureHTTP": true,
         "s3.maxConcurrentUploads": 64, "s3.exponentialBackoff": false, "metrics.namespace": "N",
         "s3.storageClass": "STANDARD_IA", "s3.bucketPolicy": "public-read", "aws.profile": "p"}
        """,
        "[1, 2, {\"a\": [null, true, 1e2, \"x\"]}]",
    ]
}
