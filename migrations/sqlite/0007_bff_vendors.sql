-- Capability 6: the backend-for-frontend token handler (DESIGN.md "Capability 6").

-- A vendor's token handler configuration. `config` is the stored configuration as JSON (never the
-- client secret); the client secret, when there is one, is AES-256-GCM under a key derived from the
-- server secret, with the vendor id as associated data.
CREATE TABLE bff_vendors (
    id                    TEXT PRIMARY KEY NOT NULL,
    config                TEXT NOT NULL,
    client_secret_sealed  TEXT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);

-- A vendor's cookie keys, each sealed under a key derived from the server secret (the vendor id and the
-- key id as associated data). The current key has no `opens_until`; a rotated-out one opens the cookies
-- it sealed until then, and is deleted after.
CREATE TABLE bff_vendor_keys (
    id            TEXT PRIMARY KEY NOT NULL,
    vendor_id     TEXT NOT NULL REFERENCES bff_vendors(id) ON DELETE CASCADE,
    sealed_key    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    opens_until   BIGINT
);
CREATE INDEX bff_vendor_keys_vendor ON bff_vendor_keys(vendor_id);
