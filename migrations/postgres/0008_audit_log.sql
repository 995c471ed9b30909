-- The audit log (DESIGN.md "Cross-cutting"; issue 14): the security events the server emits, stored by a
-- batched writer off the request path and read by `GET /api/v2/logs` and `latchkey admin logs`. Never a
-- secret: ids, reason codes, addresses and the user agent only.
CREATE TABLE audit_log (
    -- `log_…`, random; the list's tie-breaker after `at`.
    id           TEXT PRIMARY KEY NOT NULL,
    -- When the event happened (unix milliseconds), not when it was written.
    at           BIGINT NOT NULL,
    -- Auth0's log type code where one exists (`s`, `f`, `ss`, `seccft`, …), else Latchkey's own.
    type         TEXT NOT NULL,
    description  TEXT NOT NULL,
    -- `success` or `failure`.
    outcome      TEXT NOT NULL,
    -- Who acted (a user, a client or `master`), and the user the event is about.
    actor_id     TEXT,
    user_id      TEXT,
    client_id    TEXT,
    ip           TEXT,
    user_agent   TEXT,
    request_id   TEXT,
    -- The event's other fields (reason, action, ids) as a JSON object.
    details      TEXT NOT NULL
);
-- Newest first, by time (the default list and retention); by user, by client and by type within time.
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_user ON audit_log(user_id, at);
CREATE INDEX audit_log_client ON audit_log(client_id, at);
CREATE INDEX audit_log_type ON audit_log(type, at);
