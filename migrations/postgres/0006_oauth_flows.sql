-- Capability 5: the authorization-code flow and refresh-token families (DESIGN.md "Capability 5").

-- A login transaction: an /authorize request waiting for the user to sign in or consent. `request` is
-- the validated authorize request as JSON; the id travels as `state` to /login and /consent.
CREATE TABLE oauth_transactions (
    id          TEXT PRIMARY KEY NOT NULL,
    client_id   TEXT NOT NULL REFERENCES oauth_clients(client_id) ON DELETE CASCADE,
    request     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX oauth_transactions_expires_at ON oauth_transactions(expires_at);

-- Authorization codes: only the SHA-256 is stored; single use (`used_at`), 60 s. `grant_id` is chosen
-- when the code is issued, so the tokens a reused code led to can be revoked by it.
CREATE TABLE oauth_codes (
    code_hash       TEXT PRIMARY KEY NOT NULL,
    client_id       TEXT NOT NULL REFERENCES oauth_clients(client_id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id      TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    code_challenge  TEXT,
    nonce           TEXT,
    scope           TEXT NOT NULL,
    audience        TEXT,
    auth_time       BIGINT NOT NULL,
    grant_id        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT
);
CREATE INDEX oauth_codes_expires_at ON oauth_codes(expires_at);

-- Refresh-token families, one per grant. Only hashes of the current and the immediately previous token
-- are kept; the successor of the previous one is kept encrypted (server secret) for the client's leeway
-- only, so a retried refresh gets the very same successor. A revoked family refuses every token.
CREATE TABLE oauth_grants (
    id              TEXT PRIMARY KEY NOT NULL,
    client_id       TEXT NOT NULL REFERENCES oauth_clients(client_id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id      TEXT NOT NULL,
    scope           TEXT NOT NULL,
    audience        TEXT,
    auth_time       BIGINT NOT NULL,
    current_hash    TEXT NOT NULL,
    previous_hash   TEXT,
    rotated_at      BIGINT,
    successor       TEXT,
    created_at      BIGINT NOT NULL,
    last_used_at    BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    idle_expires_at BIGINT NOT NULL,
    revoked_at      BIGINT
);
CREATE INDEX oauth_grants_client_id ON oauth_grants(client_id);
CREATE INDEX oauth_grants_user_id ON oauth_grants(user_id);
CREATE INDEX oauth_grants_expires_at ON oauth_grants(expires_at);

-- Consent given to third-party clients, per user, client and audience: the scopes granted so far.
CREATE TABLE oauth_consents (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL REFERENCES oauth_clients(client_id) ON DELETE CASCADE,
    audience    TEXT NOT NULL,
    scope       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id, audience)
);

-- Revoked OAuth access tokens (by `jti`) and grants (by the family handle every access token of the
-- grant carries), until the last token they cover expires; loaded into memory at start.
CREATE TABLE oauth_revocations (
    id          TEXT PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL,
    until       BIGINT NOT NULL
);
CREATE INDEX oauth_revocations_until ON oauth_revocations(until);
