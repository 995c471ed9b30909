//! Organizations (create, update, delete, members, invitations, roles) and tenant resolution
//! (session → active org → first org joined; API key → `x-tenant-id` → key's org → first org).

use std::time::Duration;

use latchkey::paths;
use reqwest::{header, Response};
use serde_json::{json, Value};

use crate::{both_backends, helpers::*};

const HOUR: Duration = Duration::from_secs(3_600);
const CHECK: &str = "/api/auth/check";
const API_KEY_CREATE: &str = "/api/auth/api-key/create";
const EXTENSION_TOKEN: &str = "/api/extensions/token";
const DENIED_MESSAGE: &str = "User does not have access to organization";
const NO_ORG_MESSAGE: &str = "User has no organization";
/// The manual clock's starting instant (see helpers::spawn_node).
const START: &str = "2026-11-18T11:06:40.000Z";

both_backends!(
    creating_an_org_makes_the_creator_owner_and_sets_the_active_org,
    slugs_are_validated_and_unique,
    check_slug_reports_free_and_taken_slugs,
    list_returns_the_callers_orgs_by_membership_age,
    owners_and_admins_update_an_org_members_cannot,
    only_the_owner_deletes_an_org,
    set_active_by_id_by_slug_and_null,
    set_active_to_an_org_the_user_is_not_in_is_denied,
    get_full_organization_shows_members_with_users_and_invitations,
    list_members_returns_members_and_total,
    an_invited_user_signs_up_accepts_and_becomes_a_member,
    invitations_refuse_members_and_duplicates_unless_resent,
    only_owners_and_admins_invite_and_only_owners_invite_owners,
    accepting_with_another_email_is_forbidden,
    an_invitee_rejects_an_invitation,
    an_admin_cancels_an_invitation,
    an_invitation_expires_after_48_hours,
    list_invitations_shows_owners_and_admins_the_orgs_invitations,
    list_user_invitations_shows_the_pending_invitations_addressed_to_the_caller,
    get_active_member_answers_the_callers_membership_in_the_tenant,
    get_active_member_role_answers_the_callers_or_a_members_role,
    remove_member_respects_roles_and_the_last_owner,
    update_member_role_respects_roles_and_the_last_owner,
    leaving_is_refused_to_the_last_owner_and_ends_tenant_access_at_once,
    check_with_a_session_reports_the_active_org,
    a_user_without_an_org_passes_check_but_has_no_tenant,
    a_session_without_an_active_org_falls_back_to_the_first_org_joined,
    an_api_key_picks_its_tenant_from_x_tenant_id_by_id_or_slug,
    an_api_key_tenant_header_for_a_foreign_or_unknown_org_is_denied,
    an_api_key_without_a_tenant_header_uses_its_org_then_the_first_org,
    an_org_scoped_key_refuses_every_other_tenant,
    key_permissions_limit_organization_writes,
    set_active_needs_a_session,
);

// ---------------------------------------------------------------------------------------------------------
// Assertions (macros, so a failure points at the test's line).

/// Asserts a 200 and returns the JSON body.
macro_rules! ok {
    ($response:expr) => {{
        let (status, body) = parts($response).await;
        assert_eq!(status, 200, "{body}");
        body
    }};
}

/// Asserts the status and the error `code`; returns the body.
macro_rules! assert_error {
    ($response:expr, $status:expr, $code:expr) => {{
        let (status, body) = parts($response).await;
        assert_eq!((status, body["code"].as_str()), ($status, Some($code)), "{body}");
        body
    }};
}

/// Asserts 401 ORGANIZATION_ACCESS_DENIED with its exact message.
macro_rules! assert_denied {
    ($response:expr) => {{
        let body = assert_error!($response, 401, "ORGANIZATION_ACCESS_DENIED");
        assert_eq!(body["message"], DENIED_MESSAGE, "{body}");
    }};
}

/// Asserts 401 NO_ORGANIZATION with its exact message.
macro_rules! assert_no_org {
    ($response:expr) => {{
        let body = assert_error!($response, 401, "NO_ORGANIZATION");
        assert_eq!(body["message"], NO_ORG_MESSAGE, "{body}");
    }};
}

async fn parts(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, body)
}

fn org(action: &str) -> String {
    format!("/api/auth/organization/{action}")
}

fn str_of(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}")).to_owned()
}

// ---------------------------------------------------------------------------------------------------------
// Actors: a signed-in user with its own cookie jar, and an API key.

struct User {
    base: String,
    client: reqwest::Client,
    id: String,
    email: String,
}

/// Signs up `email` (name = its local part) with a fresh cookie jar.
async fn user(app: &TestApp, email: &str) -> User {
    let client = new_client();
    let name = email.split('@').next().unwrap();
    let response = client
        .post(app.url(paths::SIGN_UP_EMAIL))
        .header(header::ORIGIN, ORIGIN)
        .json(&json!({"name": name, "email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let body = ok!(response);
    User { base: app.address.clone(), client, id: str_of(&body["user"]["id"]), email: email.to_owned() }
}

impl User {
    async fn post(&self, path: &str, body: &Value) -> Response {
        let url = format!("{}{path}", self.base);
        self.client.post(url).header(header::ORIGIN, ORIGIN).json(body).send().await.unwrap()
    }

    async fn get(&self, path: &str) -> Response {
        self.client.get(format!("{}{path}", self.base)).send().await.unwrap()
    }

    /// `session.activeOrganizationId` as get-session shows it (through the cookie cache, as a browser would).
    async fn active_org(&self) -> Value {
        let body = ok!(self.get(paths::GET_SESSION).await);
        body["session"]["activeOrganizationId"].clone()
    }

    /// Creates an organization; returns it.
    async fn create_org(&self, name: &str, slug: &str) -> Value {
        ok!(self.post(&org("create"), &json!({"name": name, "slug": slug})).await)
    }

    /// Creates an API key from `body`; returns the key.
    async fn api_key(&self, body: Value) -> Key {
        let created = ok!(self.post(API_KEY_CREATE, &body).await);
        Key { base: self.base.clone(), client: bare_client(), key: str_of(&created["key"]) }
    }

    async fn check(&self) -> Check {
        Check::of(self.get(CHECK).await).await
    }

    async fn mint_extension_token(&self) -> Response {
        self.post(EXTENSION_TOKEN, &json!({"extensionId": "ext", "scopes": ["read"]})).await
    }

    /// Invites `invitee` into `org_id` with `role`; returns the invitation.
    async fn invite(&self, org_id: &str, email: &str, role: &str) -> Value {
        ok!(self.post(&org("invite-member"), &json!({"email": email, "role": role, "organizationId": org_id})).await)
    }

    /// Invites `invitee` and has it accept; returns the new member id.
    async fn add(&self, invitee: &User, org_id: &str, role: &str) -> String {
        let invitation = self.invite(org_id, &invitee.email, role).await;
        let accepted = ok!(invitee.post(&org("accept-invitation"), &json!({"invitationId": invitation["id"]})).await);
        str_of(&accepted["member"]["id"])
    }

    /// The ids of the members of `org_id`.
    async fn member_user_ids(&self, org_id: &str) -> Vec<String> {
        let body = ok!(self.get(&format!("{}?organizationId={org_id}", org("list-members"))).await);
        body["members"].as_array().unwrap().iter().map(|m| str_of(&m["userId"])).collect()
    }
}

struct Key {
    base: String,
    client: reqwest::Client,
    key: String,
}

impl Key {
    async fn get(&self, path: &str, tenant: Option<&str>) -> Response {
        let mut request = self.client.get(format!("{}{path}", self.base)).header("x-api-key", &self.key);
        if let Some(tenant) = tenant {
            request = request.header("x-tenant-id", tenant);
        }
        request.send().await.unwrap()
    }

    async fn post(&self, path: &str, tenant: Option<&str>, body: &Value) -> Response {
        let mut request = self.client.post(format!("{}{path}", self.base)).header("x-api-key", &self.key).json(body);
        if let Some(tenant) = tenant {
            request = request.header("x-tenant-id", tenant);
        }
        request.send().await.unwrap()
    }

    async fn check(&self, tenant: Option<&str>) -> Check {
        Check::of(self.get(CHECK, tenant).await).await
    }
}

/// What `GET /api/auth/check` answered.
#[derive(Debug)]
struct Check {
    status: u16,
    user_id: Option<String>,
    org_id: Option<String>,
    method: Option<String>,
    body: Value,
}

impl Check {
    async fn of(response: Response) -> Check {
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        let (user_id, org_id, method) = (header("x-auth-user-id"), header("x-auth-org-id"), header("x-auth-method"));
        let (status, body) = parts(response).await;
        Check { status, user_id, org_id, method, body }
    }

    /// Asserts a 200 for `user` by `method` in tenant `org_id` (None = no `x-auth-org-id` header at all).
    fn assert_ok(&self, user: &User, method: &str, org_id: Option<&str>) {
        assert_eq!(self.status, 200, "{self:?}");
        assert_eq!(self.user_id.as_deref(), Some(user.id.as_str()), "{self:?}");
        assert_eq!(self.method.as_deref(), Some(method), "{self:?}");
        assert_eq!(self.org_id.as_deref(), org_id, "{self:?}");
        assert_eq!(self.body["userId"], user.id.as_str(), "{self:?}");
        assert_eq!(self.body["method"], method, "{self:?}");
        assert_eq!(self.body["organizationId"], org_id.map_or(Value::Null, Value::from), "{self:?}");
    }

    fn assert_denied(&self) {
        assert_eq!(
            (self.status, self.body["code"].as_str(), self.body["message"].as_str()),
            (401, Some("ORGANIZATION_ACCESS_DENIED"), Some(DENIED_MESSAGE)),
            "{self:?}"
        );
        assert_eq!(self.org_id, None);
    }
}

fn id(value: &Value) -> String {
    str_of(&value["id"])
}

// ---------------------------------------------------------------------------------------------------------
// Organizations

async fn creating_an_org_makes_the_creator_owner_and_sets_the_active_org(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    assert_eq!(alice.active_org().await, Value::Null);

    let response = alice
        .post(
            &org("create"),
            &json!({"name": "Acme", "slug": "acme", "logo": "https://acme.test/logo.png", "metadata": {"plan": "pro"}}),
        )
        .await;

    let acme = ok!(response);
    let acme_id = id(&acme);
    assert_eq!(acme["name"], "Acme");
    assert_eq!(acme["slug"], "acme");
    assert_eq!(acme["logo"], "https://acme.test/logo.png");
    assert_eq!(acme["metadata"], json!({"plan": "pro"}));
    assert_eq!(acme["createdAt"], START);
    let members = acme["members"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    let owner = &members[0];
    assert!(owner["id"].is_string());
    assert_eq!(owner["organizationId"], acme_id.as_str());
    assert_eq!(owner["userId"], alice.id.as_str());
    assert_eq!(owner["role"], "owner");
    assert_eq!(owner["createdAt"], START);
    assert_eq!(owner["user"], json!({"id": alice.id, "name": "alice", "email": "alice@example.com", "image": null}));
    assert_eq!(alice.active_org().await, acme_id.as_str());
    let uncached = ok!(alice.get(&format!("{}?disableCookieCache=true", paths::GET_SESSION)).await);
    assert_eq!(uncached["session"]["activeOrganizationId"], acme_id.as_str());

    // keepCurrentActiveOrganization leaves the active org alone; without it the new org becomes active.
    let kept = ok!(alice
        .post(&org("create"), &json!({"name": "Globex", "slug": "globex", "keepCurrentActiveOrganization": true}))
        .await);
    assert_eq!(kept["logo"], Value::Null);
    assert_eq!(kept["metadata"], Value::Null);
    assert_eq!(alice.active_org().await, acme_id.as_str());
    let initech = alice.create_org("Initech", "initech").await;
    assert_eq!(alice.active_org().await, initech["id"]);
}

async fn slugs_are_validated_and_unique(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;

    let too_long = "a".repeat(65);
    for slug in ["", "Acme", "acme corp", "acme_corp", "acme.corp", "ácme", too_long.as_str()] {
        let response = alice.post(&org("create"), &json!({"name": "Acme", "slug": slug})).await;
        assert_error!(response, 400, "INVALID_SLUG");
    }
    assert_eq!(ok!(alice.get(&org("list")).await), json!([]));
    let longest = "a".repeat(64);
    alice.create_org("Longest", &longest).await;
    alice.create_org("Acme", "acme-2").await;

    let taken = bob.post(&org("create"), &json!({"name": "Other Acme", "slug": "acme-2"})).await;

    assert_error!(taken, 400, "ORGANIZATION_ALREADY_EXISTS");
    assert_eq!(ok!(bob.get(&org("list")).await), json!([]));
    assert_eq!(bob.active_org().await, Value::Null);
}

async fn check_slug_reports_free_and_taken_slugs(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;

    let free = alice.post(&org("check-slug"), &json!({"slug": "acme"})).await;
    assert_eq!(ok!(free), json!({"status": true}));

    alice.create_org("Acme", "acme").await;
    let bob = user(&app, "bob@example.com").await;
    let taken = bob.post(&org("check-slug"), &json!({"slug": "acme"})).await;

    assert_error!(taken, 400, "ORGANIZATION_SLUG_ALREADY_TAKEN");
    assert_eq!(ok!(bob.post(&org("check-slug"), &json!({"slug": "acme-2"})).await), json!({"status": true}));
}

async fn list_returns_the_callers_orgs_by_membership_age(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;
    // Bob's org is the oldest, but Alice joins it last.
    let bobco = bob.create_org("Bobco", "bobco").await;
    app.clock.advance(HOUR);
    let zeta = alice.create_org("Zeta", "zeta").await;
    app.clock.advance(HOUR);
    let alpha = alice.create_org("Alpha", "alpha").await;
    app.clock.advance(HOUR);
    bob.add(&alice, &id(&bobco), "member").await;

    let listed = ok!(alice.get(&org("list")).await);

    let ids: Vec<String> = listed.as_array().unwrap().iter().map(id).collect();
    assert_eq!(ids, [id(&zeta), id(&alpha), id(&bobco)]);
    let first = &listed[0];
    for field in ["id", "name", "slug", "logo", "metadata", "createdAt"] {
        assert!(first.get(field).is_some(), "{field} missing: {first}");
    }
    assert_eq!(first["slug"], "zeta");
    let bobs: Vec<String> = ok!(bob.get(&org("list")).await).as_array().unwrap().iter().map(id).collect();
    assert_eq!(bobs, [id(&bobco)]);
}

async fn owners_and_admins_update_an_org_members_cannot(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme = alice.create_org("Acme", "acme").await;
    let acme_id = id(&acme);
    let bob = user(&app, "bob@example.com").await;
    let carol = user(&app, "carol@example.com").await;
    alice.add(&bob, &acme_id, "admin").await;
    alice.add(&carol, &acme_id, "member").await;

    let by_owner = alice.post(&org("update"), &json!({"data": {"name": "Acme Inc"}, "organizationId": acme_id})).await;
    let updated = ok!(by_owner);
    assert_eq!(updated["id"], acme_id.as_str());
    assert_eq!(updated["name"], "Acme Inc");
    assert_eq!(updated["slug"], "acme");

    // No organizationId: Bob's tenant is his active org (set when he accepted).
    let by_admin = bob
        .post(&org("update"), &json!({"data": {"slug": "acme-inc", "metadata": {"tier": 2}, "logo": "l.png"}}))
        .await;
    let updated = ok!(by_admin);
    assert_eq!(updated["id"], acme_id.as_str());
    assert_eq!(updated["name"], "Acme Inc");
    assert_eq!(updated["slug"], "acme-inc");
    assert_eq!(updated["metadata"], json!({"tier": 2}));
    assert_eq!(updated["logo"], "l.png");

    let by_member = carol.post(&org("update"), &json!({"data": {"name": "Carol's"}, "organizationId": acme_id})).await;
    assert_error!(by_member, 403, "YOU_ARE_NOT_ALLOWED_TO_UPDATE_THIS_ORGANIZATION");
    let outsider = user(&app, "dave@example.com").await;
    let by_outsider =
        outsider.post(&org("update"), &json!({"data": {"name": "Dave's"}, "organizationId": acme_id})).await;
    assert_error!(by_outsider, 400, "USER_IS_NOT_A_MEMBER_OF_THE_ORGANIZATION");
    let unknown =
        alice.post(&org("update"), &json!({"data": {"name": "?"}, "organizationId": "org_doesnotexist"})).await;
    assert_error!(unknown, 400, "ORGANIZATION_NOT_FOUND");
    // A slug another organization holds.
    alice.create_org("Globex", "globex").await;
    let taken = alice.post(&org("update"), &json!({"data": {"slug": "globex"}, "organizationId": acme_id})).await;
    assert_error!(taken, 400, "ORGANIZATION_SLUG_ALREADY_TAKEN");
    let full = ok!(alice.get(&format!("{}?organizationId={acme_id}", org("get-full-organization"))).await);
    assert_eq!(full["name"], "Acme Inc");
    assert_eq!(full["slug"], "acme-inc");
}

async fn only_the_owner_deletes_an_org(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme = alice.create_org("Acme", "acme").await;
    let acme_id = id(&acme);
    let bob = user(&app, "bob@example.com").await;
    let carol = user(&app, "carol@example.com").await;
    alice.add(&bob, &acme_id, "admin").await;
    alice.add(&carol, &acme_id, "member").await;

    let not_allowed = "YOU_ARE_NOT_ALLOWED_TO_DELETE_THIS_ORGANIZATION";
    assert_error!(bob.post(&org("delete"), &json!({"organizationId": acme_id})).await, 403, not_allowed);
    assert_error!(carol.post(&org("delete"), &json!({"organizationId": acme_id})).await, 403, not_allowed);
    let dave = user(&app, "dave@example.com").await;
    let by_outsider = dave.post(&org("delete"), &json!({"organizationId": acme_id})).await;
    assert_error!(by_outsider, 400, "USER_IS_NOT_A_MEMBER_OF_THE_ORGANIZATION");
    assert_eq!(ok!(bob.get(&org("list")).await).as_array().unwrap().len(), 1);

    let deleted = ok!(alice.post(&org("delete"), &json!({"organizationId": acme_id})).await);

    assert_eq!(deleted["id"], acme_id.as_str());
    assert_eq!(deleted["slug"], "acme");
    assert_eq!(ok!(alice.get(&org("list")).await), json!([]));
    assert_eq!(ok!(bob.get(&org("list")).await), json!([]));
    // As Better Auth: a deleted organization is not found (not "access denied").
    let gone = alice.get(&format!("{}?organizationId={acme_id}", org("get-full-organization"))).await;
    let body = assert_error!(gone, 400, "ORGANIZATION_NOT_FOUND");
    assert_eq!(body["message"], "Organization not found");
    assert_error!(
        alice.get(&format!("{}?organizationSlug=acme", org("get-full-organization"))).await,
        400,
        "ORGANIZATION_NOT_FOUND"
    );
    // With no organization left, the active one is null, as Better Auth answers without one.
    assert_eq!(ok!(alice.get(&org("get-full-organization")).await), Value::Null);
    // The slug is free again.
    assert_eq!(ok!(alice.post(&org("check-slug"), &json!({"slug": "acme"})).await), json!({"status": true}));
}

async fn set_active_by_id_by_slug_and_null(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme = alice.create_org("Acme", "acme").await;
    let globex = alice.create_org("Globex", "globex").await;
    assert_eq!(alice.active_org().await, globex["id"]);

    let by_id = ok!(alice.post(&org("set-active"), &json!({"organizationId": acme["id"]})).await);
    assert_eq!(by_id["id"], acme["id"]);
    assert_eq!(by_id["slug"], "acme");
    assert_eq!(by_id["members"].as_array().unwrap().len(), 1);
    assert_eq!(by_id["members"][0]["user"]["email"], "alice@example.com");
    assert_eq!(by_id["invitations"], json!([]));
    assert_eq!(alice.active_org().await, acme["id"]);
    alice.check().await.assert_ok(&alice, "session", Some(&id(&acme)));

    let by_slug = ok!(alice.post(&org("set-active"), &json!({"organizationSlug": "globex"})).await);
    assert_eq!(by_slug["id"], globex["id"]);
    assert_eq!(alice.active_org().await, globex["id"]);

    let response = alice.post(&org("set-active"), &json!({"organizationId": null})).await;
    assert_eq!(ok!(response), Value::Null);
    assert_eq!(alice.active_org().await, Value::Null);
    let uncached = ok!(alice.get(&format!("{}?disableCookieCache=true", paths::GET_SESSION)).await);
    assert_eq!(uncached["session"]["activeOrganizationId"], Value::Null);
}

async fn set_active_to_an_org_the_user_is_not_in_is_denied(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme = alice.create_org("Acme", "acme").await;
    let bob = user(&app, "bob@example.com").await;
    let bobco = bob.create_org("Bobco", "bobco").await;

    // Better Auth's answers: 403 for an organization the user is not in, or an unknown id (it checks
    // membership first); 400 for an unknown slug.
    let not_member = "USER_IS_NOT_A_MEMBER_OF_THE_ORGANIZATION";
    assert_error!(alice.post(&org("set-active"), &json!({"organizationId": bobco["id"]})).await, 403, not_member);
    assert_error!(alice.post(&org("set-active"), &json!({"organizationSlug": "bobco"})).await, 403, not_member);
    let unknown_id = alice.post(&org("set-active"), &json!({"organizationId": "org_doesnotexist"})).await;
    assert_error!(unknown_id, 403, not_member);
    let unknown_slug = alice.post(&org("set-active"), &json!({"organizationSlug": "nope"})).await;
    assert_error!(unknown_slug, 400, "ORGANIZATION_NOT_FOUND");

    assert_eq!(alice.active_org().await, acme["id"]);
    alice.check().await.assert_ok(&alice, "session", Some(&id(&acme)));
}

async fn get_full_organization_shows_members_with_users_and_invitations(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme = alice.create_org("Acme", "acme").await;
    let acme_id = id(&acme);
    let bob = user(&app, "bob@example.com").await;
    alice.add(&bob, &acme_id, "admin").await;
    let invitation = alice.invite(&acme_id, "carol@example.com", "member").await;

    let by_id = ok!(alice.get(&format!("{}?organizationId={acme_id}", org("get-full-organization"))).await);
    let by_slug = ok!(alice.get(&format!("{}?organizationSlug=acme", org("get-full-organization"))).await);
    let by_tenant = ok!(alice.get(&org("get-full-organization")).await);

    assert_eq!(by_id, by_slug);
    assert_eq!(by_id, by_tenant);
    assert_eq!(by_id["id"], acme_id.as_str());
    assert_eq!(by_id["name"], "Acme");
    assert_eq!(by_id["slug"], "acme");
    assert_eq!(by_id["createdAt"], START);
    let members = by_id["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    let of = |user: &User| members.iter().find(|m| m["userId"] == user.id.as_str()).unwrap().clone();
    assert_eq!(of(&alice)["role"], "owner");
    assert_eq!(of(&alice)["user"], json!({"id": alice.id, "name": "alice", "email": alice.email, "image": null}));
    assert_eq!(of(&bob)["role"], "admin");
    assert_eq!(of(&bob)["organizationId"], acme_id.as_str());
    assert_eq!(of(&bob)["user"], json!({"id": bob.id, "name": "bob", "email": bob.email, "image": null}));
    let invitations = by_id["invitations"].as_array().unwrap();
    let carol = invitations.iter().find(|i| i["email"] == "carol@example.com").unwrap();
    assert_eq!(carol["id"], invitation["id"]);
    assert_eq!(carol["organizationId"], acme_id.as_str());
    assert_eq!(carol["role"], "member");
    assert_eq!(carol["status"], "pending");
    assert_eq!(carol["inviterId"], alice.id.as_str());
    assert_eq!(carol["expiresAt"], "2026-11-20T11:06:40.000Z");
    assert_eq!(carol["createdAt"], START);
    // Bob (admin) sees the same but an invitation to become an owner; a member sees no invitations (as
    // Better Auth); an outsider nothing.
    let for_owner = alice.invite(&acme_id, "olga@example.com", "owner").await;
    let ids = |full: &Value| -> Vec<Value> {
        full["invitations"].as_array().unwrap().iter().map(|i| i["id"].clone()).collect()
    };
    let as_alice = ok!(alice.get(&format!("{}?organizationId={acme_id}", org("get-full-organization"))).await);
    assert!(ids(&as_alice).contains(&for_owner["id"]) && ids(&as_alice).contains(&invitation["id"]));
    let as_bob = ok!(bob.get(&format!("{}?organizationId={acme_id}", org("get-full-organization"))).await);
    assert_eq!(as_bob["members"].as_array().unwrap().len(), 2);
    assert!(ids(&as_bob).contains(&invitation["id"]));
    assert!(!ids(&as_bob).contains(&for_owner["id"]));
    assert_eq!(ids(&as_bob).len() + 1, ids(&as_alice).len());
    let erin = user(&app, "erin@example.com").await;
    alice.add(&erin, &acme_id, "member").await;
    let as_erin = ok!(erin.get(&format!("{}?organizationId={acme_id}", org("get-full-organization"))).await);
    assert_eq!(as_erin["members"].as_array().unwrap().len(), 3);
    assert_eq!(as_erin["invitations"], json!([]));
    let dave = user(&app, "dave@example.com").await;
    let not_member = "USER_IS_NOT_A_MEMBER_OF_THE_ORGANIZATION";
    assert_error!(
        dave.get(&format!("{}?organizationId={acme_id}", org("get-full-organization"))).await,
        403,
        not_member
    );
    assert_error!(dave.get(&format!("{}?organizationSlug=acme", org("get-full-organization"))).await, 403, not_member);
}

async fn list_members_returns_members_and_total(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    for email in ["bob@example.com", "carol@example.com"] {
        app.clock.advance(HOUR);
        alice.add(&user(&app, email).await, &acme_id, "member").await;
    }

    let all = ok!(alice.get(&format!("{}?organizationId={acme_id}", org("list-members"))).await);
    let page = ok!(alice.get(&format!("{}?organizationId={acme_id}&limit=2", org("list-members"))).await);
    let rest = ok!(alice.get(&format!("{}?organizationId={acme_id}&limit=2&offset=2", org("list-members"))).await);
    let by_tenant = ok!(alice.get(&org("list-members")).await);

    assert_eq!(all["total"], 3);
    let members = all["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    let mut emails: Vec<String> = members.iter().map(|m| str_of(&m["user"]["email"])).collect();
    emails.sort();
    assert_eq!(emails, ["alice@example.com", "bob@example.com", "carol@example.com"]);
    for member in members {
        assert_eq!(member["organizationId"], acme_id.as_str());
        for field in ["id", "userId", "role", "createdAt"] {
            assert!(member[field].is_string(), "{field}: {member}");
        }
    }
    assert_eq!(page["total"], 3);
    assert_eq!(page["members"].as_array().unwrap().len(), 2);
    assert_eq!(rest["total"], 3);
    assert_eq!(rest["members"].as_array().unwrap().len(), 1);
    let mut paged: Vec<Value> = page["members"].as_array().unwrap().iter().map(|m| m["id"].clone()).collect();
    paged.push(rest["members"][0]["id"].clone());
    paged.sort_by_key(|v| v.to_string());
    paged.dedup();
    assert_eq!(paged.len(), 3, "pages overlap");
    assert_eq!(by_tenant["total"], 3);
}

// ---------------------------------------------------------------------------------------------------------
// Invitations

async fn an_invited_user_signs_up_accepts_and_becomes_a_member(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);

    let invitation = alice.invite(&acme_id, "bob@example.com", "member").await;

    assert!(invitation["id"].is_string());
    assert_eq!(invitation["organizationId"], acme_id.as_str());
    assert_eq!(invitation["email"], "bob@example.com");
    assert_eq!(invitation["role"], "member");
    assert_eq!(invitation["status"], "pending");
    assert_eq!(invitation["inviterId"], alice.id.as_str());
    assert_eq!(invitation["expiresAt"], "2026-11-20T11:06:40.000Z");
    assert_eq!(invitation["createdAt"], START);

    app.clock.advance(HOUR);
    let bob = user(&app, "bob@example.com").await;
    assert_eq!(bob.active_org().await, Value::Null);
    let accepted = ok!(bob.post(&org("accept-invitation"), &json!({"invitationId": invitation["id"]})).await);

    assert_eq!(accepted["invitation"]["id"], invitation["id"]);
    assert_eq!(accepted["invitation"]["status"], "accepted");
    let member = &accepted["member"];
    assert!(member["id"].is_string());
    assert_eq!(member["organizationId"], acme_id.as_str());
    assert_eq!(member["userId"], bob.id.as_str());
    assert_eq!(member["role"], "member");
    assert_eq!(member["createdAt"], "2026-11-18T12:06:40.000Z");
    assert_eq!(bob.active_org().await, acme_id.as_str());
    let listed: Vec<String> = ok!(bob.get(&org("list")).await).as_array().unwrap().iter().map(id).collect();
    assert_eq!(listed, [acme_id.as_str()]);
    let mut members = alice.member_user_ids(&acme_id).await;
    members.sort();
    let mut expected = vec![alice.id.clone(), bob.id.clone()];
    expected.sort();
    assert_eq!(members, expected);
    bob.check().await.assert_ok(&bob, "session", Some(&acme_id));

    let again = bob.post(&org("accept-invitation"), &json!({"invitationId": invitation["id"]})).await;
    assert_error!(again, 400, "INVITATION_NOT_FOUND");
    let unknown = bob.post(&org("accept-invitation"), &json!({"invitationId": "inv_doesnotexist"})).await;
    assert_error!(unknown, 400, "INVITATION_NOT_FOUND");
}

async fn invitations_refuse_members_and_duplicates_unless_resent(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    let carol = user(&app, "carol@example.com").await;
    alice.add(&carol, &acme_id, "member").await;
    let (inviter, acme) = (&alice, acme_id.as_str());
    let invite = move |email: &str, resend: bool| {
        let body = json!({"email": email, "role": "member", "organizationId": acme, "resend": resend});
        async move { inviter.post(&org("invite-member"), &body).await }
    };
    assert_error!(invite("alice@example.com", false).await, 400, "USER_IS_ALREADY_A_MEMBER_OF_THIS_ORGANIZATION");
    assert_error!(invite("carol@example.com", false).await, 400, "USER_IS_ALREADY_A_MEMBER_OF_THIS_ORGANIZATION");
    let first = ok!(invite("bob@example.com", false).await);
    assert_error!(invite("bob@example.com", false).await, 400, "USER_IS_ALREADY_INVITED_TO_THIS_ORGANIZATION");

    app.clock.advance(HOUR);
    let resent = ok!(invite("bob@example.com", true).await);

    assert_eq!(resent["email"], "bob@example.com");
    assert_eq!(resent["status"], "pending");
    assert_eq!(resent["organizationId"], acme_id.as_str());
    // A fresh 48 hours from the resend.
    assert_eq!(resent["expiresAt"], "2026-11-20T12:06:40.000Z");
    // Whichever invitation the resend left pending, Bob can accept it and joins once.
    let bob = user(&app, "bob@example.com").await;
    let accepted = ok!(bob.post(&org("accept-invitation"), &json!({"invitationId": resent["id"]})).await);
    assert_eq!(accepted["member"]["userId"], bob.id.as_str());
    assert!(first["id"].is_string());
    assert_eq!(alice.member_user_ids(&acme_id).await.len(), 3);
    assert_error!(invite("bob@example.com", true).await, 400, "USER_IS_ALREADY_A_MEMBER_OF_THIS_ORGANIZATION");
}

async fn only_owners_and_admins_invite_and_only_owners_invite_owners(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    let bob = user(&app, "bob@example.com").await;
    let carol = user(&app, "carol@example.com").await;
    alice.add(&bob, &acme_id, "admin").await;
    alice.add(&carol, &acme_id, "member").await;
    let body = |email: &str, role: &str| json!({"email": email, "role": role, "organizationId": acme_id});

    let by_member = carol.post(&org("invite-member"), &body("dave@example.com", "member")).await;
    let refused = assert_error!(by_member, 403, "YOU_ARE_NOT_ALLOWED_TO_INVITE_USERS_TO_THIS_ORGANIZATION");
    assert_eq!(refused["message"], "You are not allowed to invite users to this organization");
    let owner_by_admin = bob.post(&org("invite-member"), &body("dave@example.com", "owner")).await;
    assert_error!(owner_by_admin, 403, "YOU_ARE_NOT_ALLOWED_TO_INVITE_USER_WITH_THIS_ROLE");
    assert_error!(
        alice.post(&org("invite-member"), &body("dave@example.com", "superuser")).await,
        400,
        "ROLE_NOT_FOUND"
    );
    assert_error!(alice.post(&org("invite-member"), &body("not-an-email", "member")).await, 400, "INVALID_EMAIL");
    let outsider = user(&app, "erin@example.com").await;
    let by_outsider = outsider.post(&org("invite-member"), &body("dave@example.com", "member")).await;
    assert_error!(by_outsider, 400, "MEMBER_NOT_FOUND");

    let by_admin = ok!(bob.post(&org("invite-member"), &body("dave@example.com", "admin")).await);
    assert_eq!(by_admin["role"], "admin");
    assert_eq!(by_admin["inviterId"], bob.id.as_str());
    let by_owner = ok!(alice.post(&org("invite-member"), &body("frank@example.com", "owner")).await);
    assert_eq!(by_owner["role"], "owner");
}

async fn accepting_with_another_email_is_forbidden(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    let invitation = alice.invite(&acme_id, "bob@example.com", "member").await;
    let mallory = user(&app, "mallory@example.com").await;

    let accepted = mallory.post(&org("accept-invitation"), &json!({"invitationId": invitation["id"]})).await;
    let rejected = mallory.post(&org("reject-invitation"), &json!({"invitationId": invitation["id"]})).await;

    assert_error!(accepted, 403, "YOU_ARE_NOT_THE_RECIPIENT_OF_THE_INVITATION");
    assert_error!(rejected, 403, "YOU_ARE_NOT_THE_RECIPIENT_OF_THE_INVITATION");
    assert_eq!(ok!(mallory.get(&org("list")).await), json!([]));
    assert_eq!(mallory.active_org().await, Value::Null);
    let full = ok!(alice.get(&format!("{}?organizationId={acme_id}", org("get-full-organization"))).await);
    assert_eq!(full["members"].as_array().unwrap().len(), 1);
    let pending = full["invitations"].as_array().unwrap().iter().find(|i| i["id"] == invitation["id"]).unwrap();
    assert_eq!(pending["status"], "pending");
    // The real invitee still can.
    let bob = user(&app, "bob@example.com").await;
    ok!(bob.post(&org("accept-invitation"), &json!({"invitationId": invitation["id"]})).await);
}

async fn an_invitee_rejects_an_invitation(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    let invitation = alice.invite(&acme_id, "bob@example.com", "member").await;
    let bob = user(&app, "bob@example.com").await;

    let rejected = ok!(bob.post(&org("reject-invitation"), &json!({"invitationId": invitation["id"]})).await);

    assert_eq!(rejected["invitation"]["id"], invitation["id"]);
    assert_eq!(rejected["invitation"]["status"], "rejected");
    assert_eq!(rejected["member"], Value::Null);
    assert_eq!(ok!(bob.get(&org("list")).await), json!([]));
    assert_eq!(alice.member_user_ids(&acme_id).await, [alice.id.as_str()]);
    let accept = bob.post(&org("accept-invitation"), &json!({"invitationId": invitation["id"]})).await;
    assert_error!(accept, 400, "INVITATION_NOT_FOUND");
}

async fn an_admin_cancels_an_invitation(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    let bob = user(&app, "bob@example.com").await;
    let carol = user(&app, "carol@example.com").await;
    alice.add(&bob, &acme_id, "admin").await;
    alice.add(&carol, &acme_id, "member").await;
    let invitation = alice.invite(&acme_id, "dave@example.com", "member").await;
    let cancel = json!({"invitationId": invitation["id"]});

    assert_error!(
        carol.post(&org("cancel-invitation"), &cancel).await,
        403,
        "YOU_ARE_NOT_ALLOWED_TO_CANCEL_THIS_INVITATION"
    );
    let unknown = json!({"invitationId": "inv_doesnotexist"});
    assert_error!(bob.post(&org("cancel-invitation"), &unknown).await, 400, "INVITATION_NOT_FOUND");
    let canceled = ok!(bob.post(&org("cancel-invitation"), &cancel).await);

    assert_eq!(canceled["id"], invitation["id"]);
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["email"], "dave@example.com");
    let dave = user(&app, "dave@example.com").await;
    let accept = dave.post(&org("accept-invitation"), &json!({"invitationId": invitation["id"]})).await;
    assert_error!(accept, 400, "INVITATION_NOT_FOUND");
    assert_eq!(ok!(dave.get(&org("list")).await), json!([]));
}

async fn an_invitation_expires_after_48_hours(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    let for_bob = alice.invite(&acme_id, "bob@example.com", "member").await;
    let for_carol = alice.invite(&acme_id, "carol@example.com", "member").await;

    app.clock.advance(47 * HOUR + Duration::from_secs(59 * 60));
    let carol = user(&app, "carol@example.com").await;
    ok!(carol.post(&org("accept-invitation"), &json!({"invitationId": for_carol["id"]})).await);

    app.clock.advance(Duration::from_secs(2 * 60));
    let bob = user(&app, "bob@example.com").await;
    let late = bob.post(&org("accept-invitation"), &json!({"invitationId": for_bob["id"]})).await;

    assert_error!(late, 400, "INVITATION_NOT_FOUND");
    assert_eq!(ok!(bob.get(&org("list")).await), json!([]));
    assert!(!alice.member_user_ids(&acme_id).await.contains(&bob.id));
}

async fn list_invitations_shows_owners_and_admins_the_orgs_invitations(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    let bob = user(&app, "bob@example.com").await;
    let carol = user(&app, "carol@example.com").await;
    alice.add(&bob, &acme_id, "admin").await;
    alice.add(&carol, &acme_id, "member").await;
    app.clock.advance(HOUR);
    let for_dave = alice.invite(&acme_id, "dave@example.com", "member").await;
    app.clock.advance(HOUR);
    let for_olga = alice.invite(&acme_id, "olga@example.com", "owner").await;
    let list = |of: &str| format!("{}?organizationId={of}", org("list-invitations"));

    let by_owner = ok!(alice.get(&list(&acme_id)).await);
    let by_tenant = ok!(alice.get(&org("list-invitations")).await);
    let by_admin = ok!(bob.get(&list(&acme_id)).await);

    // Every invitation, accepted ones included, newest first.
    let ids: Vec<Value> = by_owner.as_array().unwrap().iter().map(|i| i["id"].clone()).collect();
    assert_eq!(ids.len(), 4, "{by_owner}");
    assert_eq!(ids[0], for_olga["id"]);
    assert_eq!(ids[1], for_dave["id"]);
    assert_eq!(by_owner, by_tenant);
    assert_eq!(by_owner[1], for_dave);
    let statuses: Vec<&str> = by_owner.as_array().unwrap().iter().map(|i| i["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["pending", "pending", "accepted", "accepted"]);
    // Admins do not see invitations to become an owner; members see none; outsiders are refused.
    let admin_ids: Vec<Value> = by_admin.as_array().unwrap().iter().map(|i| i["id"].clone()).collect();
    assert_eq!(admin_ids.len(), 3);
    assert!(!admin_ids.contains(&for_olga["id"]));
    assert_error!(carol.get(&list(&acme_id)).await, 403, "YOU_ARE_NOT_ALLOWED_TO_LIST_INVITATIONS");
    let erin = user(&app, "erin@example.com").await;
    assert_error!(erin.get(&list(&acme_id)).await, 403, "YOU_ARE_NOT_A_MEMBER_OF_THIS_ORGANIZATION");
    assert_error!(erin.get(&org("list-invitations")).await, 400, "NO_ACTIVE_ORGANIZATION");
    assert_error!(alice.get(&list("org_doesnotexist")).await, 400, "ORGANIZATION_NOT_FOUND");
}

async fn list_user_invitations_shows_the_pending_invitations_addressed_to_the_caller(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    let bob = user(&app, "bob@example.com").await;
    let bobco_id = id(&bob.create_org("Bobco", "bobco").await);
    let from_acme = alice.invite(&acme_id, "carol@example.com", "admin").await;
    app.clock.advance(HOUR);
    let from_bobco = bob.invite(&bobco_id, "carol@example.com", "member").await;
    alice.invite(&acme_id, "dave@example.com", "member").await;
    let carol = user(&app, "carol@example.com").await;

    let received = ok!(carol.get(&org("list-user-invitations")).await);

    let received = received.as_array().unwrap();
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(received[0]["id"], from_bobco["id"]);
    assert_eq!(received[0]["organizationName"], "Bobco");
    assert_eq!(received[1]["id"], from_acme["id"]);
    assert_eq!(received[1]["organizationName"], "Acme");
    assert_eq!(received[1]["organizationId"], acme_id.as_str());
    assert_eq!(received[1]["email"], "carol@example.com");
    assert_eq!(received[1]["role"], "admin");
    assert_eq!(received[1]["status"], "pending");
    assert_eq!(received[1]["inviterId"], alice.id.as_str());
    assert_eq!(received[1]["expiresAt"], from_acme["expiresAt"]);
    // Decided invitations drop out; a user with none gets an empty list; nobody lists another's.
    ok!(carol.post(&org("accept-invitation"), &json!({"invitationId": from_acme["id"]})).await);
    let left = ok!(carol.get(&org("list-user-invitations")).await);
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["id"], from_bobco["id"]);
    assert_eq!(ok!(alice.get(&org("list-user-invitations")).await), json!([]));
    let for_other = alice.get(&format!("{}?email=dave@example.com", org("list-user-invitations"))).await;
    assert_error!(for_other, 400, "VALIDATION_ERROR");
    let key = carol.api_key(json!({"name": "carol's"})).await;
    assert_eq!(ok!(key.get(&org("list-user-invitations"), None).await), left);
}

async fn get_active_member_answers_the_callers_membership_in_the_tenant(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    let bob = user(&app, "bob@example.com").await;
    let bob_member = alice.add(&bob, &acme_id, "admin").await;
    let globex_id = id(&bob.create_org("Globex", "globex").await);

    // Bob's active organization is Globex now (he created it), then Acme again.
    let in_globex = ok!(bob.get(&org("get-active-member")).await);
    ok!(bob.post(&org("set-active"), &json!({"organizationId": acme_id})).await);
    let in_acme = ok!(bob.get(&org("get-active-member")).await);

    assert_eq!(in_globex["organizationId"], globex_id.as_str());
    assert_eq!(in_globex["role"], "owner");
    assert_eq!(in_acme["id"], bob_member.as_str());
    assert_eq!(in_acme["organizationId"], acme_id.as_str());
    assert_eq!(in_acme["userId"], bob.id.as_str());
    assert_eq!(in_acme["role"], "admin");
    assert!(in_acme["createdAt"].is_string());
    assert_eq!(in_acme["user"], json!({"id": bob.id, "name": "bob", "email": "bob@example.com", "image": null}));
    // An API key's tenant is its x-tenant-id.
    let key = bob.api_key(json!({"name": "bob's"})).await;
    assert_eq!(ok!(key.get(&org("get-active-member"), Some("acme")).await), in_acme);
    assert_error!(key.get(&org("get-active-member"), Some("no-such-org")).await, 400, "ORGANIZATION_NOT_FOUND");
    // Without any organization.
    let carol = user(&app, "carol@example.com").await;
    assert_error!(carol.get(&org("get-active-member")).await, 400, "NO_ACTIVE_ORGANIZATION");
    let anonymous = bare_client().get(app.url(&org("get-active-member"))).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

async fn get_active_member_role_answers_the_callers_or_a_members_role(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    let bob = user(&app, "bob@example.com").await;
    alice.add(&bob, &acme_id, "member").await;
    let carol = user(&app, "carol@example.com").await;
    let role = |query: &str| format!("{}{query}", org("get-active-member-role"));

    assert_eq!(ok!(alice.get(&role("")).await), json!({"role": "owner"}));
    assert_eq!(ok!(bob.get(&role("")).await), json!({"role": "member"}));
    assert_eq!(ok!(bob.get(&role(&format!("?organizationId={acme_id}"))).await), json!({"role": "member"}));
    assert_eq!(ok!(bob.get(&role("?organizationSlug=acme")).await), json!({"role": "member"}));
    assert_eq!(ok!(bob.get(&role(&format!("?userId={}", alice.id))).await), json!({"role": "owner"}));

    let not_member = "YOU_ARE_NOT_A_MEMBER_OF_THIS_ORGANIZATION";
    assert_error!(bob.get(&role(&format!("?userId={}", carol.id))).await, 403, not_member);
    assert_error!(carol.get(&role(&format!("?organizationId={acme_id}"))).await, 403, not_member);
    assert_error!(carol.get(&role("")).await, 400, "NO_ACTIVE_ORGANIZATION");
    assert_error!(carol.get(&role("?organizationSlug=nope")).await, 400, "ORGANIZATION_NOT_FOUND");
}

// ---------------------------------------------------------------------------------------------------------
// Members and roles

async fn remove_member_respects_roles_and_the_last_owner(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    assert_eq!(alice.member_user_ids(&acme_id).await, [alice.id.as_str()]);
    let bob = user(&app, "bob@example.com").await;
    let carol = user(&app, "carol@example.com").await;
    let dave = user(&app, "dave@example.com").await;
    alice.add(&bob, &acme_id, "admin").await;
    let carol_member = alice.add(&carol, &acme_id, "member").await;
    alice.add(&dave, &acme_id, "member").await;
    let remove = |who: &str| json!({"memberIdOrEmail": who, "organizationId": acme_id});

    // Better Auth's codes, statuses (401 for a member without the right) and quirk (an admin removing an
    // owner hears the "only owner" answer).
    let only_owner = "YOU_CANNOT_LEAVE_THE_ORGANIZATION_AS_THE_ONLY_OWNER";
    let by_member = carol.post(&org("remove-member"), &remove("dave@example.com")).await;
    assert_error!(by_member, 401, "YOU_ARE_NOT_ALLOWED_TO_DELETE_THIS_MEMBER");
    assert_error!(bob.post(&org("remove-member"), &remove("alice@example.com")).await, 400, only_owner);
    assert_error!(alice.post(&org("remove-member"), &remove("alice@example.com")).await, 400, only_owner);
    assert_error!(alice.post(&org("remove-member"), &remove("nobody@example.com")).await, 400, "MEMBER_NOT_FOUND");
    assert_error!(alice.post(&org("remove-member"), &remove("mem_doesnotexist")).await, 400, "MEMBER_NOT_FOUND");
    assert_eq!(alice.member_user_ids(&acme_id).await.len(), 4);

    let by_id = ok!(bob.post(&org("remove-member"), &remove(&carol_member)).await);
    let by_email = ok!(alice.post(&org("remove-member"), &remove("dave@example.com")).await);

    assert_eq!(by_id["member"]["id"], carol_member.as_str());
    assert_eq!(by_id["member"]["userId"], carol.id.as_str());
    assert_eq!(by_email["member"]["userId"], dave.id.as_str());
    let mut left = alice.member_user_ids(&acme_id).await;
    left.sort();
    let mut expected = vec![alice.id.clone(), bob.id.clone()];
    expected.sort();
    assert_eq!(left, expected);
    // Removed members lose access at once.
    let full = carol.get(&format!("{}?organizationId={acme_id}", org("get-full-organization"))).await;
    assert_error!(full, 403, "USER_IS_NOT_A_MEMBER_OF_THE_ORGANIZATION");
    assert_eq!(ok!(dave.get(&org("list")).await), json!([]));
}

async fn update_member_role_respects_roles_and_the_last_owner(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let created = alice.create_org("Acme", "acme").await;
    let acme_id = id(&created);
    let alice_member = str_of(&created["members"][0]["id"]);
    let bob = user(&app, "bob@example.com").await;
    let carol = user(&app, "carol@example.com").await;
    let bob_member = alice.add(&bob, &acme_id, "admin").await;
    let carol_member = alice.add(&carol, &acme_id, "member").await;
    let role = |member: &str, role: &str| json!({"memberId": member, "role": role, "organizationId": acme_id});

    let not_allowed = "YOU_ARE_NOT_ALLOWED_TO_UPDATE_THIS_MEMBER";
    let no_owner = "YOU_CANNOT_LEAVE_THE_ORGANIZATION_WITHOUT_AN_OWNER";
    assert_error!(carol.post(&org("update-member-role"), &role(&bob_member, "member")).await, 403, not_allowed);
    assert_error!(bob.post(&org("update-member-role"), &role(&carol_member, "owner")).await, 403, not_allowed);
    assert_error!(bob.post(&org("update-member-role"), &role(&alice_member, "member")).await, 403, not_allowed);
    assert_error!(alice.post(&org("update-member-role"), &role(&alice_member, "admin")).await, 400, no_owner);
    assert_error!(
        alice.post(&org("update-member-role"), &role(&carol_member, "superuser")).await,
        400,
        "ROLE_NOT_FOUND"
    );
    assert_error!(
        alice.post(&org("update-member-role"), &role("mem_doesnotexist", "admin")).await,
        400,
        "MEMBER_NOT_FOUND"
    );

    let by_admin = ok!(bob.post(&org("update-member-role"), &role(&carol_member, "admin")).await);
    assert_eq!(by_admin["id"], carol_member.as_str());
    assert_eq!(by_admin["userId"], carol.id.as_str());
    assert_eq!(by_admin["role"], "admin");
    let promoted = ok!(alice.post(&org("update-member-role"), &role(&bob_member, "owner")).await);
    assert_eq!(promoted["role"], "owner");
    // With a second owner, Alice may step down.
    let stepped_down = ok!(alice.post(&org("update-member-role"), &role(&alice_member, "member")).await);
    assert_eq!(stepped_down["role"], "member");
    assert_error!(bob.post(&org("update-member-role"), &role(&bob_member, "admin")).await, 400, no_owner);
    let listed = ok!(bob.get(&format!("{}?organizationId={acme_id}", org("list-members"))).await);
    let role_of = |user: &User| {
        listed["members"].as_array().unwrap().iter().find(|m| m["userId"] == user.id.as_str()).unwrap()["role"].clone()
    };
    assert_eq!((role_of(&alice), role_of(&bob), role_of(&carol)), (json!("member"), json!("owner"), json!("admin")));
}

async fn leaving_is_refused_to_the_last_owner_and_ends_tenant_access_at_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    let bob = user(&app, "bob@example.com").await;
    let bob_member = alice.add(&bob, &acme_id, "member").await;
    let key = bob.api_key(json!({"name": "bob's key"})).await;
    // Warm whatever the server caches about Bob's membership.
    key.check(Some(&acme_id)).await.assert_ok(&bob, "api-key", Some(&acme_id));
    key.check(Some("acme")).await.assert_ok(&bob, "api-key", Some(&acme_id));

    let refused = alice.post(&org("leave"), &json!({"organizationId": acme_id})).await;
    let body = assert_error!(refused, 400, "YOU_CANNOT_LEAVE_THE_ORGANIZATION_AS_THE_ONLY_OWNER");
    assert_eq!(body["message"], "You cannot leave the organization as the only owner");
    let left = ok!(bob.post(&org("leave"), &json!({"organizationId": acme_id})).await);

    assert_eq!(left["id"], bob_member.as_str());
    assert_eq!(left["userId"], bob.id.as_str());
    assert_eq!(left["organizationId"], acme_id.as_str());
    key.check(Some(&acme_id)).await.assert_denied();
    key.check(Some("acme")).await.assert_denied();
    let members = key.get(&format!("{}?organizationId={acme_id}", org("list-members")), None).await;
    assert_error!(members, 403, "YOU_ARE_NOT_A_MEMBER_OF_THIS_ORGANIZATION");
    assert_eq!(ok!(bob.get(&org("list")).await), json!([]));
    assert_eq!(alice.member_user_ids(&acme_id).await, [alice.id.as_str()]);
}

// ---------------------------------------------------------------------------------------------------------
// Tenant resolution (`GET /api/auth/check` and endpoints that need a tenant)

async fn check_with_a_session_reports_the_active_org(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme = alice.create_org("Acme", "acme").await;
    alice.check().await.assert_ok(&alice, "session", Some(&id(&acme)));

    let globex = alice.create_org("Globex", "globex").await;
    alice.check().await.assert_ok(&alice, "session", Some(&id(&globex)));

    ok!(alice.post(&org("set-active"), &json!({"organizationId": acme["id"]})).await);
    let check = alice.check().await;
    check.assert_ok(&alice, "session", Some(&id(&acme)));
    ok!(alice.mint_extension_token().await);
}

async fn a_user_without_an_org_passes_check_but_has_no_tenant(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let key = alice.api_key(json!({"name": "no org"})).await;

    alice.check().await.assert_ok(&alice, "session", None);
    key.check(None).await.assert_ok(&alice, "api-key", None);

    assert_no_org!(alice.mint_extension_token().await);
    assert_no_org!(key.post(EXTENSION_TOKEN, None, &json!({"extensionId": "ext", "scopes": ["read"]})).await);
    // The organization endpoints answer Better Auth's code instead.
    assert_error!(alice.get(&org("list-members")).await, 400, "NO_ACTIVE_ORGANIZATION");
    let invite = alice.post(&org("invite-member"), &json!({"email": "bob@example.com", "role": "member"})).await;
    assert_error!(invite, 400, "NO_ACTIVE_ORGANIZATION");
    assert_eq!(ok!(alice.get(&org("get-full-organization")).await), Value::Null);
    assert_eq!(ok!(alice.get(&org("list")).await), json!([]));
}

async fn a_session_without_an_active_org_falls_back_to_the_first_org_joined(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;
    // Bobco is the oldest org, but Alice joins it after creating Acme.
    let bobco = bob.create_org("Bobco", "bobco").await;
    app.clock.advance(HOUR);
    let acme = alice.create_org("Acme", "acme").await;
    app.clock.advance(HOUR);
    bob.add(&alice, &id(&bobco), "member").await;
    assert_eq!(alice.active_org().await, bobco["id"]);
    alice.check().await.assert_ok(&alice, "session", Some(&id(&bobco)));

    assert_eq!(ok!(alice.post(&org("set-active"), &json!({"organizationId": null})).await), Value::Null);

    assert_eq!(alice.active_org().await, Value::Null);
    alice.check().await.assert_ok(&alice, "session", Some(&id(&acme)));
    // The fallback is a real tenant: org endpoints and extension tokens act in it.
    let members = ok!(alice.get(&org("list-members")).await);
    assert_eq!(members["members"][0]["organizationId"], acme["id"]);
    ok!(alice.mint_extension_token().await);
}

async fn an_api_key_picks_its_tenant_from_x_tenant_id_by_id_or_slug(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    app.clock.advance(HOUR);
    let globex_id = id(&alice.create_org("Globex", "globex").await);
    let key = alice.api_key(json!({"name": "unscoped"})).await;

    key.check(Some(&acme_id)).await.assert_ok(&alice, "api-key", Some(&acme_id));
    key.check(Some(&globex_id)).await.assert_ok(&alice, "api-key", Some(&globex_id));
    key.check(Some("acme")).await.assert_ok(&alice, "api-key", Some(&acme_id));
    key.check(Some("globex")).await.assert_ok(&alice, "api-key", Some(&globex_id));

    // The header is the tenant for org endpoints too.
    let full = ok!(key.get(&org("get-full-organization"), Some("globex")).await);
    assert_eq!(full["id"], globex_id.as_str());
    let full = ok!(key.get(&org("get-full-organization"), Some(&acme_id)).await);
    assert_eq!(full["id"], acme_id.as_str());
}

async fn an_api_key_tenant_header_for_a_foreign_or_unknown_org_is_denied(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    alice.create_org("Acme", "acme").await;
    let bob = user(&app, "bob@example.com").await;
    let bobco_id = id(&bob.create_org("Bobco", "bobco").await);
    let key = alice.api_key(json!({"name": "unscoped"})).await;

    key.check(Some(&bobco_id)).await.assert_denied();
    key.check(Some("bobco")).await.assert_denied();
    key.check(Some("org_doesnotexist")).await.assert_denied();
    key.check(Some("no-such-slug")).await.assert_denied();
    // An organization endpoint answers Better Auth's codes for the same refusal.
    assert_error!(
        key.get(&org("list-members"), Some(&bobco_id)).await,
        403,
        "YOU_ARE_NOT_A_MEMBER_OF_THIS_ORGANIZATION"
    );
    assert_error!(key.get(&org("list-members"), Some("no-such-slug")).await, 400, "ORGANIZATION_NOT_FOUND");
    assert_denied!(key.post(EXTENSION_TOKEN, Some("bobco"), &json!({"extensionId": "ext", "scopes": ["read"]})).await);
}

async fn an_api_key_without_a_tenant_header_uses_its_org_then_the_first_org(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    app.clock.advance(HOUR);
    let globex_id = id(&alice.create_org("Globex", "globex").await);
    // Alice's session is in Globex; a key has no session, so that does not matter to it.
    assert_eq!(alice.active_org().await, globex_id.as_str());
    let scoped = alice.api_key(json!({"name": "globex", "organizationId": globex_id})).await;
    let unscoped = alice.api_key(json!({"name": "unscoped"})).await;

    scoped.check(None).await.assert_ok(&alice, "api-key", Some(&globex_id));
    unscoped.check(None).await.assert_ok(&alice, "api-key", Some(&acme_id));

    let full = ok!(unscoped.get(&org("get-full-organization"), None).await);
    assert_eq!(full["id"], acme_id.as_str());
    let full = ok!(scoped.get(&org("get-full-organization"), None).await);
    assert_eq!(full["id"], globex_id.as_str());
}

async fn an_org_scoped_key_refuses_every_other_tenant(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    let globex_id = id(&alice.create_org("Globex", "globex").await);
    let bob = user(&app, "bob@example.com").await;
    let bobco_id = id(&bob.create_org("Bobco", "bobco").await);
    let key = alice.api_key(json!({"name": "acme only", "organizationId": acme_id})).await;

    key.check(Some(&acme_id)).await.assert_ok(&alice, "api-key", Some(&acme_id));
    key.check(Some("acme")).await.assert_ok(&alice, "api-key", Some(&acme_id));

    // Alice is a member (the owner) of Globex, but this key is scoped to Acme.
    key.check(Some(&globex_id)).await.assert_denied();
    key.check(Some("globex")).await.assert_denied();
    key.check(Some(&bobco_id)).await.assert_denied();
    assert_denied!(key.get(&format!("{}?organizationId={globex_id}", org("list-members")), None).await);
    assert_denied!(key.get(&org("list-members"), Some(&globex_id)).await);
}

async fn key_permissions_limit_organization_writes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    let bob = user(&app, "bob@example.com").await;
    let carol = user(&app, "carol@example.com").await;
    let bob_member = alice.add(&bob, &acme_id, "member").await;
    let carol_member = alice.add(&carol, &acme_id, "member").await;
    let narrow = alice.api_key(json!({"name": "narrow", "permissions": {"member": ["create", "update"]}})).await;
    let deleter = alice.api_key(json!({"name": "deleter", "permissions": {"member": ["delete"]}})).await;
    let full = alice.api_key(json!({"name": "full"})).await;
    let remove = |member: &str| json!({"memberIdOrEmail": member, "organizationId": acme_id});

    let refused = narrow.post(&org("remove-member"), None, &remove(&bob_member)).await;
    assert_error!(refused, 403, "INSUFFICIENT_PERMISSIONS");
    let rename = json!({"data": {"name": "Renamed"}, "organizationId": acme_id});
    assert_error!(narrow.post(&org("update"), None, &rename).await, 403, "INSUFFICIENT_PERMISSIONS");
    assert_eq!(alice.member_user_ids(&acme_id).await.len(), 3);
    // Reads need nothing more.
    let listed = ok!(narrow.get(&format!("{}?organizationId={acme_id}", org("list-members")), None).await);
    assert_eq!(listed["total"], 3);

    let removed = ok!(deleter.post(&org("remove-member"), None, &remove(&bob_member)).await);
    assert_eq!(removed["member"]["userId"], bob.id.as_str());
    // A key without permissions acts as its owner.
    let removed = ok!(full.post(&org("remove-member"), Some(&acme_id), &remove(&carol_member)).await);
    assert_eq!(removed["member"]["userId"], carol.id.as_str());
    assert_eq!(alice.member_user_ids(&acme_id).await, [alice.id.as_str()]);
}

async fn set_active_needs_a_session(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = user(&app, "alice@example.com").await;
    let acme_id = id(&alice.create_org("Acme", "acme").await);
    let globex_id = id(&alice.create_org("Globex", "globex").await);
    let key = alice.api_key(json!({"name": "unscoped"})).await;

    let response = key.post(&org("set-active"), None, &json!({"organizationId": acme_id})).await;

    assert_error!(response, 403, "SESSION_REQUIRED");
    assert_error!(key.post(&org("set-active"), None, &json!({"organizationId": null})).await, 403, "SESSION_REQUIRED");
    assert_eq!(alice.active_org().await, globex_id.as_str());
}
