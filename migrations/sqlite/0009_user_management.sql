-- The management API's users (issue 14): a blocked user signs in nowhere and every credential they hold is
-- refused; Auth0's two metadata objects, as JSON text (`app_metadata` for the application, `user_metadata`
-- for the user's own preferences).
ALTER TABLE users ADD COLUMN blocked BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN app_metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE users ADD COLUMN user_metadata TEXT NOT NULL DEFAULT '{}';

-- A user's tokens cut off at a moment (blocked or deleted): every JWT of that subject issued at or before
-- `issued_before` is refused until `until`, the longest lifetime of a token issued before the cut.
ALTER TABLE oauth_revocations ADD COLUMN issued_before BIGINT;

-- A signing key revoked through the management API: out of the JWKS and refused at once, listed as revoked
-- until the cleanup removes it.
ALTER TABLE signing_keys ADD COLUMN revoked_at BIGINT;
