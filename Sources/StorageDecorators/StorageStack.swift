/// Composes the decorators over `base` (SPEC §8): each resource is first expanded (`UnzipResourcesDecorator`), then
/// packed (`BundleResourcesDecorator`), then spooled — Bundle(Unzip(resource)). As wrapper objects that is
/// `UnzipResourcesDecorator(base: BundleResourcesDecorator(base: base))`: the unzip layer is the outer one, so that a
/// fetched archive's members, not the archive, are what `bundle.zip` holds, and the bundle's own `bundle.zip` never
/// passes through the unzip layer.
///
/// - Parameters:
///   - base: The storage everything ends in, usually a `PipelineStorage`.
///   - bundleResources: Pack each bundle's resources into one `bundle.zip`.
///   - unzipResources: Expand gzip and zip resources.
///   - bundleOptions: How bundles are packed.
///   - unzipOptions: What is expanded, and the zip bomb limits.
/// - Returns: the composed storage; `base` itself when both switches are off.
/// - Throws: `SpoolError.invalidConfiguration` when an option is out of range.
public func createStorageStack<Base: ResourceStorage>(
    base: Base, bundleResources: Bool, unzipResources: Bool, bundleOptions: BundleOptions = BundleOptions(),
    unzipOptions: UnzipOptions = UnzipOptions()
) throws -> any ResourceStorage {
    switch (bundleResources, unzipResources) {
    case (false, false):
        return base
    case (true, false):
        return try BundleResourcesDecorator(base: base, options: bundleOptions)
    case (false, true):
        return try UnzipResourcesDecorator(base: base, options: unzipOptions)
    case (true, true):
        return try UnzipResourcesDecorator(
            base: try BundleResourcesDecorator(base: base, options: bundleOptions), options: unzipOptions)
    }
}
