-- Capability 1: users, credential accounts and sessions (DESIGN.md "Capability 1").
CREATE TABLE users (
    id              TEXT PRIMARY KEY NOT NULL,
    email           TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    image           TEXT,
    email_verified  BOOLEAN NOT NULL DEFAULT FALSE,
    role            TEXT NOT NULL DEFAULT 'user',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- One row per way of signing in; `credential` rows hold the Argon2id PHC string.
CREATE TABLE accounts (
    id              TEXT PRIMARY KEY NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    provider_id     TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    password_hash   TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (provider_id, account_id)
);
CREATE INDEX accounts_user_id ON accounts(user_id);

-- Only the SHA-256 of the session token is stored: a database leak yields no usable session.
CREATE TABLE sessions (
    id                      TEXT PRIMARY KEY NOT NULL,
    token_hash              TEXT NOT NULL UNIQUE,
    user_id                 TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at              BIGINT NOT NULL,
    ip_address              TEXT,
    user_agent              TEXT,
    active_organization_id  TEXT,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);
CREATE INDEX sessions_user_id ON sessions(user_id);
CREATE INDEX sessions_expires_at ON sessions(expires_at);

-- Recently revoked sessions, so that every node refuses cached session cookies at once
-- (read at start-up, on listener reconnect and by the periodic poll).
CREATE TABLE session_revocations (
    session_id  TEXT PRIMARY KEY NOT NULL,
    revoked_at  BIGINT NOT NULL
);
CREATE INDEX session_revocations_revoked_at ON session_revocations(revoked_at);
