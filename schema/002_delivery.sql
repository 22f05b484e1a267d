-- 002_delivery: what the drainer needs beyond 001.

-- Every multipart upload this spool started, recorded before its first part is sent. Cleanup aborts the ones no
-- resource references any more (a drainer killed between CreateMultipartUpload and recording the id leaves one that
-- only ListMultipartUploads on its key can find: the drainer sweeps that key before starting a new upload).
CREATE TABLE multipart_uploads (
    upload_id           TEXT    PRIMARY KEY,
    destination_id      INTEGER NOT NULL REFERENCES destinations (id),
    object_key          TEXT    NOT NULL,
    resource_id         INTEGER,
    created_at          INTEGER NOT NULL,
    -- Set when completed or aborted (or found gone).
    finished_at         INTEGER,
    outcome             TEXT    CHECK (outcome IN ('completed', 'aborted', 'gone'))
) WITHOUT ROWID;

CREATE INDEX multipart_uploads_open ON multipart_uploads (destination_id) WHERE finished_at IS NULL;

-- Leases held by a drainer: what expired-lease reclaiming scans.
CREATE INDEX resources_leased ON resources (lease_expires_at) WHERE state = 'uploading';
