-- Capability 5: OAuth clients (DESIGN.md "Capability 5" and its contract details), in Auth0's shapes.
-- Only the SHA-256 of a confidential client's secret is stored (a deliberate difference from Auth0:
-- the secret is shown once); public clients (`token_endpoint_auth_method = 'none'`) have none. List
-- fields and the refresh-token settings are JSON text.
CREATE TABLE oauth_clients (
    client_id                   TEXT PRIMARY KEY NOT NULL,
    name                        TEXT NOT NULL,
    description                 TEXT,
    app_type                    TEXT NOT NULL,
    is_first_party              BOOLEAN NOT NULL,
    token_endpoint_auth_method  TEXT NOT NULL,
    grant_types                 TEXT NOT NULL,
    callbacks                   TEXT NOT NULL,
    allowed_logout_urls         TEXT NOT NULL,
    web_origins                 TEXT NOT NULL,
    jwt_alg                     TEXT NOT NULL,
    refresh_token               TEXT NOT NULL,
    secret_hash                 TEXT,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL
);
CREATE INDEX oauth_clients_created_at ON oauth_clients(created_at);
