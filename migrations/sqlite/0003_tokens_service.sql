-- Token core and capability 4 (DESIGN.md "Capability 4" and the token paragraphs of "Capability 5").

-- Asymmetric signing keys shared by every node. The private half is AES-256-GCM encrypted under a key
-- derived from the server secret (base64 of nonce || ciphertext, the key id as associated data); the
-- public half is kept as a JWK so that verification never needs the private key. A key signs while
-- `retired_at` is null (at most one such key per algorithm), is still published and accepted until
-- `expires_at` (the tokens it signed have expired by then), and is deleted afterwards.
CREATE TABLE signing_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    algorithm    TEXT NOT NULL,
    public_jwk   TEXT NOT NULL,
    private_key  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    retired_at   BIGINT,
    expires_at   BIGINT
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys(algorithm) WHERE retired_at IS NULL;

-- Every JWT the token core issues, by `jti`: what revocation needs (subject, client, expiry, flag).
CREATE TABLE issued_tokens (
    jti         TEXT PRIMARY KEY NOT NULL,
    subject     TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL
);
CREATE INDEX issued_tokens_subject ON issued_tokens(subject);
CREATE INDEX issued_tokens_client_id ON issued_tokens(client_id);
CREATE INDEX issued_tokens_expires_at ON issued_tokens(expires_at);

-- Service clients: only the SHA-256 of the client key is stored, with its first characters.
CREATE TABLE service_clients (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    key_start   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Users of a service client: only the SHA-256 of the (server-generated, 285-bit) secret is stored.
CREATE TABLE service_users (
    id           TEXT PRIMARY KEY NOT NULL,
    client_id    TEXT NOT NULL REFERENCES service_clients(id) ON DELETE CASCADE,
    external_id  TEXT,
    name         TEXT,
    secret_hash  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    UNIQUE (client_id, external_id)
);
CREATE INDEX service_users_client_id ON service_users(client_id, created_at);
