-- Capability 2: organizations, members, invitations and API keys (DESIGN.md "Capability 2").
CREATE TABLE organizations (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    logo        TEXT,
    metadata    TEXT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE members (
    id               TEXT PRIMARY KEY NOT NULL,
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role             TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    UNIQUE (organization_id, user_id)
);
CREATE INDEX members_user_id ON members(user_id, created_at);

CREATE TABLE invitations (
    id               TEXT PRIMARY KEY NOT NULL,
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    email            TEXT NOT NULL,
    role             TEXT NOT NULL,
    status           TEXT NOT NULL,
    inviter_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at       BIGINT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX invitations_organization_id ON invitations(organization_id);
CREATE INDEX invitations_email ON invitations(email);

-- Only the SHA-256 of a key is stored, with its first characters (`start`) for display.
CREATE TABLE api_keys (
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT,
    start            TEXT NOT NULL,
    prefix           TEXT NOT NULL,
    key_hash         TEXT NOT NULL UNIQUE,
    reference_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    organization_id  TEXT REFERENCES organizations(id) ON DELETE CASCADE,
    permissions      TEXT,
    metadata         TEXT,
    enabled          BOOLEAN NOT NULL DEFAULT TRUE,
    expires_at       BIGINT,
    last_request     BIGINT,
    request_count    BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX api_keys_reference_id ON api_keys(reference_id, created_at);

-- Cache invalidations (API keys, memberships), so that every node — and a running server after a change
-- made by `latchkey admin` on SQLite — evicts what it cached. NOTIFY carries them at once on PostgreSQL;
-- this table is what a reconnecting listener and the periodic poll read.
CREATE TABLE cache_events (
    id       TEXT PRIMARY KEY NOT NULL,
    payload  TEXT NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX cache_events_at ON cache_events(at);
