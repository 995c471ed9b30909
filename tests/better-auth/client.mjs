// Drives a running Latchkey with Better Auth's own client and client plugins (`organizationClient`,
// `apiKeyClient`), as an application built on Better Auth would, and checks the answers and error codes
// those plugins expect (their `$ERROR_CODES`). Run by tests/api/better_auth_client.rs:
//
//   LATCHKEY_BASE_URL=http://127.0.0.1:8080 LATCHKEY_ORIGIN=http://localhost:3000 node client.mjs
//
// LATCHKEY_BASE_URL is where the server listens; LATCHKEY_ORIGIN is the origin it trusts (its base URL),
// sent as `Origin` on every request as a browser on that origin would. Exits non-zero on any failure.

import { createAuthClient } from "better-auth/client";
import { organizationClient, ORGANIZATION_ERROR_CODES } from "better-auth/client/plugins";
import { apiKeyClient, API_KEY_ERROR_CODES } from "@better-auth/api-key/client";

const baseURL = process.env.LATCHKEY_BASE_URL;
const origin = process.env.LATCHKEY_ORIGIN ?? baseURL;
if (!baseURL) {
  console.error("LATCHKEY_BASE_URL is not set");
  process.exit(2);
}

const failures = [];
let checks = 0;

function check(condition, what, detail) {
  checks += 1;
  if (!condition) {
    failures.push(what);
    console.error(`FAIL ${what}${detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
  }
}

/** Asserts a call succeeded; returns its data. */
function ok(result, what) {
  check(!result.error, `${what} succeeds`, result.error);
  return result.data;
}

/** Asserts a call failed with `status` and `code` (one of the plugin's own codes, so it must exist). */
function fails(result, status, code, what) {
  check(code !== undefined, `${what}: the expected code is one the plugin defines`);
  check(
    result.error?.status === status && result.error?.code === code,
    `${what} fails with ${status} ${code}`,
    result.error ?? result.data,
  );
}

/** The `Set-Cookie` lines of a response (`getSetCookie` is missing from older Node 18 releases). */
function setCookies(headers) {
  if (typeof headers.getSetCookie === "function") return headers.getSetCookie();
  const joined = headers.get("set-cookie");
  return joined ? joined.split(/,(?=\s*[^;,=\s]+=)/) : [];
}

/**
 * A fetch with its own cookie jar that sends the trusted `Origin`, as a browser tab would: Node's fetch
 * keeps no cookies.
 */
function browserFetch(extraHeaders = {}) {
  const jar = new Map();
  return async (input, init = {}) => {
    const request = new Request(input, init);
    const headers = new Headers(request.headers);
    headers.set("origin", origin);
    for (const [name, value] of Object.entries(extraHeaders)) headers.set(name, value);
    if (jar.size > 0) headers.set("cookie", [...jar].map(([name, value]) => `${name}=${value}`).join("; "));
    const response = await fetch(new Request(request, { headers }));
    for (const line of setCookies(response.headers)) {
      const [pair, ...attributes] = line.split(";");
      const at = pair.indexOf("=");
      const name = pair.slice(0, at).trim();
      const value = pair.slice(at + 1).trim();
      const expired = attributes.some((a) => /^\s*max-age\s*=\s*(0|-)/i.test(a));
      if (expired || value === "") jar.delete(name);
      else jar.set(name, value);
    }
    return response;
  };
}

/** A Better Auth client with the organization and API key plugins, for one browser (or one API key). */
function client(extraHeaders) {
  return createAuthClient({
    baseURL,
    plugins: [organizationClient(), apiKeyClient()],
    fetchOptions: { customFetchImpl: browserFetch(extraHeaders) },
  });
}

const password = "correct horse battery staple";
const run = Math.random().toString(36).slice(2, 8);

async function signUp(name) {
  const browser = client();
  const email = `${name}-${run}@example.com`;
  const data = ok(await browser.signUp.email({ name, email, password }), `sign-up ${name}`);
  return { browser, email, id: data?.user?.id };
}

const E = ORGANIZATION_ERROR_CODES;
const K = API_KEY_ERROR_CODES;
const code = (entry) => (typeof entry === "string" ? entry : entry?.code);

// --- Organizations ---------------------------------------------------------------------------------
const alice = await signUp("alice");
const bob = await signUp("bob");
const carol = await signUp("carol");

const slug = `acme-${run}`;
const acme = ok(await alice.browser.organization.create({ name: "Acme", slug }), "create organization");
check(acme?.slug === slug && acme?.members?.[0]?.role === "owner", "the creator is the owner", acme);
ok(await alice.browser.organization.checkSlug({ slug: `free-${run}` }), "check-slug of a free slug");
fails(
  await bob.browser.organization.checkSlug({ slug }),
  400,
  code(E.ORGANIZATION_SLUG_ALREADY_TAKEN),
  "check-slug of a taken slug",
);
fails(
  await bob.browser.organization.create({ name: "Other", slug }),
  400,
  code(E.ORGANIZATION_ALREADY_EXISTS),
  "create with a taken slug",
);

const active = ok(await alice.browser.organization.getFullOrganization(), "get-full-organization");
check(active?.id === acme.id, "the new organization is active", active);
const activeMember = ok(await alice.browser.organization.getActiveMember(), "get-active-member");
check(activeMember?.userId === alice.id && activeMember?.role === "owner", "active member is the owner", activeMember);
check(activeMember?.user?.email === alice.email, "active member carries its user", activeMember);
const activeRole = ok(await alice.browser.organization.getActiveMemberRole(), "get-active-member-role");
check(activeRole?.role === "owner", "active member role", activeRole);

const forBob = ok(
  await alice.browser.organization.inviteMember({ email: bob.email, role: "member", organizationId: acme.id }),
  "invite bob",
);
const forCarol = ok(
  await alice.browser.organization.inviteMember({ email: carol.email, role: "admin", organizationId: acme.id }),
  "invite carol",
);
fails(
  await alice.browser.organization.inviteMember({ email: bob.email, role: "member", organizationId: acme.id }),
  400,
  code(E.USER_IS_ALREADY_INVITED_TO_THIS_ORGANIZATION),
  "inviting twice",
);
const invitations = ok(
  await alice.browser.organization.listInvitations({ query: { organizationId: acme.id } }),
  "list-invitations",
);
check(
  Array.isArray(invitations) && [forBob.id, forCarol.id].every((id) => invitations.some((i) => i.id === id)),
  "list-invitations lists both",
  invitations,
);
const bobsInvitations = ok(await bob.browser.organization.listUserInvitations(), "list-user-invitations");
check(
  bobsInvitations?.length === 1 && bobsInvitations[0].id === forBob.id && bobsInvitations[0].organizationName === "Acme",
  "list-user-invitations shows bob's pending invitation with the organization's name",
  bobsInvitations,
);
fails(
  await carol.browser.organization.acceptInvitation({ invitationId: forBob.id }),
  403,
  code(E.YOU_ARE_NOT_THE_RECIPIENT_OF_THE_INVITATION),
  "accepting someone else's invitation",
);
const accepted = ok(await bob.browser.organization.acceptInvitation({ invitationId: forBob.id }), "bob accepts");
check(accepted?.member?.userId === bob.id && accepted?.invitation?.status === "accepted", "bob is a member", accepted);
fails(
  await bob.browser.organization.acceptInvitation({ invitationId: forBob.id }),
  400,
  code(E.INVITATION_NOT_FOUND),
  "accepting twice",
);
check(ok(await bob.browser.organization.listUserInvitations(), "list-user-invitations again")?.length === 0,
  "no pending invitation is left for bob");
const bobRole = ok(await bob.browser.organization.getActiveMemberRole(), "bob's role");
check(bobRole?.role === "member", "bob's role in the organization he joined", bobRole);
ok(await carol.browser.organization.acceptInvitation({ invitationId: forCarol.id }), "carol accepts");

fails(
  await bob.browser.organization.inviteMember({ email: `dave-${run}@example.com`, role: "member" }),
  403,
  code(E.YOU_ARE_NOT_ALLOWED_TO_INVITE_USERS_TO_THIS_ORGANIZATION),
  "a member inviting",
);
fails(
  await carol.browser.organization.inviteMember({ email: `dave-${run}@example.com`, role: "owner" }),
  403,
  code(E.YOU_ARE_NOT_ALLOWED_TO_INVITE_USER_WITH_THIS_ROLE),
  "an admin inviting an owner",
);
fails(
  await bob.browser.organization.listInvitations({ query: { organizationId: acme.id } }),
  403,
  // Added to the plugin after 1.7.5 (the newest release @better-auth/api-key's peers allow here); the
  // current server answers it, and Latchkey follows the current server.
  code(E.YOU_ARE_NOT_ALLOWED_TO_LIST_INVITATIONS) ?? "YOU_ARE_NOT_ALLOWED_TO_LIST_INVITATIONS",
  "a member listing invitations",
);
fails(
  await bob.browser.organization.update({ data: { name: "Bob's" }, organizationId: acme.id }),
  403,
  code(E.YOU_ARE_NOT_ALLOWED_TO_UPDATE_THIS_ORGANIZATION),
  "a member updating the organization",
);
fails(
  await carol.browser.organization.delete({ organizationId: acme.id }),
  403,
  code(E.YOU_ARE_NOT_ALLOWED_TO_DELETE_THIS_ORGANIZATION),
  "an admin deleting the organization",
);
const members = ok(await alice.browser.organization.listMembers({ query: { organizationId: acme.id } }), "list-members");
check(members?.total === 3 && members?.members?.length === 3, "three members", members);
fails(
  await alice.browser.organization.leave({ organizationId: acme.id }),
  400,
  code(E.YOU_CANNOT_LEAVE_THE_ORGANIZATION_AS_THE_ONLY_OWNER),
  "the only owner leaving",
);
const left = ok(await bob.browser.organization.leave({ organizationId: acme.id }), "bob leaves");
check(left?.userId === bob.id, "leave answers the old membership", left);
fails(
  await bob.browser.organization.getFullOrganization({ query: { organizationId: acme.id } }),
  403,
  code(E.USER_IS_NOT_A_MEMBER_OF_THE_ORGANIZATION),
  "get-full-organization after leaving",
);

const doomed = ok(
  await alice.browser.organization.create({ name: "Doomed", slug: `doomed-${run}`, keepCurrentActiveOrganization: true }),
  "create a second organization",
);
ok(await alice.browser.organization.delete({ organizationId: doomed.id }), "delete it");
fails(
  await alice.browser.organization.getFullOrganization({ query: { organizationId: doomed.id } }),
  400,
  code(E.ORGANIZATION_NOT_FOUND),
  "get-full-organization of a deleted organization",
);

// --- API keys --------------------------------------------------------------------------------------
const created = ok(
  await alice.browser.apiKey.create({ name: "ci", expiresIn: 3600 }),
  "create an API key",
);
check(typeof created?.key === "string" && created.key.length > 20, "the key is returned once", created);
const listed = ok(await alice.browser.apiKey.list(), "list API keys");
check(listed?.apiKeys?.some((k) => k.id === created.id) && !listed.apiKeys.some((k) => "key" in k),
  "list shows the key without its secret", listed);
const verified = ok(await alice.browser.apiKey.verify({ key: created.key }), "verify");
check(verified?.valid === true && verified?.key?.id === created.id, "a valid key verifies", verified);
const denied = ok(
  await alice.browser.apiKey.verify({ key: created.key, permissions: { files: ["read"] } }),
  "verify with permissions",
);
check(denied?.valid === false && denied?.key === null, "a key lacking a permission verifies to key: null", denied);

const withKey = client({ "x-api-key": created.key });
const keyOrgs = ok(await withKey.organization.list(), "an API key lists organizations");
check(Array.isArray(keyOrgs) && keyOrgs.some((o) => o.id === acme.id), "the key acts as alice", keyOrgs);

ok(await alice.browser.apiKey.update({ keyId: created.id, enabled: false }), "disable the key");
const disabled = ok(await alice.browser.apiKey.verify({ key: created.key }), "verify a disabled key");
check(
  disabled?.valid === false && disabled?.error?.code === code(K.KEY_DISABLED) && disabled?.key === null,
  "a disabled key verifies to valid: false, KEY_DISABLED, key: null",
  disabled,
);
fails(await withKey.organization.list(), 401, code(K.KEY_DISABLED), "a disabled key as a credential");
ok(await alice.browser.apiKey.delete({ keyId: created.id }), "delete the key");
fails(await withKey.organization.list(), 401, code(K.INVALID_API_KEY), "a deleted key as a credential");
fails(
  await alice.browser.apiKey.get({ query: { id: created.id } }),
  404,
  code(K.KEY_NOT_FOUND),
  "get of a deleted key",
);
fails(
  await alice.browser.apiKey.create({ name: "bad", expiresIn: 0 }),
  400,
  code(K.EXPIRES_IN_IS_TOO_SMALL),
  "a key with expiresIn 0",
);
fails(
  await alice.browser.apiKey.create({ name: "n".repeat(300) }),
  400,
  code(K.INVALID_NAME_LENGTH),
  "a key with a long name",
);

if (failures.length > 0) {
  console.error(`${failures.length} of ${checks} checks failed against ${baseURL}`);
  process.exit(1);
}
console.log(`all ${checks} checks passed against ${baseURL} with better-auth's client plugins`);
