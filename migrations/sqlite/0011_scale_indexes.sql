-- Indexes for statements that read whole tables (issue 15: found reviewing every query for the scale
-- benchmark; with 1.5 M sessions and 1 M API keys, deleting an organization took 0.6 s in two sequential
-- scans). BENCHMARKS.md "Indexes" lists every index and the query it serves.
-- Deleting an organization clears it as sessions' active organization
-- (`UPDATE sessions SET active_organization_id = NULL WHERE active_organization_id = $1`) and cascades to
-- its API keys (`api_keys.organization_id … ON DELETE CASCADE`): both read every row without these. Most
-- sessions and keys name no organization, so the indexes hold only those that do.
CREATE INDEX sessions_active_organization_id ON sessions(active_organization_id) WHERE active_organization_id IS NOT NULL;
CREATE INDEX api_keys_organization_id ON api_keys(organization_id) WHERE organization_id IS NOT NULL;
-- Deleting a user cascades to the invitations they sent (`invitations.inviter_id … ON DELETE CASCADE`).
CREATE INDEX invitations_inviter_id ON invitations(inviter_id);
-- The management API's user list pages newest (or oldest) first
-- (`SELECT … FROM users ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2`): without this, every page
-- sorted the whole table.
CREATE INDEX users_created_at ON users(created_at, id);
