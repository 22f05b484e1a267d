import Spool

/// How `BundleResourcesDecorator` packs a bundle. A plain value, so that a configuration loader can fill it.
public struct BundleOptions: Sendable, Hashable, Codable {
    /// The resource name of the packed archive (the key segment after its sequence number). Default `bundle.zip`.
    public var archiveName: String
    /// The most resources one bundle may pack. ZIPFoundation rewrites the central directory after every member, so
    /// packing costs grow with the square of the count: bundles of many thousands of resources should not be packed.
    /// Default 10,000.
    public var maxMembers: Int

    /// The defaults: `bundle.zip`, at most 10,000 members.
    public init(archiveName: String = "bundle.zip", maxMembers: Int = 10_000) {
        self.archiveName = archiveName
        self.maxMembers = maxMembers
    }

    /// Checks the archive name (a valid resource name ending in `.zip`) and the member limit.
    ///
    /// - Throws: `SpoolError.invalidConfiguration` naming the option.
    public func validate() throws {
        do {
            try Validation.checkResourceName(archiveName)
        } catch let error as SpoolError {
            throw SpoolError(.invalidConfiguration, "BundleOptions.archiveName: \(error.message)")
        }
        guard archiveName.lowercased().hasSuffix(".zip") else {
            throw SpoolError(
                .invalidConfiguration,
                "BundleOptions.archiveName \(Validation.quoted(archiveName)) must end in '.zip', as consumers expect")
        }
        guard maxMembers >= 1 else {
            throw SpoolError(.invalidConfiguration, "BundleOptions.maxMembers is \(maxMembers); it must be at least 1")
        }
    }
}
