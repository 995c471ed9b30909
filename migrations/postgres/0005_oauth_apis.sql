-- Capability 5: APIs (Auth0's resource servers) and the client grants that let a client obtain tokens
-- for one with client credentials. Scopes are JSON text: `[{value, description}]` for an API, `[value]`
-- for a grant. A grant's audience is an API's identifier or the built-in management API
-- (`{issuer}api/v2/`, which has no row), so it is not a foreign key; deleting an API deletes its grants
-- in the same transaction.
CREATE TABLE oauth_resource_servers (
    id                                               TEXT PRIMARY KEY NOT NULL,
    name                                             TEXT NOT NULL,
    identifier                                       TEXT NOT NULL UNIQUE,
    scopes                                           TEXT NOT NULL,
    signing_alg                                      TEXT NOT NULL,
    token_lifetime                                   BIGINT NOT NULL,
    allow_offline_access                             BOOLEAN NOT NULL,
    skip_consent_for_verifiable_first_party_clients  BOOLEAN NOT NULL,
    created_at                                       BIGINT NOT NULL,
    updated_at                                       BIGINT NOT NULL
);
CREATE INDEX oauth_resource_servers_created_at ON oauth_resource_servers(created_at);

CREATE TABLE oauth_client_grants (
    id          TEXT PRIMARY KEY NOT NULL,
    client_id   TEXT NOT NULL REFERENCES oauth_clients(client_id) ON DELETE CASCADE,
    audience    TEXT NOT NULL,
    scope       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (client_id, audience)
);
CREATE INDEX oauth_client_grants_audience ON oauth_client_grants(audience);
