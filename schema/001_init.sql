-- 001_init: the spool index. Every later migration adds behaviour, not a redesign: this schema already holds what the
-- writer, the drainer and the operator tools need (SPEC §3–§5).
--
-- Conventions: times are Unix milliseconds (INTEGER, wall clock); JSON columns hold objects of strings; hashes are
-- lowercase hex. Every value is bound by the code, never spliced into SQL text.

-- Where resources go. One spool may feed several buckets (or local directories); the writer records each one, the
-- drainer applies its bucket set-up once and pauses it on configuration or permission errors.
CREATE TABLE destinations (
    id                  INTEGER PRIMARY KEY,
    kind                TEXT    NOT NULL CHECK (kind IN ('s3', 'file')),
    -- s3: the bucket name; file: the absolute directory path.
    location            TEXT    NOT NULL,
    -- s3 only: custom endpoint URL ('' for AWS) and region ('' when resolved by the drainer).
    endpoint            TEXT    NOT NULL DEFAULT '',
    region              TEXT    NOT NULL DEFAULT '',
    -- Upload and bucket set-up options as JSON (storage class, encryption, versioning, lifecycle, policy, ...).
    options             TEXT    NOT NULL DEFAULT '{}',
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    -- Bucket set-up, applied by the drainer: the options fingerprint it last applied, and when.
    setup_fingerprint   TEXT,
    setup_applied_at    INTEGER,
    -- A paused destination is skipped by claims until the cause is fixed; no attempts are burned meanwhile.
    paused_at           INTEGER,
    paused_error_code   TEXT,
    paused_error_message TEXT,
    paused_next_check_at INTEGER,
    UNIQUE (kind, location, endpoint)
);

-- A bundle: a caller-chosen group of resources, delivered with a `_bundle.json` completion marker written last.
CREATE TABLE bundles (
    id                  TEXT    PRIMARY KEY,
    destination_id      INTEGER NOT NULL REFERENCES destinations (id),
    -- The normalised key prefix ('' or ending in '/'): keys are {prefix}{bundle id}/...
    key_prefix          TEXT    NOT NULL DEFAULT '',
    state               TEXT    NOT NULL DEFAULT 'open'
                                CHECK (state IN ('open', 'sealed', 'delivered', 'discarded')),
    metadata            TEXT    NOT NULL DEFAULT '{}',
    -- Last sequence number handed out (resources are numbered 1, 2, ... in commit order).
    last_seq            INTEGER NOT NULL DEFAULT 0,
    -- Known once sealed.
    resource_count      INTEGER,
    -- Who holds the bundle open: lets `spool-inspect stuck` tell a live writer from a crashed one.
    writer_host         TEXT,
    writer_pid          INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    sealed_at           INTEGER,
    delivered_at        INTEGER
) WITHOUT ROWID;

CREATE INDEX bundles_by_state ON bundles (state, created_at);

-- One row per resource, and one per bundle manifest (`kind = 'manifest'`, seq 0): the manifest is delivered by the same
-- claim, lease, retry and conditional-write machinery, once every resource of its sealed bundle is done.
CREATE TABLE resources (
    id                  INTEGER PRIMARY KEY,
    bundle_id           TEXT    NOT NULL REFERENCES bundles (id),
    seq                 INTEGER NOT NULL,
    kind                TEXT    NOT NULL DEFAULT 'resource' CHECK (kind IN ('resource', 'manifest')),
    destination_id      INTEGER NOT NULL REFERENCES destinations (id),
    object_key          TEXT    NOT NULL,
    -- The key segment after the sequence number: the URL's last path segment, sanitised, or a given name.
    name                TEXT    NOT NULL,
    url                 TEXT    NOT NULL,
    content_type        TEXT    NOT NULL,
    status_code         INTEGER NOT NULL,
    metadata            TEXT    NOT NULL DEFAULT '{}',
    size                INTEGER NOT NULL,
    sha256              TEXT    NOT NULL,
    crc32c              INTEGER NOT NULL,
    -- Where the bytes are: 'file' (payload_path under data/), 'inline' (the payloads table), 'pending' (a manifest
    -- not generated yet), or 'removed' (delivered and purged).
    payload_storage     TEXT    NOT NULL CHECK (payload_storage IN ('file', 'inline', 'pending', 'removed')),
    payload_path        TEXT,
    state               TEXT    NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'uploading', 'done', 'failed')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     INTEGER NOT NULL,
    -- The claim: who holds it, until when, and the fencing token every later write must still match.
    lease_owner         TEXT,
    lease_expires_at    INTEGER,
    fencing_token       INTEGER NOT NULL DEFAULT 0,
    last_error_code     TEXT,
    last_error_message  TEXT,
    -- Multipart: the upload id is recorded before the first part is sent; parts are in resource_parts.
    upload_id           TEXT,
    upload_part_size    INTEGER,
    upload_started_at   INTEGER,
    -- On completion.
    etag                TEXT,
    version_id          TEXT,
    spooled_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    claimed_at          INTEGER,
    completed_at        INTEGER,
    payload_removed_at  INTEGER,
    UNIQUE (bundle_id, seq)
);

-- The claim query: due pending rows in order.
CREATE INDEX resources_due ON resources (state, next_attempt_at);
CREATE INDEX resources_by_destination_state ON resources (destination_id, state);
CREATE INDEX resources_by_completed ON resources (completed_at) WHERE state = 'done';
-- What the spool holds on disk, for maxSpoolBytes: a covering index, so the sum reads only rows still holding bytes.
CREATE INDEX resources_held_payload ON resources (payload_storage, size);

-- Payload bytes of small resources, kept in the index so that one group commit (one fsync) makes many durable at once.
CREATE TABLE payloads (
    resource_id         INTEGER PRIMARY KEY REFERENCES resources (id) ON DELETE CASCADE,
    bytes               BLOB    NOT NULL
);

-- Parts of a multipart upload, each recorded as soon as S3 acknowledges it.
CREATE TABLE resource_parts (
    resource_id         INTEGER NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    upload_id           TEXT    NOT NULL,
    part_number         INTEGER NOT NULL CHECK (part_number BETWEEN 1 AND 10000),
    size                INTEGER NOT NULL,
    etag                TEXT    NOT NULL,
    checksum_crc32c     TEXT,
    checksum_sha256     TEXT,
    recorded_at         INTEGER NOT NULL,
    PRIMARY KEY (resource_id, part_number)
) WITHOUT ROWID;

-- The audit trail: every state change and every operator action.
CREATE TABLE audit_events (
    id                  INTEGER PRIMARY KEY,
    at                  INTEGER NOT NULL,
    actor_user          TEXT    NOT NULL,
    actor_host          TEXT    NOT NULL,
    actor_pid           INTEGER NOT NULL,
    action              TEXT    NOT NULL,
    bundle_id           TEXT,
    resource_id         INTEGER,
    -- JSON object with the details (from/to state, error code, attempt, ...). Never a secret.
    detail              TEXT    NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_by_time ON audit_events (at);
CREATE INDEX audit_by_resource ON audit_events (resource_id, at) WHERE resource_id IS NOT NULL;
CREATE INDEX audit_by_bundle ON audit_events (bundle_id, at) WHERE bundle_id IS NOT NULL;

-- Spool-wide counters; 'fencing_token' increases with every claim, so a token is never reused.
CREATE TABLE counters (
    name                TEXT    PRIMARY KEY,
    value               INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO counters (name, value) VALUES ('fencing_token', 0);
