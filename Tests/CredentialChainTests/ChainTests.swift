import Foundation
import S3
import Synchronization
import Testing

@testable import CredentialChain

/// Static keys written into the files and variables of these tests: none may ever appear in an error.
let fileSecrets = [
    "wJalrXUtnFEMIsecretFromCredentialsFile", "configFileSecretValue0123456789", "envSecretValue0123456789",
]

@Suite("The chain's order and its errors (no network: instance metadata off)")
struct ChainTests {
    let credentialsFile = """
        [default]
        aws_access_key_id = AKIDCREDFILE
        aws_secret_access_key = wJalrXUtnFEMIsecretFromCredentialsFile
        [dev]
        aws_access_key_id = AKIDDEVCRED
        aws_secret_access_key = wJalrXUtnFEMIsecretFromCredentialsFile
        aws_session_token = dev-session-token-0123456789
        """
    let configFile = """
        [default]
        aws_access_key_id = AKIDCONFIG
        aws_secret_access_key = configFileSecretValue0123456789
        [profile dev]
        aws_access_key_id = AKIDDEVCONFIG
        aws_secret_access_key = configFileSecretValue0123456789
        [profile configonly]
        aws_access_key_id = AKIDCONFIGONLY
        aws_secret_access_key = configFileSecretValue0123456789
        """
    let environmentKeys = ["AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "envSecretValue0123456789"]

    func sandbox() throws -> Sandbox {
        let sandbox = try Sandbox()
        try sandbox.credentials(credentialsFile)
        try sandbox.config(configFile)
        return sandbox
    }

    @Test("Environment variables come first; AWS_PROFILE does not skip them, an explicit profile does")
    func environmentFirst() async throws {
        let sandbox = try sandbox()
        let withKeys = sandbox.environment(environmentKeys.merging(["AWS_SESSION_TOKEN": "env-token"]) { $1 })
        let chain = CredentialChain(environment: withKeys)
        let credentials = try await chain.credentials()
        #expect(credentials.accessKeyID == "AKIDENV")
        #expect(credentials.sessionToken == "env-token")
        #expect(chain.providerName == "environment (AWS_ACCESS_KEY_ID)")
        let viaVariable = CredentialChain(environment: withKeys.merging(["AWS_PROFILE": "dev"]) { $1 })
        #expect(try await viaVariable.credentials().accessKeyID == "AKIDENV")
        let explicit = CredentialChain(profile: "dev", environment: withKeys)
        #expect(try await explicit.credentials().accessKeyID == "AKIDDEVCRED")
        #expect(explicit.providerName == "profile 'dev' in \(sandbox.credentialsFile)")
    }

    @Test("Profile from AWS_PROFILE; the credentials file before the config file; config file keys when alone")
    func filePrecedence() async throws {
        let sandbox = try sandbox()
        let dev = CredentialChain(environment: sandbox.environment(["AWS_PROFILE": "dev"]))
        let credentials = try await dev.credentials()
        #expect(credentials.accessKeyID == "AKIDDEVCRED")
        #expect(credentials.sessionToken == "dev-session-token-0123456789")
        #expect(dev.profile == "dev" && dev.profileIsNamed)
        let configOnly = CredentialChain(profile: "configonly", environment: sandbox.environment())
        #expect(try await configOnly.credentials().accessKeyID == "AKIDCONFIGONLY")
        #expect(configOnly.providerName == "profile 'configonly' in \(sandbox.configFile)")
        let fallback = CredentialChain(environment: sandbox.environment())
        #expect(try await fallback.credentials().accessKeyID == "AKIDCREDFILE")
        #expect(!fallback.profileIsNamed)
    }

    @Test("credential_process comes after the credentials file's keys and before the config file's")
    func processOrder() async throws {
        let sandbox = try Sandbox()
        let script = try sandbox.write(
            "creds.sh",
            """
            #!/bin/sh
            echo '{"Version": 1, "AccessKeyId": "AKIDPROCESS", "SecretAccessKey": "process-secret"}'
            """, executable: true)
        try sandbox.config(
            """
            [profile p]
            credential_process = \(script)
            aws_access_key_id = AKIDCONFIG
            aws_secret_access_key = configFileSecretValue0123456789
            """)
        try sandbox.credentials("[q]\naws_access_key_id = AKIDCRED\naws_secret_access_key = s\n")
        let chain = CredentialChain(profile: "p", environment: sandbox.environment())
        #expect(try await chain.credentials().accessKeyID == "AKIDPROCESS")
        #expect(chain.providerName == "credential_process of profile 'p'")
        try sandbox.credentials("[p]\naws_access_key_id = AKIDCRED\naws_secret_access_key = s\n")
        let again = CredentialChain(profile: "p", environment: sandbox.environment())
        #expect(try await again.credentials().accessKeyID == "AKIDCRED")
    }

    @Test("Nothing configured: one CredentialsNotFound listing every step, in order, and why it did not apply")
    func nothingFound() async throws {
        let sandbox = try Sandbox()
        let events = Mutex<[String]>([])
        var options = chainOptions()
        options.observer = { event in events.withLock { $0.append("\(event)") } }
        let chain = CredentialChain(options: options, environment: sandbox.environment())
        let error = await expectS3Error("CredentialsNotFound") { _ = try await chain.credentials() }
        let message = try #require(error?.message)
        let steps = [
            "(1) environment: AWS_ACCESS_KEY_ID is not set", "(2) assume role: profile 'default' has no role_arn",
            "(3) web identity: AWS_WEB_IDENTITY_TOKEN_FILE is not set",
            "(4) shared credentials file: no aws_access_key_id for [default] in \(sandbox.credentialsFile)",
            "(5) credential_process: profile 'default' has no credential_process",
            "(6) shared config file: no aws_access_key_id for the profile in \(sandbox.configFile)",
            "(7) container credentials: neither AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "(8) EC2 instance metadata: EC2 instance metadata is disabled by AWS_EC2_METADATA_DISABLED=true",
        ]
        var position = message.startIndex
        for step in steps {
            let found = try #require(
                message.range(of: step, range: position..<message.endIndex), "\(step) in \(message)")
            position = found.upperBound
        }
        #expect(chain.providerName == nil)
        #expect(events.withLock { $0 }.isEmpty)
    }

    @Test("Configuration mistakes are errors that name the profile, key, file or variable, and hold no secret")
    func configurationErrors() async throws {
        let sandbox = try Sandbox()
        try sandbox.credentials(
            """
            [base]
            aws_access_key_id = AKIDBASE
            aws_secret_access_key = wJalrXUtnFEMIsecretFromCredentialsFile
            [halfkeys]
            aws_access_key_id = AKIDHALF
            """)
        try sandbox.config(
            """
            [profile nosource]
            role_arn = arn:aws:iam::123456789012:role/r
            [profile both]
            role_arn = arn:aws:iam::123456789012:role/r
            source_profile = base
            credential_source = Environment
            [profile mfa]
            role_arn = arn:aws:iam::123456789012:role/r
            source_profile = base
            mfa_serial = arn:aws:iam::123456789012:mfa/me
            [profile loopa]
            role_arn = arn:aws:iam::123456789012:role/a
            source_profile = loopb
            [profile loopb]
            role_arn = arn:aws:iam::123456789012:role/b
            source_profile = loopa
            [profile selfloop]
            role_arn = arn:aws:iam::123456789012:role/s
            source_profile = selfloop
            [profile badsource]
            role_arn = arn:aws:iam::123456789012:role/r
            credential_source = Ec2Metadata
            [profile missingsource]
            role_arn = arn:aws:iam::123456789012:role/r
            source_profile = nowhere
            [profile badduration]
            role_arn = arn:aws:iam::123456789012:role/r
            source_profile = base
            duration_seconds = an hour
            [profile norole]
            web_identity_token_file = /var/run/token
            [profile envsource]
            role_arn = arn:aws:iam::123456789012:role/r
            credential_source = Environment
            [profile emptysource]
            role_arn = arn:aws:iam::123456789012:role/r
            source_profile = empty
            [profile empty]
            region = us-east-1
            """)
        let cases: [(profile: String, code: String, mentions: [String])] = [
            ("nosource", "InvalidConfiguration", ["'nosource'", "neither source_profile nor credential_source"]),
            ("both", "InvalidConfiguration", ["'both'", "both source_profile and credential_source"]),
            ("mfa", "InvalidConfiguration", ["'mfa_serial' of profile 'mfa'", "not supported", sandbox.configFile]),
            ("loopa", "InvalidConfiguration", ["loops", "'loopa' -> 'loopb' -> 'loopa'"]),
            ("selfloop", "InvalidConfiguration", ["loops", "'selfloop' -> 'selfloop'"]),
            ("badsource", "InvalidConfiguration", ["'credential_source' of profile 'badsource'", "Ec2Metadata"]),
            ("missingsource", "InvalidConfiguration", ["source_profile 'nowhere'", "does not exist"]),
            ("badduration", "InvalidConfiguration", ["'duration_seconds' of profile 'badduration'", "whole number"]),
            ("norole", "InvalidConfiguration", ["profile 'norole'", "AWS_ROLE_ARN"]),
            (
                "halfkeys", "InvalidConfiguration",
                ["profile 'halfkeys'", sandbox.credentialsFile, "aws_secret_access_key"]
            ),
            ("envsource", "CredentialsNotFound", ["'credential_source' of profile 'envsource'", "AWS_ACCESS_KEY_ID"]),
            ("emptysource", "InvalidConfiguration", ["source profile 'empty' has no credentials"]),
            ("absent", "InvalidConfiguration", ["profile 'absent'", sandbox.configFile, sandbox.credentialsFile]),
        ]
        for item in cases {
            let chain = CredentialChain(profile: item.profile, environment: sandbox.environment())
            let error = await expectS3Error(item.code) { _ = try await chain.credentials() }
            for text in item.mentions {
                #expect(error?.message.contains(text) == true, "\(item.profile): '\(text)' in \(error?.message ?? "")")
            }
            expectNoSecrets(error, fileSecrets)
        }
        // A key id without its secret in the environment.
        let partial = CredentialChain(environment: sandbox.environment(["AWS_ACCESS_KEY_ID": "AKIDENV"]))
        let error = await expectS3Error("InvalidConfiguration") { _ = try await partial.credentials() }
        #expect(error?.message.contains("AWS_SECRET_ACCESS_KEY") == true)
        // AWS_PROFILE naming a missing profile is an error too; the default profile missing is not.
        let named = CredentialChain(environment: sandbox.environment(["AWS_PROFILE": "ghost"]))
        await expectS3Error("InvalidConfiguration") { _ = try await named.credentials() }
        // A broken file: the error names file and line.
        try sandbox.config("[default]\nregion\n")
        let broken = CredentialChain(environment: sandbox.environment())
        let parse = await expectS3Error("InvalidConfiguration") { _ = try await broken.credentials() }
        #expect(parse?.message.contains("'\(sandbox.configFile)' line 2") == true)
    }

    @Test("The chain resolves once and keeps the provider that answered; the observer hears which one")
    func resolvesOnce() async throws {
        let sandbox = try sandbox()
        let resolved = Mutex<[String]>([])
        var options = chainOptions()
        options.observer = { event in
            if case .resolved(let provider) = event { resolved.withLock { $0.append(provider) } }
        }
        let chain = CredentialChain(options: options, environment: sandbox.environment())
        let results = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<20 { group.addTask { try await chain.credentials().accessKeyID } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(Set(results) == ["AKIDCREDFILE"])
        #expect(resolved.withLock { $0 } == ["profile 'default' in \(sandbox.credentialsFile)"])
        // Static credentials: the files are not read again.
        try sandbox.credentials("[default]\naws_access_key_id = AKIDCHANGED\naws_secret_access_key = x\n")
        #expect(try await chain.credentials().accessKeyID == "AKIDCREDFILE")
    }
}

@Suite("credential_process")
struct ProcessProviderTests {
    @Test("Arguments are split without a shell; Version 1 with an expiration gives temporary credentials")
    func success() async throws {
        let sandbox = try Sandbox()
        try FileManager.default.createDirectory(
            atPath: sandbox.path + "/dir with space", withIntermediateDirectories: true)
        let script = try sandbox.write(
            "dir with space/creds",
            """
            #!/bin/sh
            [ "$1" = "--name" ] && [ "$2" = "two words" ] && [ "$3" = '$HOME' ] || { echo "bad args: $*" >&2; exit 9; }
            [ -t 0 ] && exit 8
            printf '{"Version": 1, "AccessKeyId": "AKIDPROC", "SecretAccessKey": "proc-secret", "SessionToken": "proc-token", "Expiration": "2099-01-02T03:04:05.250+01:00"}'
            """, executable: true)
        let provider = ProcessCredentialsProvider(
            command: "\"\(script)\" --name 'two words' \\$HOME", profile: "p", environment: sandbox.environment())
        let credentials = try await provider.credentials()
        #expect(credentials.accessKeyID == "AKIDPROC")
        #expect(credentials.sessionToken == "proc-token")
        #expect(credentials.expiration == Date(timeIntervalSince1970: 4_071_002_645.25))
        // Looked up in PATH when the program has no slash.
        let byName = ProcessCredentialsProvider(
            command: "creds --name 'two words' '$HOME'", profile: "p",
            environment: sandbox.environment(["PATH": sandbox.path + "/dir with space:/usr/bin:/bin"]))
        #expect(try await byName.credentials().accessKeyID == "AKIDPROC")
    }

    @Test("Failures name the profile and program and never show stdout or secrets from stderr")
    func failures() async throws {
        let sandbox = try Sandbox()
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        func script(_ name: String, _ body: String) throws -> String {
            try sandbox.write(name, "#!/bin/sh\n" + body + "\n", executable: true)
        }
        let cases: [(command: String, code: String, mentions: [String])] = [
            (
                try script("fails", "echo \"could not log in: token \(secret) rejected\" >&2\nexit 3"),
                "CredentialProcessFailed", ["profile 'p'", "exited with status 3", "could not log in", "<redacted>"]
            ),
            (
                try script(
                    "garbage", "echo '{\"Version\": 1, \"AccessKeyId\": \"AKID\", \"SecretAccessKey\": \"\(secret)\"'"),
                "CredentialProcessFailed", ["did not print a JSON object", "not shown"]
            ),
            (
                try script(
                    "version2", "echo '{\"Version\": 2, \"AccessKeyId\": \"AKID\", \"SecretAccessKey\": \"\(secret)\"}'"
                ),
                "CredentialProcessFailed", ["Version 2", "only Version 1"]
            ),
            (
                try script("nosecret", "echo '{\"Version\": 1, \"AccessKeyId\": \"AKID\"}'"),
                "InvalidCredentials", ["'SecretAccessKey' is missing"]
            ),
            (
                try script(
                    "badtime",
                    "echo '{\"Version\": 1, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"\(secret)\", \"Expiration\": \"tomorrow\"}'"
                ),
                "InvalidCredentials", ["'Expiration' is not an ISO 8601 time"]
            ),
            (
                try script("killed", "kill -9 $$"), "CredentialProcessFailed", ["killed by signal 9"]
            ),
            ("/no/such/program --password \(secret)", "InvalidConfiguration", ["'/no/such/program'", "profile 'p'"]),
            ("tool 'unclosed \(secret)", "InvalidConfiguration", ["cannot be split", "profile 'p'"]),
        ]
        for item in cases {
            let provider = ProcessCredentialsProvider(
                command: item.command, profile: "p", environment: sandbox.environment())
            let error = await expectS3Error(item.code) { _ = try await provider.credentials() }
            for text in item.mentions {
                #expect(error?.message.contains(text) == true, "'\(text)' in \(error?.message ?? "")")
            }
            expectNoSecrets(error, [secret, "K7MDENG"])
        }
    }

    @Test("The program gets standard input, output and error only, not the caller's other descriptors")
    func noInheritedDescriptors() async throws {
        let sandbox = try Sandbox()
        // A descriptor without close-on-exec, as a library may leave one (no fixed number: dup2 onto one could
        // replace a descriptor another test in this process is using).
        let marker = try sandbox.write("marker", "")
        let leaked = open(marker, O_RDONLY)
        try #require(leaked >= 0)
        defer { close(leaked) }
        let script = try sandbox.write(
            "fds",
            """
            #!/bin/sh
            if [ "$(readlink /proc/$$/fd/\(leaked))" = '\(marker)' ]; then key=LEAKED; else key=CLEAN; fi
            printf '{"Version": 1, "AccessKeyId": "%s", "SecretAccessKey": "s"}' "$key"
            """, executable: true)
        let provider = ProcessCredentialsProvider(command: script, profile: "p", environment: sandbox.environment())
        #expect(try await provider.credentials().accessKeyID == "CLEAN")
    }

    @Test("A program that runs too long is killed at the time limit")
    func timeout() async throws {
        let sandbox = try Sandbox()
        let pidFile = sandbox.path + "/slow.pid"
        let script = try sandbox.write("slow", "#!/bin/sh\necho $$ > '\(pidFile)'\nexec sleep 120\n", executable: true)
        let provider = ProcessCredentialsProvider(
            command: script, profile: "slow", timeout: .milliseconds(300), environment: sandbox.environment())
        let started = ContinuousClock.now
        let error = await expectS3Error("CredentialProcessFailed") { _ = try await provider.credentials() }
        #expect(error?.message.contains("did not finish within") == true)
        #expect(error?.message.contains("was killed") == true)
        // Killed, not waited for: the program is gone, and long before its 120 s were up. No tighter time bound: the
        // whole suite runs in parallel, and on a loaded machine this task can wait its turn for tens of seconds.
        #expect(ContinuousClock.now - started < .seconds(100))
        let pidText = try String(contentsOfFile: pidFile, encoding: .utf8)
        let pid = try #require(pid_t(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(kill(pid, 0) == -1 && errno == ESRCH, "the program (pid \(pid)) is still running")
    }
}

@Suite("Small pieces: timestamps, excerpts, endpoints")
struct PieceTests {
    @Test("ISO 8601 timestamps as credential documents write them")
    func timestamps() {
        let base = Date(timeIntervalSince1970: 1_767_225_600)  // 2026-01-01T00:00:00Z
        #expect(Timestamp.parse("2026-01-01T00:00:00Z") == base)
        #expect(Timestamp.parse("2026-01-01T00:00:00.5Z") == base.addingTimeInterval(0.5))
        #expect(Timestamp.parse("2026-01-01T02:00:00+02:00") == base)
        #expect(Timestamp.parse("2025-12-31T19:00:00-0500") == base)
        for bad in [
            "2026-01-01", "2026-01-01T00:00:00", "2026-13-01T00:00:00Z", "yesterday", "2026-01-01T00:00:00Zjunk",
        ] {
            #expect(Timestamp.parse(bad) == nil, "\(bad)")
        }
    }

    @Test("Excerpts keep the first line, bounded, with key-like words redacted")
    func excerpts() {
        let text = "\n  error: key AKIAIOSFODNN7EXAMPLE and wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY refused\nsecond"
        #expect(Redaction.excerpt(Array(text.utf8)) == "error: key <redacted> and <redacted> refused")
        #expect(Redaction.excerpt(Array(String(repeating: "x ", count: 200).utf8)).count <= 161)
    }

    @Test("Container endpoints: https anywhere; plain HTTP only to loopback and the container hosts")
    func containerHosts() throws {
        let allowed = [
            "http://127.0.0.1:8080/creds", "http://127.9.9.9/x", "http://[::1]/x", "http://localhost/x",
            "http://169.254.170.2/v2/credentials/id", "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::23]/v1/credentials", "https://creds.example.com/x",
        ]
        for url in allowed {
            #expect(throws: Never.self) { try ContainerCredentialsProvider.checkedEndpoint(url, variable: "V") }
        }
        for url in ["http://10.0.0.1/creds", "http://169.254.169.254/x", "http://example.com/x", "ftp://127.0.0.1/x"] {
            #expect(throws: S3Error.self, "\(url)") {
                try ContainerCredentialsProvider.checkedEndpoint(url, variable: "V")
            }
        }
    }
}
