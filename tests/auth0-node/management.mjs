// Auth0's Node SDK (`auth0`, its ManagementClient) against Latchkey's management API: users, their
// sessions and refresh tokens, organizations and members, signing keys and the audit log, each call
// checked for the shape the SDK hands back. Run by tests/api/management_sdk.rs, which starts the server
// and registers a machine client with every management scope.
//
// The SDK always speaks https to `https://{domain}`; Latchkey listens on plain http in the test, so the
// global fetch below rewrites that one origin to the server's address (scheme and host only: paths,
// headers and bodies are the SDK's own).
import assert from "node:assert/strict";
import { ManagementClient, ManagementError } from "auth0";

const address = process.env.LATCHKEY_ADDRESS; // http://127.0.0.1:PORT
const audience = process.env.LATCHKEY_AUDIENCE; // {base_url}/api/v2/
const domain = "latchkey.test";
const realFetch = globalThis.fetch;
globalThis.fetch = (input, init) => {
  const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
  const local = url.replace(`https://${domain}`, address);
  return realFetch(typeof input === "string" || input instanceof URL ? local : new Request(local, input), init);
};

const management = new ManagementClient({
  domain,
  clientId: process.env.LATCHKEY_CLIENT_ID,
  clientSecret: process.env.LATCHKEY_CLIENT_SECRET,
  audience,
});

let checks = 0;
const check = (what, condition, detail) => {
  assert.ok(condition, `${what}: ${JSON.stringify(detail)}`);
  checks += 1;
};

async function refused(what, promise, status) {
  try {
    await promise;
  } catch (error) {
    check(`${what} is a ManagementError`, error instanceof ManagementError, String(error));
    check(`${what} answers ${status}`, error.statusCode === status, error.statusCode);
    return error;
  }
  throw new Error(`${what} succeeded`);
}

// Users.
const email = `grace-${Date.now()}@example.com`;
const created = await management.users.create({
  connection: "Username-Password-Authentication",
  email,
  password: "correct horse battery staple",
  name: "Grace Hopper",
  app_metadata: { plan: "pro" },
});
check("create answers the user", created.user_id?.startsWith("usr_") && created.email === email, created);
check("identities name the password connection",
  created.identities?.[0]?.connection === "Username-Password-Authentication", created.identities);
check("app_metadata kept", created.app_metadata?.plan === "pro", created.app_metadata);
await refused("a second user with the same email",
  management.users.create({ connection: "Username-Password-Authentication", email, password: "another long password" }), 409);

const found = await management.users.list({ q: `email:"${email}"`, search_engine: "v3" });
check("list by email finds exactly the user", found.data.length === 1 && found.data[0].user_id === created.user_id, found.data);
const byEmail = await management.users.listUsersByEmail({ email });
check("users-by-email", byEmail.length === 1 && byEmail[0].user_id === created.user_id, byEmail);
const fetched = await management.users.get(created.user_id);
check("get", fetched.name === "Grace Hopper" && fetched.blocked === false, fetched);

const patched = await management.users.update(created.user_id, {
  name: "Rear Admiral Hopper",
  email_verified: true,
  user_metadata: { theme: "dark" },
  app_metadata: { plan: null, team: "navy" },
});
check("patch changes what it names", patched.name === "Rear Admiral Hopper" && patched.email_verified === true, patched);
check("metadata merges key by key", patched.app_metadata.team === "navy" && !("plan" in patched.app_metadata)
  && patched.user_metadata.theme === "dark", patched);
const blocked = await management.users.update(created.user_id, { blocked: true });
check("blocked", blocked.blocked === true, blocked);
await management.users.update(created.user_id, { blocked: false });

const sessions = await management.users.sessions.list(created.user_id);
check("sessions list (none yet)", Array.isArray(sessions.data) && sessions.data.length === 0, sessions.data);
const tokens = await management.users.refreshToken.list(created.user_id);
check("refresh tokens list (none yet)", Array.isArray(tokens.data) && tokens.data.length === 0, tokens.data);
await management.users.sessions.delete(created.user_id);
await management.users.refreshToken.delete(created.user_id);
checks += 2;

// Organizations and members.
const org = await management.organizations.create({ name: `navy-${Date.now()}`, display_name: "US Navy" });
check("organization created", org.id?.startsWith("org_") && org.display_name === "US Navy", org);
const orgs = await management.organizations.list();
check("organizations list (checkpoint paging)", orgs.data.some((o) => o.id === org.id), orgs.data);
const byName = await management.organizations.getByName(org.name);
check("organization by name", byName.id === org.id, byName);
const renamed = await management.organizations.update(org.id, { display_name: "United States Navy" });
check("organization updated", renamed.display_name === "United States Navy", renamed);
await management.organizations.members.create(org.id, { members: [created.user_id] });
const members = await management.organizations.members.list(org.id);
check("member listed", members.data.length === 1 && members.data[0].user_id === created.user_id
  && members.data[0].email === email, members.data);
await management.organizations.members.delete(org.id, { members: [created.user_id] });
const after = await management.organizations.members.list(org.id);
check("member removed", after.data.length === 0, after.data);
await management.organizations.delete(org.id);
await refused("a deleted organization", management.organizations.get(org.id), 404);

// The audit log saw all of it, as Auth0's `sapi` events with this client as the actor.
// The log is written by a background writer in batches (up to ~100 ms behind): ask again for a while.
const userAction = (l) => l.details?.resource === "user" && l.user_id === created.user_id
  && l.actor_id === process.env.LATCHKEY_CLIENT_ID;
let logs;
for (let attempt = 0; attempt < 50; attempt++) {
  logs = await management.logs.list({ search: "type:sapi", per_page: 100 });
  if (logs.data.some(userAction)) break;
  await new Promise((resolve) => setTimeout(resolve, 100));
}
check("management actions are in the log", logs.data.some(userAction), logs.data.slice(0, 5));
const one = await management.logs.get(logs.data[0].log_id);
check("one log event", one.log_id === logs.data[0].log_id, one);

// Delete.
await management.users.delete(created.user_id);
await refused("a deleted user", management.users.get(created.user_id), 404);

// Signing keys.
const keys = await management.keys.signing.list();
const current = keys.find((k) => k.current && k.alg === "RS256");
check("an RS256 key is current", current !== undefined, keys);
const rotated = await management.keys.signing.rotate();
check("rotate answers a new kid", rotated.kid && rotated.kid !== current.kid, rotated);
const previous = await management.keys.signing.get(current.kid);
check("the old key is previous", previous.previous === true && previous.current === false, previous);
await refused("revoking the current key", management.keys.signing.revoke(rotated.kid), 400);
// The SDK's own token was signed by the key it now revokes: the next call is refused.
const revoked = await management.keys.signing.revoke(current.kid);
check("revoked", revoked.revoked === true && revoked.revoked_at, revoked);
await refused("a token signed by the revoked key", management.users.list(), 401);

console.log(`${checks} checks passed`);
