/// Damage found while expanding an archive: the archive is then stored unchanged, with this reason in its
/// `unzip-warning`. Never leaves the decorator.
struct ArchiveCorruption: Error, Sendable {
    /// What is wrong, for the warning: no control characters (member names go through `Validation.quoted`).
    var reason: String
}
