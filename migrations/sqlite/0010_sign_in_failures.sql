-- Failed sign-ins per email, shared by every node (issue 15): the per-email failure limit holds across a
-- cluster. Only failures write here (successes write nothing extra), keyed by the SHA-256 of the
-- normalised email — what was typed may be a password in the wrong field, so it is never stored as is.
CREATE TABLE sign_in_failures (
    email_key     TEXT PRIMARY KEY NOT NULL,
    window_start  BIGINT NOT NULL,
    failures      BIGINT NOT NULL
);
CREATE INDEX sign_in_failures_window_start ON sign_in_failures(window_start);
