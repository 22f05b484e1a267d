-- 003_bucket_setup: what the drainer records when it has applied a destination's bucket set-up (create, public-access
-- block, policy, versioning, default encryption, lifecycle).
--
-- 001 already gave destinations `setup_fingerprint` (the SHA-256 of the settings last applied: equal means a later
-- drain skips the set-up) and `setup_applied_at`; nothing wrote them before this version. This adds who applied the
-- set-up and what it was, for `spool-inspect` (the audit trail keeps the same in `destination.bucket_configured`).

ALTER TABLE destinations ADD COLUMN setup_applied_by TEXT;
-- JSON object of strings: the settings applied (bucket, prefixes, versioning, encryption, lifecycle, ...). Never a
-- secret: a custom policy appears as its SHA-256.
ALTER TABLE destinations ADD COLUMN setup_settings TEXT;

-- Lifecycle rules and `public-read` are scoped to the key prefixes of a destination's bundles: the drainer reads them
-- with this index instead of scanning every bundle.
CREATE INDEX bundles_by_destination_prefix ON bundles (destination_id, key_prefix);
