/// Bucket names that depend on the environment a service runs in.
public enum BucketName {
    /// The placeholders a template may hold.
    public static let placeholders = ["environment"]

    /// Expands `{environment}` in a bucket name template: `oc-fetcher-{environment}` with `prod` gives
    /// `oc-fetcher-prod`.
    ///
    /// - Parameters:
    ///   - template: A bucket name, possibly with `{environment}` (any number of times).
    ///   - environment: The environment name (`prod`, `staging`, ...).
    /// - Throws: `SpoolError.invalidConfiguration` for an unknown placeholder, an unclosed `{`, a stray `}`, an
    ///   empty environment where one is needed, or a result that is not a valid bucket name.
    public static func expand(template: String, environment: String) throws -> String {
        var result = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(where: { $0 == "{" || $0 == "}" }) {
            guard rest[open] == "{" else {
                throw SpoolError(
                    .invalidConfiguration,
                    "bucket name template \(Validation.quoted(template)) has a '}' without a '{'; write "
                        + "placeholders as {environment}")
            }
            result += rest[..<open]
            guard let close = rest[open...].firstIndex(of: "}") else {
                throw SpoolError(
                    .invalidConfiguration,
                    "bucket name template \(Validation.quoted(template)) has a '{' that is not closed; write "
                        + "placeholders as {environment}")
            }
            let name = String(rest[rest.index(after: open)..<close])
            guard name == "environment" else {
                throw SpoolError(
                    .invalidConfiguration,
                    "bucket name template \(Validation.quoted(template)) has the unknown placeholder {\(name)}; "
                        + "the only placeholder is {environment}")
            }
            guard !environment.isEmpty else {
                throw SpoolError(
                    .invalidConfiguration,
                    "bucket name template \(Validation.quoted(template)) needs an environment name, and it is empty")
            }
            result += environment
            rest = rest[rest.index(after: close)...]
        }
        result += rest
        do {
            try DestinationSpec.checkBucketName(result)
        } catch let error as SpoolError {
            guard result != template else { throw error }
            throw SpoolError(
                .invalidConfiguration,
                "bucket name template \(Validation.quoted(template)) with environment "
                    + "\(Validation.quoted(environment)) gives an invalid name: \(error.message)")
        }
        return result
    }
}
