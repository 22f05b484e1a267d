import Foundation
import S3
import Testing

@testable import CredentialChain

/// A parsed value as botocore's JSON shows it: a string, or a nested section.
enum INIValue: Decodable, Equatable, CustomStringConvertible {
    case string(String)
    case section([String: String])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            self = .string(text)
        } else {
            self = .section(try container.decode([String: String].self))
        }
    }

    init(_ value: AWSConfigFile.Value) {
        switch value {
        case .string(let text): self = .string(text)
        case .section(let values): self = .section(values)
        }
    }

    var description: String {
        switch self {
        case .string(let text): "\"\(text)\""
        case .section(let values): "\(values)"
        }
    }
}

/// What botocore makes of a config file and a credentials file.
struct BotocoreView: Decodable {
    /// raw_config_parse of the config file; nil when it raised.
    let raw: [String: [String: INIValue]]?
    /// load_config(config)["profiles"]; nil when it raised.
    let profiles: [String: [String: INIValue]]?
    /// Session.full_config["profiles"] with both files; nil when it raised.
    let merged: [String: [String: INIValue]]?

    static let script = """
        import json, os, sys
        import botocore.configloader as loader, botocore.session
        config, credentials = sys.argv[1], sys.argv[2]
        def attempt(f):
            try:
                return f()
            except Exception:
                return None
        os.environ["AWS_CONFIG_FILE"] = config
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = credentials
        print(json.dumps({
            "raw": attempt(lambda: loader.raw_config_parse(config)),
            "profiles": attempt(lambda: loader.load_config(config)["profiles"]),
            "merged": attempt(lambda: botocore.session.Session().full_config["profiles"]),
        }))
        """

    static func of(config: String, credentials: String) async throws -> BotocoreView {
        let output = try await runVenvPython(script, arguments: [config, credentials])
        return try JSONDecoder().decode(BotocoreView.self, from: Data(output.utf8))
    }
}

/// A tricky file: comments of both kinds, indented comments, inline `#` that is not a comment, `:` as delimiter,
/// mixed case keys, trailing spaces, nested sections with blank lines, continuation lines with tabs, empty values,
/// shell-quoted profile names, sections that are not profiles, spaces inside brackets, `[DEFAULT]`, text after `]`.
let trickyConfig = """
    # leading comment
    ; another comment
    [default]
    region = us-west-2
    output=json
      # an indented comment
    Key_With_Case = Value With Spaces   \("")
    colon: yes: really
    inline = value # not a comment
      ; indented semicolon comment
    [profile dev]
    s3 =
      max_concurrent_requests = 10
      Addressing_Style = path

      multipart_threshold=64MB
    multi = first
      second line
    \tthird = tabbed
    empty =
    [profile "quoted name"]
    region = eu-west-1
    [profilex]
    region = not-a-profile
    [profile a b]
    region = not-a-profile-either
    [sso-session corp]
    sso_region = us-east-1
    [ profile spaced ]
    region = spaced
    [DEFAULT]
    shared = from-default
    [profile dev2]   trailing text
    region = ap-south-1
    [profile twice]
    region = first
    [profile  twice]
    region = second
    [profile default]
    output = text
    """

let trickyCredentials = """
    [default]
    aws_access_key_id = AKIDDEFAULT
    aws_secret_access_key = default-secret
    output = from-credentials
    [profile dev]
    aws_access_key_id = AKIDNOTDEV
    [dev2]
    aws_access_key_id=AKIDDEV2
    aws_secret_access_key=dev2-secret
    region = credentials-wins
    [only-credentials]
    aws_access_key_id = AKIDONLY
    """

@Suite("Shared config and credentials files, parsed as botocore parses them")
struct ConfigFileTests {
    func ours(_ file: AWSConfigFile) -> [String: [String: INIValue]] {
        Dictionary(file.sections.map { ($0.name, $0.entries.mapValues { INIValue($0.value) }) }) { _, last in last }
    }

    func values(_ profiles: [String: SharedConfiguration.Profile]) -> [String: [String: INIValue]] {
        profiles.mapValues { $0.entries.mapValues { INIValue($0.value) } }
    }

    func compareWithBotocore(config: String, credentials: String, sourceLocation: SourceLocation = #_sourceLocation)
        async throws
    {
        let sandbox = try Sandbox()
        try sandbox.config(config)
        try sandbox.credentials(credentials)
        let botocore = try await BotocoreView.of(config: sandbox.configFile, credentials: sandbox.credentialsFile)
        let parsedConfig = Result { try AWSConfigFile.parse(config, path: sandbox.configFile) }
        #expect((try? parsedConfig.get()).map(ours) == botocore.raw, sourceLocation: sourceLocation)
        guard let configFile = try? parsedConfig.get(),
            let credentialsFile = try? AWSConfigFile.parse(credentials, path: sandbox.credentialsFile)
        else { return }
        let shared = SharedConfiguration(
            configFile: sandbox.configFile, credentialsFile: sandbox.credentialsFile, config: configFile,
            credentials: credentialsFile)
        #expect(values(shared.configProfiles) == botocore.profiles, sourceLocation: sourceLocation)
        let names = Set(shared.configProfiles.keys).union(shared.credentialsProfiles.keys)
        let merged = Dictionary(uniqueKeysWithValues: names.map { ($0, shared.profile($0)!) })
        #expect(values(merged) == botocore.merged, sourceLocation: sourceLocation)
    }

    @Test("A tricky config file and credentials file: the same sections, profiles and merge as botocore")
    func trickyFilesMatchBotocore() async throws {
        try await compareWithBotocore(config: trickyConfig, credentials: trickyCredentials)
    }

    @Test("CRLF and CR line endings parse as LF does (Python's universal newlines)")
    func lineEndings() async throws {
        try await compareWithBotocore(
            config: trickyConfig.replacingOccurrences(of: "\n", with: "\r\n"),
            credentials: trickyCredentials.replacingOccurrences(of: "\n", with: "\r"))
        let crlf = try AWSConfigFile.parse(trickyConfig.replacingOccurrences(of: "\n", with: "\r\n"), path: "c")
        #expect(crlf == (try AWSConfigFile.parse(trickyConfig, path: "c")))
    }

    @Test("The tricky file's values, spelled out")
    func trickyValues() throws {
        let shared = SharedConfiguration(
            configFile: "config", credentialsFile: "credentials",
            config: try AWSConfigFile.parse(trickyConfig, path: "c"),
            credentials: try AWSConfigFile.parse(trickyCredentials, path: "k"))
        let main = try #require(shared.configProfiles["default"])
        // [profile default] comes after [default]: the later header wins, as in botocore.
        #expect(main["output"] == "text")
        let dev = try #require(shared.configProfiles["dev"])
        #expect(
            dev.section("s3") == [
                "max_concurrent_requests": "10", "Addressing_Style": "path", "multipart_threshold": "64MB",
            ])
        #expect(dev["multi"] == "first\nsecond line\nthird = tabbed")
        #expect(dev["empty"] == "")
        #expect(dev["shared"] == "from-default", "[DEFAULT] keys reach every section")
        #expect(shared.configProfiles["quoted name"]?["region"] == "eu-west-1")
        #expect(shared.configProfiles["twice"]?["region"] == "second")
        #expect(shared.configProfiles["dev2"]?["region"] == "ap-south-1")
        for absent in ["profilex", "a b", "a", "corp", "spaced", "profile dev"] {
            #expect(shared.configProfiles[absent] == nil, "\(absent)")
        }
        let firstDefault = try AWSConfigFile.parse(trickyConfig, path: "c").section("default")
        #expect(firstDefault?.entries["key_with_case"]?.value == .string("Value With Spaces"))
        #expect(firstDefault?.entries["colon"]?.value == .string("yes: really"))
        #expect(firstDefault?.entries["inline"]?.value == .string("value # not a comment"))
        // Merged: the credentials file's keys win key by key; [profile dev] there is the profile "profile dev".
        #expect(shared.profile("dev2")?["region"] == "credentials-wins")
        #expect(shared.profile("default")?["output"] == "from-credentials")
        #expect(shared.profile("dev")?["aws_access_key_id"] == nil)
        #expect(shared.profile("profile dev")?["aws_access_key_id"] == "AKIDNOTDEV")
        #expect(shared.profile("only-credentials")?["aws_access_key_id"] == "AKIDONLY")
        #expect(shared.profile("dev2")?.describe("region") == "'region' of profile 'dev2' (credentials line 10)")
    }

    @Test(
        "Malformed files are refused, as botocore refuses them, naming file and line but never the line's text",
        arguments: [
            ("[default]\nregion = x\nAKIDSECRETLINE wJalrXUtnFEMI\n", 3),
            ("aws_access_key_id = AKIDSECRETLINE\n[default]\n", 1),
            ("[a]\nx = 1\n[a]\ny = 2\n", 3),
            ("[a]\nx = 1\nX = AKIDSECRETLINE\n", 3),
            ("[a]\ns3 =\n  AKIDSECRETLINE\n", 2),
            ("[a]\n= AKIDSECRETLINE\n", 2),
            ("\u{FEFF}[default]\nregion = x\n", 1),
        ])
    func malformed(text: String, line: Int) async throws {
        let sandbox = try Sandbox()
        try sandbox.config(text)
        try sandbox.credentials("")
        let botocore = try await BotocoreView.of(config: sandbox.configFile, credentials: sandbox.credentialsFile)
        #expect(botocore.raw == nil, "botocore refuses it too")
        do {
            _ = try AWSConfigFile.parse(text, path: sandbox.configFile)
            Issue.record("parsed")
        } catch {
            #expect(error.code == "InvalidConfiguration")
            #expect(error.message.contains("'\(sandbox.configFile)' line \(line):"), "\(error.message)")
            #expect(!error.message.contains("AKIDSECRETLINE") && !error.message.contains("wJalr"))
        }
    }

    @Test("Missing files are empty; a directory is no file; an absurdly large file is refused")
    func missingAndLargeFiles() throws {
        let sandbox = try Sandbox()
        #expect(try AWSConfigFile.load(path: sandbox.path + "/nope") == nil)
        #expect(try AWSConfigFile.load(path: sandbox.path) == nil)
        let empty = try SharedConfiguration.load(environment: sandbox.environment())
        #expect(empty.configProfiles.isEmpty && empty.credentialsProfiles.isEmpty)
        let big = String(
            repeating: "# padding padding padding padding\n", count: (AWSConfigFile.maximumFileBytes / 34) + 10)
        try sandbox.config("[default]\n" + big)
        #expect(throws: S3Error.self) { try SharedConfiguration.load(environment: sandbox.environment()) }
    }

    @Test("File paths: AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE with ~ and $VARS, else ~/.aws/…")
    func filePaths() throws {
        let sandbox = try Sandbox()
        try FileManager.default.createDirectory(atPath: sandbox.path + "/.aws", withIntermediateDirectories: true)
        try sandbox.write(".aws/config", "[profile home]\nregion = from-home\n")
        try sandbox.write("elsewhere", "[x]\naws_access_key_id = AKIDX\naws_secret_access_key = s\n")
        let defaults = try SharedConfiguration.load(environment: ["HOME": sandbox.path])
        #expect(defaults.configFile == sandbox.path + "/.aws/config")
        #expect(defaults.credentialsFile == sandbox.path + "/.aws/credentials")
        #expect(defaults.profile("home")?["region"] == "from-home")
        let expanded = try SharedConfiguration.load(environment: [
            "HOME": sandbox.path, "PLACE": "elsewhere", "AWS_SHARED_CREDENTIALS_FILE": "~/$PLACE",
            "AWS_CONFIG_FILE": "${HOME}/.aws/config",
        ])
        #expect(expanded.credentialsFile == sandbox.path + "/elsewhere")
        #expect(expanded.profile("x")?["aws_access_key_id"] == "AKIDX")
        #expect(expanded.profile("home") != nil)
    }

    @Test("credential_process is split like shlex.split: quotes, backslashes, no shell")
    func shellWords() async throws {
        let lines = [
            #"/bin/tool --flag "two words" 'single $HOME' plain\ space"#, #"a "b\"c" 'd\e' "f\g""#, "  spaced   out  ",
            #"x '' "" y"#, "tab\tseparated",
        ]
        let script = "import json, shlex, sys\nprint(json.dumps([shlex.split(l) for l in json.loads(sys.argv[1])]))"
        let input = String(decoding: try JSONSerialization.data(withJSONObject: lines), as: UTF8.self)
        let expected = try JSONDecoder().decode(
            [[String]].self, from: Data(try await runVenvPython(script, arguments: [input]).utf8))
        for (line, words) in zip(lines, expected) {
            #expect(try ShellWords.split(line) == words, "\(line)")
        }
        #expect(throws: ShellWords.SplitError.self) { try ShellWords.split("unclosed 'quote") }
        #expect(throws: ShellWords.SplitError.self) { try ShellWords.split("trailing \\") }
    }
}
