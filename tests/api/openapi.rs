//! The OpenAPI document against the running server. Every documented operation is called with real
//! requests, successes and typical errors; each answer's status must be documented for its operation,
//! its body must validate against the schema the document declares for that status (JSON Schema
//! 2020-12, `$ref`s resolved into the components, no field the schema does not describe), and so must
//! every request body the server accepted.
//! An operation the test never calls fails it, so a new endpoint cannot go undocumented-by-test.
//!
//! One backend (SQLite): the document is about shapes, which do not depend on the database.

use std::collections::{BTreeMap, BTreeSet};

use latchkey::paths;
use reqwest::{header, Client, Method, RequestBuilder};
use serde_json::{json, Value};

use crate::helpers::*;

const SCHEMA_REF: &str = "#/components/schemas/";
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Validates answers (and accepted request bodies) against the document; collects every mismatch.
struct Checker {
    doc: Value,
    /// `components.schemas` with their `$ref`s pointing at `#/$defs/…`, closed (see [`close_objects`]),
    /// and an open variant `Open<name>` of each.
    defs: Value,
    validators: BTreeMap<String, jsonschema::Validator>,
    exercised: BTreeSet<(String, String)>,
    failures: Vec<String>,
}

/// `#/components/schemas/X` → `#/$defs/X`, everywhere in `value`.
fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get_mut("$ref") {
                if let Some(name) = target.strip_prefix(SCHEMA_REF) {
                    *target = format!("#/$defs/{name}");
                }
            }
            map.values_mut().for_each(rewrite_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// Makes every object schema in `schema` refuse properties it does not describe (`unevaluatedProperties:
/// false`), so an answer with an undocumented field fails too. The parts of an `allOf` (serde's `flatten`)
/// stay open and their parent closes them; a `$ref` inside an `allOf` points at the open variant.
fn close_objects(schema: &mut Value, in_all_of: bool) {
    let Value::Object(map) = schema else { return };
    if let Some(Value::Array(parts)) = map.get_mut("allOf") {
        for part in parts.iter_mut() {
            match part.get_mut("$ref") {
                Some(Value::String(target)) => *target = target.replace("#/$defs/", "#/$defs/Open"),
                _ => close_objects(part, true),
            }
        }
        if !in_all_of {
            map.insert("unevaluatedProperties".into(), Value::Bool(false));
        }
    }
    if map.contains_key("properties") && !in_all_of {
        map.insert("unevaluatedProperties".into(), Value::Bool(false));
    }
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        properties.values_mut().for_each(|property| close_objects(property, false));
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = map.get_mut(key) {
            close_objects(inner, false);
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(choices)) = map.get_mut(key) {
            choices.iter_mut().for_each(|choice| close_objects(choice, false));
        }
    }
}

impl Checker {
    fn new(doc: Value) -> Checker {
        let mut schemas = doc["components"]["schemas"].clone();
        rewrite_refs(&mut schemas);
        let mut defs = serde_json::Map::new();
        for (name, schema) in schemas.as_object().unwrap() {
            let (mut closed, mut open) = (schema.clone(), schema.clone());
            close_objects(&mut closed, false);
            close_objects(&mut open, true);
            defs.insert(name.clone(), closed);
            defs.insert(format!("Open{name}"), open);
        }
        Checker {
            doc,
            defs: Value::Object(defs),
            validators: BTreeMap::new(),
            exercised: BTreeSet::new(),
            failures: Vec::new(),
        }
    }

    /// The operation object of `method template`, if documented.
    fn operation(&self, method: &str, template: &str) -> Option<&Value> {
        self.doc["paths"].get(template).and_then(|item| item.get(method))
    }

    /// Validates `instance` against `schema` (from the document), recording mismatches under `what`.
    fn validate(&mut self, what: &str, schema: &Value, instance: &Value) {
        let key = format!("{what}\n{schema}");
        if !self.validators.contains_key(&key) {
            let mut schema = schema.clone();
            rewrite_refs(&mut schema);
            close_objects(&mut schema, false);
            let root = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$defs": self.defs,
                "allOf": [schema],
            });
            match jsonschema::draft202012::new(&root) {
                Ok(validator) => {
                    self.validators.insert(key.clone(), validator);
                }
                Err(error) => {
                    self.failures.push(format!("{what}: the documented schema does not compile: {error}"));
                    return;
                }
            }
        }
        let errors: Vec<String> = self.validators[&key]
            .iter_errors(instance)
            .map(|error| format!("at `{}`: {error}", error.instance_path()))
            .collect();
        if !errors.is_empty() {
            self.failures.push(format!("{what}: {instance}\n    {}", errors.join("\n    ")));
        }
    }

    /// Sends `request` (an operation of `template`), checks the answer against the document and returns
    /// its status and body (JSON, or a string when it is not JSON).
    async fn send(&mut self, template: &str, request: RequestBuilder) -> (u16, Value) {
        let template = &documented(template);
        let (client, request) = request.build_split();
        let request = request.expect("request builds");
        let method = request.method().as_str().to_ascii_lowercase();
        let sent_json = request.body().and_then(|body| body.as_bytes()).and_then(|b| serde_json::from_slice(b).ok());
        let response = client.execute(request).await.expect("request");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().trim().to_owned());
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        let what = format!("{} {template} → {status}", method.to_uppercase());
        self.exercised.insert((method.clone(), template.to_owned()));

        let Some(operation) = self.operation(&method, template).cloned() else {
            self.failures.push(format!("{what}: the operation is not documented"));
            return (status, body);
        };
        if (200..300).contains(&status) {
            if let Some(sent) = &sent_json {
                match operation.pointer("/requestBody/content/application~1json/schema") {
                    Some(schema) => self.validate(&format!("{what}: request body"), &schema.clone(), sent),
                    None => self.failures.push(format!("{what}: accepted a JSON body that is not documented")),
                }
            }
        }
        let Some(documented) = operation["responses"].get(status.to_string()) else {
            self.failures.push(format!("{what}: status not documented: {text}"));
            return (status, body);
        };
        match (documented.get("content").and_then(Value::as_object), content_type) {
            (None, _) if text.is_empty() => {}
            (None, _) => self.failures.push(format!("{what}: answered a body, documents none: {text}")),
            (Some(_), None) => self.failures.push(format!("{what}: answered no content type")),
            (Some(content), Some(content_type)) => match content.get(&content_type) {
                None => self.failures.push(format!(
                    "{what}: answered {content_type}, documents {:?}",
                    content.keys().collect::<Vec<_>>()
                )),
                Some(media) if content_type == "application/json" => match media.get("schema") {
                    Some(schema) => self.validate(&what, &schema.clone(), &body),
                    None => assert!(serde_json::from_str::<Value>(&text).is_ok(), "{what}: not JSON"),
                },
                Some(_) => {}
            },
        }
        (status, body)
    }

    /// [`Checker::send`], asserting the status (later steps depend on it).
    async fn expect(&mut self, status: u16, template: &str, request: RequestBuilder) -> Value {
        let (answered, body) = self.send(template, request).await;
        assert_eq!(answered, status, "{template}: {body}");
        body
    }

    /// Documented operations the test never called.
    fn unexercised(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for (template, item) in self.doc["paths"].as_object().unwrap() {
            for method in METHODS {
                if item.get(method).is_some() && !self.exercised.contains(&(method.to_owned(), template.clone())) {
                    missing.push(format!("{} {template}", method.to_uppercase()));
                }
            }
        }
        missing
    }
}

/// A route template as the document names it: axum's catch-all `{*path}` is `{path}` there.
fn documented(template: &str) -> String {
    template.replace("{*", "{")
}

/// A concrete path for a template (`{id}` → `x`), for requests refused before routing to a resource.
fn concrete(template: &str) -> String {
    template.replace("{id}", "x").replace("{vendorId}", "x")
}

fn with_master(settings: &mut latchkey::config::Settings) {
    settings.debug_endpoints = true;
    with_master_credentials(settings);
}

/// A signed-up user on a fresh cookie-aware client.
async fn sign_up_on(checker: &mut Checker, app: &TestApp, email: &str) -> Client {
    let client = new_client();
    let body = json!({"name": "Test User", "email": email, "password": PASSWORD});
    let request = client.post(app.url(paths::SIGN_UP_EMAIL)).header(header::ORIGIN, ORIGIN).json(&body);
    checker.expect(200, paths::SIGN_UP_EMAIL, request).await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_answers_as_documented() {
    let app = spawn_app_with(Backend::Sqlite, with_master).await.unwrap();
    let doc: Value = app.get(paths::OPENAPI).await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "JSON Schema 2020-12 needs OpenAPI 3.1");
    let mut c = Checker::new(doc);
    let bare = bare_client();
    let url = |path: &str| app.url(path);
    // A cookie-authenticated, state-changing request from a trusted origin.
    let post = |client: &Client, path: &str, body: Value| {
        client.post(app.url(path)).header(header::ORIGIN, ORIGIN).json(&body)
    };

    // --- ops
    c.expect(200, paths::OPENAPI, bare.get(url(paths::OPENAPI))).await;
    c.expect(200, paths::HEALTHZ, bare.get(url(paths::HEALTHZ))).await;
    c.expect(200, paths::READYZ, bare.get(url(paths::READYZ))).await;
    c.expect(200, paths::METRICS, bare.get(url(paths::METRICS))).await;

    // --- accounts
    let alice = app.client.clone();
    let signed_up = c
        .expect(
            200,
            paths::SIGN_UP_EMAIL,
            post(
                &alice,
                paths::SIGN_UP_EMAIL,
                json!({"name": "Alice", "email": "alice@example.com", "password": PASSWORD, "image": null,
                    "callbackURL": "/home", "rememberMe": true}),
            ),
        )
        .await;
    let alice_id = signed_up["user"]["id"].as_str().unwrap().to_owned();
    c.expect(
        422,
        paths::SIGN_UP_EMAIL,
        post(&bare, paths::SIGN_UP_EMAIL, json!({"name": "A", "email": "alice@example.com", "password": PASSWORD})),
    )
    .await;
    c.expect(
        400,
        paths::SIGN_UP_EMAIL,
        post(&bare, paths::SIGN_UP_EMAIL, json!({"name": "A", "email": "nope", "password": PASSWORD})),
    )
    .await;
    c.expect(
        403,
        paths::SIGN_UP_EMAIL,
        bare.post(url(paths::SIGN_UP_EMAIL))
            .header(header::ORIGIN, "https://evil.example")
            .json(&json!({"name": "A", "email": "x@example.com", "password": PASSWORD})),
    )
    .await;
    c.expect(
        200,
        paths::SIGN_IN_EMAIL,
        post(
            &new_client(),
            paths::SIGN_IN_EMAIL,
            json!({"email": "alice@example.com", "password": PASSWORD, "callbackURL": "/next"}),
        ),
    )
    .await;
    c.expect(
        401,
        paths::SIGN_IN_EMAIL,
        post(&bare, paths::SIGN_IN_EMAIL, json!({"email": "alice@example.com", "password": "wrong password!"})),
    )
    .await;

    // --- social sign-in (no provider configured here; tests/api/social.rs drives the flows end to end)
    c.expect(404, paths::SIGN_IN_SOCIAL, post(&bare, paths::SIGN_IN_SOCIAL, json!({"provider": "google"}))).await;
    c.expect(
        403,
        paths::SIGN_IN_SOCIAL,
        bare.post(url(paths::SIGN_IN_SOCIAL))
            .header(header::ORIGIN, "https://evil.example")
            .json(&json!({"provider": "x"})),
    )
    .await;
    c.expect(400, paths::SOCIAL_CALLBACK, bare.get(url("/api/auth/callback/google?code=x&state=y"))).await;
    let accounts = c.expect(200, paths::LIST_ACCOUNTS, alice.get(url(paths::LIST_ACCOUNTS))).await;
    assert_eq!(accounts[0]["providerId"], "credential");
    c.expect(401, paths::LIST_ACCOUNTS, bare.get(url(paths::LIST_ACCOUNTS))).await;
    let last = json!({"providerId": "credential"});
    c.expect(400, paths::UNLINK_ACCOUNT, post(&alice, paths::UNLINK_ACCOUNT, last.clone())).await;
    c.expect(401, paths::UNLINK_ACCOUNT, post(&bare, paths::UNLINK_ACCOUNT, last)).await;

    // --- sessions
    let session = c.expect(200, paths::GET_SESSION, alice.get(url(paths::GET_SESSION))).await;
    assert_eq!(session["user"]["id"], alice_id);
    assert!(c.expect(200, paths::GET_SESSION, bare.get(url(paths::GET_SESSION))).await.is_null());
    let sessions = c.expect(200, paths::LIST_SESSIONS, alice.get(url(paths::LIST_SESSIONS))).await;
    assert_eq!(sessions.as_array().unwrap().len(), 2, "sign-up and sign-in");
    c.expect(401, paths::LIST_SESSIONS, bare.get(url(paths::LIST_SESSIONS))).await;
    let api_session = c.expect(200, paths::API_SESSION, alice.get(url(paths::API_SESSION))).await;
    assert!(api_session["data"].is_object());
    assert!(c.expect(200, paths::API_SESSION, bare.get(url(paths::API_SESSION))).await["data"].is_null());
    c.expect(200, paths::DEBUG_SESSION, alice.get(url(paths::DEBUG_SESSION))).await;
    c.expect(401, paths::DEBUG_SESSION, bare.get(url(paths::DEBUG_SESSION))).await;
    let other =
        sessions.as_array().unwrap().iter().find(|s| s["id"] != session["session"]["id"]).unwrap()["token"].clone();
    c.expect(200, paths::REVOKE_SESSION, post(&alice, paths::REVOKE_SESSION, json!({"token": other}))).await;
    c.expect(404, paths::REVOKE_SESSION, post(&alice, paths::REVOKE_SESSION, json!({"token": "ses_unknown"}))).await;
    c.expect(403, paths::REVOKE_SESSION, alice.post(url(paths::REVOKE_SESSION)).json(&json!({"token": "ses_unknown"})))
        .await;
    c.expect(401, paths::REVOKE_SESSION, post(&bare, paths::REVOKE_SESSION, json!({"token": "ses_unknown"}))).await;
    c.expect(
        200,
        paths::REVOKE_OTHER_SESSIONS,
        alice.post(url(paths::REVOKE_OTHER_SESSIONS)).header(header::ORIGIN, ORIGIN),
    )
    .await;
    c.expect(401, paths::REVOKE_OTHER_SESSIONS, bare.post(url(paths::REVOKE_OTHER_SESSIONS))).await;

    // --- organizations
    let org = c
        .expect(
            200,
            paths::ORG_CREATE,
            post(&alice, paths::ORG_CREATE, json!({"name": "Acme", "slug": "acme", "metadata": {"plan": "pro"}})),
        )
        .await;
    let org_id = org["id"].as_str().unwrap().to_owned();
    c.expect(400, paths::ORG_CREATE, post(&alice, paths::ORG_CREATE, json!({"name": "Acme", "slug": "Not A Slug"})))
        .await;
    c.expect(401, paths::ORG_CREATE, post(&bare, paths::ORG_CREATE, json!({"name": "Acme", "slug": "acme2"}))).await;
    c.expect(
        200,
        paths::ORG_UPDATE,
        post(&alice, paths::ORG_UPDATE, json!({"data": {"name": "Acme Inc", "logo": "https://acme.example/logo.png"}})),
    )
    .await;
    c.expect(200, paths::ORG_LIST, alice.get(url(paths::ORG_LIST))).await;
    c.expect(401, paths::ORG_LIST, bare.get(url(paths::ORG_LIST))).await;
    c.expect(200, paths::ORG_CHECK_SLUG, post(&alice, paths::ORG_CHECK_SLUG, json!({"slug": "free-slug"}))).await;
    c.expect(400, paths::ORG_CHECK_SLUG, post(&alice, paths::ORG_CHECK_SLUG, json!({"slug": "acme"}))).await;
    assert!(c
        .expect(200, paths::ORG_SET_ACTIVE, post(&alice, paths::ORG_SET_ACTIVE, json!({"organizationId": null})))
        .await
        .is_null());
    c.expect(200, paths::ORG_SET_ACTIVE, post(&alice, paths::ORG_SET_ACTIVE, json!({"organizationId": org_id}))).await;
    c.expect(400, paths::ORG_SET_ACTIVE, post(&alice, paths::ORG_SET_ACTIVE, json!({}))).await;
    c.expect(200, paths::ORG_GET_FULL, alice.get(url(&format!("{}?organizationId={org_id}", paths::ORG_GET_FULL))))
        .await;
    c.expect(401, paths::ORG_GET_FULL, bare.get(url(paths::ORG_GET_FULL))).await;
    c.expect(200, paths::ORG_LIST_MEMBERS, alice.get(url(&format!("{}?limit=10", paths::ORG_LIST_MEMBERS)))).await;
    c.expect(400, paths::ORG_LIST_MEMBERS, alice.get(url(&format!("{}?limit=ten", paths::ORG_LIST_MEMBERS)))).await;

    // Invitations: bob accepts, carol rejects, dave's is canceled.
    let invite = |email: &str| post(&alice, paths::ORG_INVITE_MEMBER, json!({"email": email, "role": "member"}));
    let bob_invitation = c.expect(200, paths::ORG_INVITE_MEMBER, invite("bob@example.com")).await;
    c.expect(400, paths::ORG_INVITE_MEMBER, invite("bob@example.com")).await;
    let carol_invitation = c.expect(200, paths::ORG_INVITE_MEMBER, invite("carol@example.com")).await;
    let dave_invitation = c.expect(200, paths::ORG_INVITE_MEMBER, invite("dave@example.com")).await;
    let bob = sign_up_on(&mut c, &app, "bob@example.com").await;
    let carol = sign_up_on(&mut c, &app, "carol@example.com").await;
    c.expect(
        403,
        paths::ORG_ACCEPT_INVITATION,
        post(&carol, paths::ORG_ACCEPT_INVITATION, json!({"invitationId": bob_invitation["id"]})),
    )
    .await;
    c.expect(
        400,
        paths::ORG_ACCEPT_INVITATION,
        post(&bob, paths::ORG_ACCEPT_INVITATION, json!({"invitationId": "inv_unknown"})),
    )
    .await;
    let accepted = c
        .expect(
            200,
            paths::ORG_ACCEPT_INVITATION,
            post(&bob, paths::ORG_ACCEPT_INVITATION, json!({"invitationId": bob_invitation["id"]})),
        )
        .await;
    let bob_member_id = accepted["member"]["id"].clone();
    // The endpoints Better Auth's organization client calls besides.
    c.expect(200, paths::ORG_GET_ACTIVE_MEMBER, alice.get(url(paths::ORG_GET_ACTIVE_MEMBER))).await;
    c.expect(400, paths::ORG_GET_ACTIVE_MEMBER, carol.get(url(paths::ORG_GET_ACTIVE_MEMBER))).await;
    c.expect(401, paths::ORG_GET_ACTIVE_MEMBER, bare.get(url(paths::ORG_GET_ACTIVE_MEMBER))).await;
    c.expect(200, paths::ORG_GET_ACTIVE_MEMBER_ROLE, alice.get(url(paths::ORG_GET_ACTIVE_MEMBER_ROLE))).await;
    c.expect(401, paths::ORG_GET_ACTIVE_MEMBER_ROLE, bare.get(url(paths::ORG_GET_ACTIVE_MEMBER_ROLE))).await;
    let invitations = format!("{}?organizationId={org_id}", paths::ORG_LIST_INVITATIONS);
    c.expect(200, paths::ORG_LIST_INVITATIONS, alice.get(url(&invitations))).await;
    c.expect(403, paths::ORG_LIST_INVITATIONS, bob.get(url(&invitations))).await;
    c.expect(401, paths::ORG_LIST_INVITATIONS, bare.get(url(&invitations))).await;
    c.expect(200, paths::ORG_LIST_USER_INVITATIONS, carol.get(url(paths::ORG_LIST_USER_INVITATIONS))).await;
    c.expect(401, paths::ORG_LIST_USER_INVITATIONS, bare.get(url(paths::ORG_LIST_USER_INVITATIONS))).await;
    c.expect(
        400,
        paths::ORG_ACCEPT_INVITATION,
        post(&bob, paths::ORG_ACCEPT_INVITATION, json!({"invitationId": bob_invitation["id"]})),
    )
    .await;
    c.expect(
        200,
        paths::ORG_REJECT_INVITATION,
        post(&carol, paths::ORG_REJECT_INVITATION, json!({"invitationId": carol_invitation["id"]})),
    )
    .await;
    c.expect(
        400,
        paths::ORG_REJECT_INVITATION,
        post(&carol, paths::ORG_REJECT_INVITATION, json!({"invitationId": "inv_unknown"})),
    )
    .await;
    c.expect(
        403,
        paths::ORG_CANCEL_INVITATION,
        post(&bob, paths::ORG_CANCEL_INVITATION, json!({"invitationId": dave_invitation["id"]})),
    )
    .await;
    c.expect(
        200,
        paths::ORG_CANCEL_INVITATION,
        post(&alice, paths::ORG_CANCEL_INVITATION, json!({"invitationId": dave_invitation["id"]})),
    )
    .await;
    c.expect(
        400,
        paths::ORG_CANCEL_INVITATION,
        post(&alice, paths::ORG_CANCEL_INVITATION, json!({"invitationId": "inv_unknown"})),
    )
    .await;
    c.expect(
        403,
        paths::ORG_UPDATE,
        post(&bob, paths::ORG_UPDATE, json!({"organizationId": org_id, "data": {"name": "Mine"}})),
    )
    .await;
    c.expect(403, paths::ORG_DELETE, post(&bob, paths::ORG_DELETE, json!({"organizationId": org_id}))).await;
    c.expect(
        200,
        paths::ORG_UPDATE_MEMBER_ROLE,
        post(&alice, paths::ORG_UPDATE_MEMBER_ROLE, json!({"memberId": bob_member_id, "role": "admin"})),
    )
    .await;
    c.expect(
        400,
        paths::ORG_UPDATE_MEMBER_ROLE,
        post(&alice, paths::ORG_UPDATE_MEMBER_ROLE, json!({"memberId": bob_member_id, "role": "emperor"})),
    )
    .await;
    c.expect(
        400,
        paths::ORG_UPDATE_MEMBER_ROLE,
        post(&alice, paths::ORG_UPDATE_MEMBER_ROLE, json!({"memberId": "mem_unknown", "role": "admin"})),
    )
    .await;
    c.expect(400, paths::ORG_UPDATE, post(&carol, paths::ORG_UPDATE, json!({"data": {"name": "Mine"}}))).await;
    c.expect(200, paths::ORG_LEAVE, post(&bob, paths::ORG_LEAVE, json!({"organizationId": org_id}))).await;
    c.expect(400, paths::ORG_LEAVE, post(&alice, paths::ORG_LEAVE, json!({"organizationId": org_id}))).await;
    let again = c.expect(200, paths::ORG_INVITE_MEMBER, invite("bob@example.com")).await;
    c.expect(
        200,
        paths::ORG_ACCEPT_INVITATION,
        post(&bob, paths::ORG_ACCEPT_INVITATION, json!({"invitationId": again["id"]})),
    )
    .await;
    c.expect(
        200,
        paths::ORG_REMOVE_MEMBER,
        post(&alice, paths::ORG_REMOVE_MEMBER, json!({"memberIdOrEmail": "bob@example.com", "organizationId": org_id})),
    )
    .await;
    c.expect(
        400,
        paths::ORG_REMOVE_MEMBER,
        post(&alice, paths::ORG_REMOVE_MEMBER, json!({"memberIdOrEmail": "bob@example.com"})),
    )
    .await;
    let doomed =
        c.expect(200, paths::ORG_CREATE, post(&bob, paths::ORG_CREATE, json!({"name": "Temp", "slug": "temp"}))).await;
    c.expect(400, paths::ORG_DELETE, post(&alice, paths::ORG_DELETE, json!({"organizationId": doomed["id"]}))).await;
    c.expect(200, paths::ORG_DELETE, post(&bob, paths::ORG_DELETE, json!({"organizationId": doomed["id"]}))).await;

    // --- API keys (alice's active organization is Acme)
    let created = c
        .expect(
            200,
            paths::API_KEY_CREATE,
            post(&alice, paths::API_KEY_CREATE, json!({"name": "ci", "expiresIn": 3600, "metadata": {"team": "a"}})),
        )
        .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["id"].as_str().unwrap().to_owned();
    let scoped = c
        .expect(
            200,
            paths::API_KEY_CREATE,
            post(
                &alice,
                paths::API_KEY_CREATE,
                json!({"organizationId": org_id, "permissions": {"extensions": ["read"]}, "metadata": ["any", "json"]}),
            ),
        )
        .await;
    c.expect(400, paths::API_KEY_CREATE, post(&alice, paths::API_KEY_CREATE, json!({"prefix": "lkc_"}))).await;
    c.expect(401, paths::API_KEY_CREATE, post(&bare, paths::API_KEY_CREATE, json!({}))).await;
    c.expect(
        403,
        paths::API_KEY_CREATE,
        bare.post(url(paths::API_KEY_CREATE)).header("x-api-key", &key).json(&json!({})),
    )
    .await;
    c.expect(200, paths::API_KEY_GET, alice.get(url(&format!("{}?id={key_id}", paths::API_KEY_GET)))).await;
    c.expect(404, paths::API_KEY_GET, alice.get(url(&format!("{}?id=key_unknown", paths::API_KEY_GET)))).await;
    c.expect(400, paths::API_KEY_GET, alice.get(url(paths::API_KEY_GET))).await;
    c.expect(401, paths::API_KEY_GET, bare.get(url(&format!("{}?id={key_id}", paths::API_KEY_GET)))).await;
    c.expect(200, paths::API_KEY_LIST, alice.get(url(paths::API_KEY_LIST))).await;
    c.expect(200, paths::API_KEY_LIST, bare.get(url(paths::API_KEY_LIST)).header("x-api-key", &key)).await;
    // A key in place of a session: get-session answers a session view of the key.
    c.expect(200, paths::GET_SESSION, bare.get(url(paths::GET_SESSION)).header("x-api-key", &key)).await;
    c.expect(401, paths::GET_SESSION, bare.get(url(paths::GET_SESSION)).header("x-api-key", "lk_unknown")).await;
    c.expect(401, paths::API_KEY_LIST, bare.get(url(paths::API_KEY_LIST))).await;
    c.expect(
        200,
        paths::API_KEY_UPDATE,
        post(
            &alice,
            paths::API_KEY_UPDATE,
            json!({"keyId": key_id, "name": "ci-2", "enabled": true, "metadata": "a string"}),
        ),
    )
    .await;
    c.expect(404, paths::API_KEY_UPDATE, post(&alice, paths::API_KEY_UPDATE, json!({"keyId": "key_unknown"}))).await;
    c.expect(401, paths::API_KEY_UPDATE, post(&bare, paths::API_KEY_UPDATE, json!({"keyId": key_id}))).await;
    let valid = c.expect(200, paths::API_KEY_VERIFY, post(&bare, paths::API_KEY_VERIFY, json!({"key": key}))).await;
    assert_eq!(valid["valid"], true);
    let refused = c
        .expect(
            200,
            paths::API_KEY_VERIFY,
            post(&bare, paths::API_KEY_VERIFY, json!({"key": key, "permissions": {"files": ["write"]}})),
        )
        .await;
    assert_eq!(refused["valid"], false);
    let unknown =
        c.expect(200, paths::API_KEY_VERIFY, post(&bare, paths::API_KEY_VERIFY, json!({"key": "lk_unknown"}))).await;
    assert_eq!(unknown["error"]["code"], "KEY_NOT_FOUND");
    c.expect(400, paths::API_KEY_VERIFY, post(&bare, paths::API_KEY_VERIFY, json!({}))).await;

    // --- forward auth and extension tokens
    c.expect(200, paths::AUTH_CHECK, alice.get(url(paths::AUTH_CHECK))).await;
    c.expect(200, paths::AUTH_CHECK, bare.get(url(paths::AUTH_CHECK)).header("x-api-key", &key)).await;
    c.expect(401, paths::AUTH_CHECK, bare.get(url(paths::AUTH_CHECK))).await;
    let minted = c
        .expect(
            200,
            paths::EXTENSION_TOKEN,
            post(
                &alice,
                paths::EXTENSION_TOKEN,
                json!({"extensionId": "crm.notes", "scopes": ["read"], "ttlSeconds": 60}),
            ),
        )
        .await;
    let token = minted["token"].as_str().unwrap().to_owned();
    c.expect(
        200,
        paths::EXTENSION_TOKEN,
        post(&alice, paths::EXTENSION_TOKEN, json!({"extensionId": "crm.notes", "scopes": "read write"})),
    )
    .await;
    c.expect(
        400,
        paths::EXTENSION_TOKEN,
        post(&alice, paths::EXTENSION_TOKEN, json!({"extensionId": "crm.notes", "scopes": "read", "ttlSeconds": 901})),
    )
    .await;
    c.expect(
        401,
        paths::EXTENSION_TOKEN,
        post(&bare, paths::EXTENSION_TOKEN, json!({"extensionId": "crm.notes", "scopes": "read"})),
    )
    .await;
    c.expect(
        403,
        paths::EXTENSION_TOKEN,
        bare.post(url(paths::EXTENSION_TOKEN))
            .header("x-api-key", scoped["key"].as_str().unwrap())
            .json(&json!({"extensionId": "crm.notes", "scopes": "write"})),
    )
    .await;
    c.expect(200, paths::AUTH_CHECK, bare.get(url(paths::AUTH_CHECK)).bearer_auth(&token)).await;
    c.expect(
        200,
        paths::EXTENSION_VERIFY,
        post(&bare, paths::EXTENSION_VERIFY, json!({"token": token, "scopes": ["read"]})),
    )
    .await;
    c.expect(
        403,
        paths::EXTENSION_VERIFY,
        post(&bare, paths::EXTENSION_VERIFY, json!({"token": token, "scopes": "write"})),
    )
    .await;
    c.expect(401, paths::EXTENSION_VERIFY, post(&bare, paths::EXTENSION_VERIFY, json!({"token": "not.a.token"}))).await;

    // --- API key deletion (after the key served above)
    c.expect(200, paths::API_KEY_DELETE, post(&alice, paths::API_KEY_DELETE, json!({"keyId": key_id}))).await;
    c.expect(404, paths::API_KEY_DELETE, post(&alice, paths::API_KEY_DELETE, json!({"keyId": key_id}))).await;
    c.expect(401, paths::API_KEY_DELETE, post(&bare, paths::API_KEY_DELETE, json!({"keyId": key_id}))).await;

    // --- service tokens
    let master =
        |method: Method, path: &str| bare.request(method, url(path)).basic_auth(MASTER_USER, Some(MASTER_PASSWORD));
    let client = c
        .expect(201, paths::V1_CLIENTS, master(Method::POST, paths::V1_CLIENTS).json(&json!({"name": "backend"})))
        .await;
    let client_id = client["clientId"].as_str().unwrap().to_owned();
    let live =
        c.expect(201, paths::V1_CLIENTS, master(Method::POST, paths::V1_CLIENTS).json(&json!({"name": "live"}))).await;
    let live_key = live["apiKey"].as_str().unwrap().to_owned();
    c.expect(400, paths::V1_CLIENTS, master(Method::POST, paths::V1_CLIENTS).json(&json!({"name": ""}))).await;
    c.expect(401, paths::V1_CLIENTS, bare.post(url(paths::V1_CLIENTS)).json(&json!({"name": "backend"}))).await;
    c.expect(200, paths::V1_CLIENTS, master(Method::GET, paths::V1_CLIENTS)).await;
    c.expect(401, paths::V1_CLIENTS, bare.get(url(paths::V1_CLIENTS))).await;
    let client_path = paths::V1_CLIENT_ROTATE_KEY.replace("{id}", &client_id);
    let rotated = c.expect(200, paths::V1_CLIENT_ROTATE_KEY, master(Method::POST, &client_path)).await;
    c.expect(404, paths::V1_CLIENT_ROTATE_KEY, master(Method::POST, &concrete(paths::V1_CLIENT_ROTATE_KEY))).await;
    let client_key = rotated["apiKey"].as_str().unwrap().to_owned();
    let with_key = |method: Method, path: &str| bare.request(method, url(path)).header("x-api-key", &client_key);
    let user = c
        .expect(
            201,
            paths::V1_USERS,
            with_key(Method::POST, paths::V1_USERS).json(&json!({"externalId": "u-1", "name": "User One"})),
        )
        .await;
    c.expect(201, paths::V1_USERS, with_key(Method::POST, paths::V1_USERS)).await;
    c.expect(409, paths::V1_USERS, with_key(Method::POST, paths::V1_USERS).json(&json!({"externalId": "u-1"}))).await;
    c.expect(400, paths::V1_USERS, with_key(Method::POST, paths::V1_USERS).json(&json!({"externalId": ""}))).await;
    c.expect(401, paths::V1_USERS, bare.post(url(paths::V1_USERS)).json(&json!({}))).await;
    c.expect(200, paths::V1_USERS, with_key(Method::GET, &format!("{}?limit=5", paths::V1_USERS))).await;
    c.expect(400, paths::V1_USERS, with_key(Method::GET, &format!("{}?limit=five", paths::V1_USERS))).await;
    c.expect(401, paths::V1_USERS, bare.get(url(paths::V1_USERS))).await;
    let credentials = json!({"userId": user["userId"], "secret": user["secret"]});
    let issued = c.expect(200, paths::V1_TOKEN, with_key(Method::POST, paths::V1_TOKEN).json(&credentials)).await;
    let service_token = issued["accessToken"].as_str().unwrap().to_owned();
    c.expect(
        401,
        paths::V1_TOKEN,
        with_key(Method::POST, paths::V1_TOKEN).json(&json!({"userId": user["userId"], "secret": "lks_wrong"})),
    )
    .await;
    c.expect(200, paths::V1_ME, bare.get(url(paths::V1_ME)).bearer_auth(&service_token)).await;
    c.expect(401, paths::V1_ME, bare.get(url(paths::V1_ME))).await;
    c.expect(200, paths::AUTH_CHECK, bare.get(url(paths::AUTH_CHECK)).bearer_auth(&service_token)).await;
    c.expect(
        200,
        paths::V1_TOKEN_REVOKE,
        with_key(Method::POST, paths::V1_TOKEN_REVOKE).json(&json!({"token": service_token})),
    )
    .await;
    c.expect(
        401,
        paths::V1_TOKEN_REVOKE,
        bare.post(url(paths::V1_TOKEN_REVOKE)).json(&json!({"token": service_token})),
    )
    .await;
    c.expect(200, paths::JWKS, bare.get(url(paths::JWKS))).await;
    let user_path = paths::V1_USER.replace("{id}", user["userId"].as_str().unwrap());
    c.expect(200, paths::V1_USER, with_key(Method::DELETE, &user_path)).await;
    c.expect(404, paths::V1_USER, with_key(Method::DELETE, &user_path)).await;
    c.expect(401, paths::V1_USER, bare.delete(url(&user_path))).await;
    let client_path = paths::V1_CLIENT.replace("{id}", &client_id);
    c.expect(200, paths::V1_CLIENT, master(Method::DELETE, &client_path)).await;
    c.expect(404, paths::V1_CLIENT, master(Method::DELETE, &client_path)).await;
    c.expect(401, paths::V1_CLIENT, bare.delete(url(&client_path))).await;

    // --- management API (master credentials)
    let created = c
        .expect(
            201,
            paths::MGMT_CLIENTS,
            master(Method::POST, paths::MGMT_CLIENTS)
                .json(&json!({"name": "Web", "app_type": "regular_web", "callbacks": ["https://app.example.com/cb"]})),
        )
        .await;
    let oauth_id = created["client_id"].as_str().unwrap().to_owned();
    let spa = c
        .expect(
            201,
            paths::MGMT_CLIENTS,
            master(Method::POST, paths::MGMT_CLIENTS).json(&json!({"name": "SPA", "app_type": "spa"})),
        )
        .await;
    c.expect(400, paths::MGMT_CLIENTS, master(Method::POST, paths::MGMT_CLIENTS).json(&json!({"name": "x"}))).await;
    c.expect(401, paths::MGMT_CLIENTS, bare.post(url(paths::MGMT_CLIENTS)).json(&json!({"name": "x"}))).await;
    c.expect(200, paths::MGMT_CLIENTS, master(Method::GET, paths::MGMT_CLIENTS)).await;
    c.expect(200, paths::MGMT_CLIENTS, master(Method::GET, &format!("{}?include_totals=true", paths::MGMT_CLIENTS)))
        .await;
    c.expect(400, paths::MGMT_CLIENTS, master(Method::GET, &format!("{}?per_page=many", paths::MGMT_CLIENTS))).await;
    c.expect(401, paths::MGMT_CLIENTS, bare.get(url(paths::MGMT_CLIENTS))).await;
    let oauth_path = paths::MGMT_CLIENT.replace("{id}", &oauth_id);
    c.expect(200, paths::MGMT_CLIENT, master(Method::GET, &oauth_path)).await;
    c.expect(404, paths::MGMT_CLIENT, master(Method::GET, &concrete(paths::MGMT_CLIENT))).await;
    c.expect(401, paths::MGMT_CLIENT, bare.get(url(&oauth_path))).await;
    c.expect(200, paths::MGMT_CLIENT, master(Method::PATCH, &oauth_path).json(&json!({"name": "Web 2"}))).await;
    c.expect(400, paths::MGMT_CLIENT, master(Method::PATCH, &oauth_path).json(&json!({"app_type": "spa"}))).await;
    c.expect(404, paths::MGMT_CLIENT, master(Method::PATCH, &concrete(paths::MGMT_CLIENT)).json(&json!({}))).await;
    c.expect(401, paths::MGMT_CLIENT, bare.patch(url(&oauth_path)).json(&json!({}))).await;
    let rotate_path = paths::MGMT_CLIENT_ROTATE_SECRET.replace("{id}", &oauth_id);
    c.expect(200, paths::MGMT_CLIENT_ROTATE_SECRET, master(Method::POST, &rotate_path)).await;
    let spa_rotate = paths::MGMT_CLIENT_ROTATE_SECRET.replace("{id}", spa["client_id"].as_str().unwrap());
    c.expect(400, paths::MGMT_CLIENT_ROTATE_SECRET, master(Method::POST, &spa_rotate)).await;
    c.expect(404, paths::MGMT_CLIENT_ROTATE_SECRET, master(Method::POST, &concrete(paths::MGMT_CLIENT_ROTATE_SECRET)))
        .await;
    c.expect(401, paths::MGMT_CLIENT_ROTATE_SECRET, bare.post(url(&rotate_path))).await;
    let api = c
        .expect(
            201,
            paths::MGMT_RESOURCE_SERVERS,
            master(Method::POST, paths::MGMT_RESOURCE_SERVERS)
                .json(&json!({"name": "Orders", "identifier": "https://orders", "scopes": [{"value": "read:orders"}]})),
        )
        .await;
    let api_id = api["id"].as_str().unwrap().to_owned();
    let api_json = json!({"name": "Again", "identifier": "https://orders"});
    c.expect(409, paths::MGMT_RESOURCE_SERVERS, master(Method::POST, paths::MGMT_RESOURCE_SERVERS).json(&api_json))
        .await;
    c.expect(400, paths::MGMT_RESOURCE_SERVERS, master(Method::POST, paths::MGMT_RESOURCE_SERVERS).json(&json!({})))
        .await;
    c.expect(401, paths::MGMT_RESOURCE_SERVERS, bare.post(url(paths::MGMT_RESOURCE_SERVERS)).json(&api_json)).await;
    c.expect(200, paths::MGMT_RESOURCE_SERVERS, master(Method::GET, paths::MGMT_RESOURCE_SERVERS)).await;
    let with_totals = format!("{}?include_totals=true", paths::MGMT_RESOURCE_SERVERS);
    c.expect(200, paths::MGMT_RESOURCE_SERVERS, master(Method::GET, &with_totals)).await;
    let bad_page = format!("{}?page=first", paths::MGMT_RESOURCE_SERVERS);
    c.expect(400, paths::MGMT_RESOURCE_SERVERS, master(Method::GET, &bad_page)).await;
    c.expect(401, paths::MGMT_RESOURCE_SERVERS, bare.get(url(paths::MGMT_RESOURCE_SERVERS))).await;
    let api_path = paths::MGMT_RESOURCE_SERVER.replace("{id}", &api_id);
    c.expect(200, paths::MGMT_RESOURCE_SERVER, master(Method::GET, &api_path)).await;
    c.expect(404, paths::MGMT_RESOURCE_SERVER, master(Method::GET, &concrete(paths::MGMT_RESOURCE_SERVER))).await;
    c.expect(401, paths::MGMT_RESOURCE_SERVER, bare.get(url(&api_path))).await;
    c.expect(200, paths::MGMT_RESOURCE_SERVER, master(Method::PATCH, &api_path).json(&json!({"name": "Orders 2"})))
        .await;
    let system_api = paths::MGMT_RESOURCE_SERVER.replace("{id}", "api_management");
    c.expect(400, paths::MGMT_RESOURCE_SERVER, master(Method::PATCH, &system_api).json(&json!({}))).await;
    let missing_api = concrete(paths::MGMT_RESOURCE_SERVER);
    c.expect(404, paths::MGMT_RESOURCE_SERVER, master(Method::PATCH, &missing_api).json(&json!({}))).await;
    c.expect(401, paths::MGMT_RESOURCE_SERVER, bare.patch(url(&api_path)).json(&json!({}))).await;
    let grant_json = json!({"client_id": oauth_id, "audience": "https://orders", "scope": ["read:orders"]});
    let grant = c
        .expect(201, paths::MGMT_CLIENT_GRANTS, master(Method::POST, paths::MGMT_CLIENT_GRANTS).json(&grant_json))
        .await;
    c.expect(409, paths::MGMT_CLIENT_GRANTS, master(Method::POST, paths::MGMT_CLIENT_GRANTS).json(&grant_json)).await;
    let undefined = json!({"client_id": oauth_id, "audience": "https://orders", "scope": ["nope"]});
    c.expect(400, paths::MGMT_CLIENT_GRANTS, master(Method::POST, paths::MGMT_CLIENT_GRANTS).json(&undefined)).await;
    let no_client = json!({"client_id": "nope", "audience": "https://orders", "scope": []});
    c.expect(404, paths::MGMT_CLIENT_GRANTS, master(Method::POST, paths::MGMT_CLIENT_GRANTS).json(&no_client)).await;
    c.expect(401, paths::MGMT_CLIENT_GRANTS, bare.post(url(paths::MGMT_CLIENT_GRANTS)).json(&grant_json)).await;
    let of_client = format!("{}?client_id={oauth_id}", paths::MGMT_CLIENT_GRANTS);
    c.expect(200, paths::MGMT_CLIENT_GRANTS, master(Method::GET, &of_client)).await;
    c.expect(401, paths::MGMT_CLIENT_GRANTS, bare.get(url(paths::MGMT_CLIENT_GRANTS))).await;
    let grant_path = paths::MGMT_CLIENT_GRANT.replace("{id}", grant["id"].as_str().unwrap());
    c.expect(200, paths::MGMT_CLIENT_GRANT, master(Method::PATCH, &grant_path).json(&json!({"scope": []}))).await;
    c.expect(400, paths::MGMT_CLIENT_GRANT, master(Method::PATCH, &grant_path).json(&json!({"scope": ["nope"]}))).await;
    let missing_grant = concrete(paths::MGMT_CLIENT_GRANT);
    c.expect(404, paths::MGMT_CLIENT_GRANT, master(Method::PATCH, &missing_grant).json(&json!({"scope": []}))).await;
    c.expect(401, paths::MGMT_CLIENT_GRANT, bare.patch(url(&grant_path)).json(&json!({"scope": []}))).await;
    c.expect(204, paths::MGMT_CLIENT_GRANT, master(Method::DELETE, &grant_path)).await;
    c.expect(404, paths::MGMT_CLIENT_GRANT, master(Method::DELETE, &grant_path)).await;
    c.expect(401, paths::MGMT_CLIENT_GRANT, bare.delete(url(&grant_path))).await;

    // --- the audit log (written off the request path: wait for the first records)
    let mut logs = Value::Null;
    for _ in 0..100 {
        logs = c.expect(200, paths::MGMT_LOGS, master(Method::GET, &format!("{}?per_page=5", paths::MGMT_LOGS))).await;
        if logs.as_array().is_some_and(|listed| !listed.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let totals = format!("{}?include_totals=true&q=type:sapi&sort=date:1", paths::MGMT_LOGS);
    c.expect(200, paths::MGMT_LOGS, master(Method::GET, &totals)).await;
    c.expect(400, paths::MGMT_LOGS, master(Method::GET, &format!("{}?q=email:x", paths::MGMT_LOGS))).await;
    c.expect(401, paths::MGMT_LOGS, bare.get(url(paths::MGMT_LOGS))).await;
    let log_path = paths::MGMT_LOG.replace("{id}", logs[0]["log_id"].as_str().expect("a stored audit record"));
    c.expect(200, paths::MGMT_LOG, master(Method::GET, &log_path)).await;
    c.expect(404, paths::MGMT_LOG, master(Method::GET, &concrete(paths::MGMT_LOG))).await;
    c.expect(401, paths::MGMT_LOG, bare.get(url(&log_path))).await;

    // --- users, their sessions, refresh tokens and identities; organizations; signing keys
    let grace = c
        .expect(
            201,
            paths::MGMT_USERS,
            master(Method::POST, paths::MGMT_USERS).json(&json!({"email": "grace@example.com", "password": PASSWORD})),
        )
        .await;
    let grace_id = grace["user_id"].as_str().unwrap().to_owned();
    let dup = json!({"email": "grace@example.com", "password": PASSWORD});
    c.expect(409, paths::MGMT_USERS, master(Method::POST, paths::MGMT_USERS).json(&dup)).await;
    c.expect(200, paths::MGMT_USERS, master(Method::GET, &format!("{}?include_totals=true", paths::MGMT_USERS))).await;
    c.expect(200, paths::MGMT_USERS, master(Method::GET, &format!("{}?q=email:grace*", paths::MGMT_USERS))).await;
    c.expect(400, paths::MGMT_USERS, master(Method::GET, &format!("{}?q=name:x", paths::MGMT_USERS))).await;
    let by_email = format!("{}?email=grace@example.com", paths::MGMT_USERS_BY_EMAIL);
    c.expect(200, paths::MGMT_USERS_BY_EMAIL, master(Method::GET, &by_email)).await;
    let user_path = paths::MGMT_USER.replace("{id}", &grace_id);
    c.expect(200, paths::MGMT_USER, master(Method::GET, &user_path)).await;
    c.expect(404, paths::MGMT_USER, master(Method::GET, &concrete(paths::MGMT_USER))).await;
    c.expect(401, paths::MGMT_USER, bare.get(url(&user_path))).await;
    let patch = json!({"user_metadata": {"theme": "dark"}, "email_verified": true});
    c.expect(200, paths::MGMT_USER, master(Method::PATCH, &user_path).json(&patch)).await;
    let sessions_path = paths::MGMT_USER_SESSIONS.replace("{id}", &grace_id);
    c.expect(200, paths::MGMT_USER_SESSIONS, master(Method::GET, &sessions_path)).await;
    c.expect(202, paths::MGMT_USER_SESSIONS, master(Method::DELETE, &sessions_path)).await;
    c.expect(404, paths::MGMT_SESSION, master(Method::GET, &concrete(paths::MGMT_SESSION))).await;
    c.expect(404, paths::MGMT_SESSION, master(Method::DELETE, &concrete(paths::MGMT_SESSION))).await;
    let families_path = paths::MGMT_USER_REFRESH_TOKENS.replace("{id}", &grace_id);
    c.expect(200, paths::MGMT_USER_REFRESH_TOKENS, master(Method::GET, &families_path)).await;
    c.expect(202, paths::MGMT_USER_REFRESH_TOKENS, master(Method::DELETE, &families_path)).await;
    c.expect(404, paths::MGMT_REFRESH_TOKEN, master(Method::GET, &concrete(paths::MGMT_REFRESH_TOKEN))).await;
    c.expect(404, paths::MGMT_REFRESH_TOKEN, master(Method::DELETE, &concrete(paths::MGMT_REFRESH_TOKEN))).await;
    let identity = paths::MGMT_USER_IDENTITY
        .replace("{id}", &grace_id)
        .replace("{provider}", "auth0")
        .replace("{user_id}", &grace_id);
    c.expect(400, paths::MGMT_USER_IDENTITY, master(Method::DELETE, &identity)).await;
    c.expect(404, paths::MGMT_USER_IDENTITY, master(Method::DELETE, &identity.replace("/auth0/", "/google/"))).await;
    let org = c
        .expect(
            201,
            paths::MGMT_ORGANIZATIONS,
            master(Method::POST, paths::MGMT_ORGANIZATIONS).json(&json!({"name": "navy", "display_name": "Navy"})),
        )
        .await;
    let org_path = paths::MGMT_ORGANIZATION.replace("{id}", org["id"].as_str().unwrap());
    let members_path = paths::MGMT_ORGANIZATION_MEMBERS.replace("{id}", org["id"].as_str().unwrap());
    c.expect(
        409,
        paths::MGMT_ORGANIZATIONS,
        master(Method::POST, paths::MGMT_ORGANIZATIONS).json(&json!({"name": "navy"})),
    )
    .await;
    c.expect(200, paths::MGMT_ORGANIZATIONS, master(Method::GET, paths::MGMT_ORGANIZATIONS)).await;
    c.expect(200, paths::MGMT_ORGANIZATIONS, master(Method::GET, &format!("{}?take=1", paths::MGMT_ORGANIZATIONS)))
        .await;
    c.expect(200, paths::MGMT_ORGANIZATION, master(Method::GET, &org_path)).await;
    c.expect(404, paths::MGMT_ORGANIZATION, master(Method::GET, &concrete(paths::MGMT_ORGANIZATION))).await;
    let by_name = paths::MGMT_ORGANIZATION_BY_NAME.replace("{name}", "navy");
    c.expect(200, paths::MGMT_ORGANIZATION_BY_NAME, master(Method::GET, &by_name)).await;
    c.expect(404, paths::MGMT_ORGANIZATION_BY_NAME, master(Method::GET, &by_name.replace("navy", "army"))).await;
    c.expect(200, paths::MGMT_ORGANIZATION, master(Method::PATCH, &org_path).json(&json!({"display_name": "US Navy"})))
        .await;
    let members = json!({"members": [grace_id]});
    c.expect(204, paths::MGMT_ORGANIZATION_MEMBERS, master(Method::POST, &members_path).json(&members)).await;
    c.expect(200, paths::MGMT_ORGANIZATION_MEMBERS, master(Method::GET, &members_path)).await;
    c.expect(
        200,
        paths::MGMT_ORGANIZATION_MEMBERS,
        master(Method::GET, &format!("{members_path}?include_totals=true")),
    )
    .await;
    c.expect(204, paths::MGMT_ORGANIZATION_MEMBERS, master(Method::DELETE, &members_path).json(&members)).await;
    c.expect(204, paths::MGMT_ORGANIZATION, master(Method::DELETE, &org_path)).await;
    c.expect(404, paths::MGMT_ORGANIZATION, master(Method::DELETE, &org_path)).await;
    let keys = c.expect(200, paths::MGMT_SIGNING_KEYS, master(Method::GET, paths::MGMT_SIGNING_KEYS)).await;
    let kid = keys[0]["kid"].as_str().unwrap().to_owned();
    c.expect(200, paths::MGMT_SIGNING_KEY, master(Method::GET, &paths::MGMT_SIGNING_KEY.replace("{kid}", &kid))).await;
    c.expect(404, paths::MGMT_SIGNING_KEY, master(Method::GET, &paths::MGMT_SIGNING_KEY.replace("{kid}", "key_x")))
        .await;
    let rotate = format!("{}?alg=RS256", paths::MGMT_SIGNING_KEYS_ROTATE);
    let rotated = c.expect(201, paths::MGMT_SIGNING_KEYS_ROTATE, master(Method::POST, &rotate)).await;
    c.expect(400, paths::MGMT_SIGNING_KEYS_ROTATE, master(Method::POST, &format!("{rotate}x"))).await;
    let revoke = |kid: &str| paths::MGMT_SIGNING_KEY_REVOKE.replace("{kid}", kid);
    c.expect(400, paths::MGMT_SIGNING_KEY_REVOKE, master(Method::PUT, &revoke(rotated["kid"].as_str().unwrap()))).await;
    c.expect(404, paths::MGMT_SIGNING_KEY_REVOKE, master(Method::PUT, &revoke("key_x"))).await;
    c.expect(204, paths::MGMT_USER, master(Method::DELETE, &user_path)).await;
    c.expect(204, paths::MGMT_RESOURCE_SERVER, master(Method::DELETE, &api_path)).await;
    c.expect(404, paths::MGMT_RESOURCE_SERVER, master(Method::DELETE, &api_path)).await;
    c.expect(400, paths::MGMT_RESOURCE_SERVER, master(Method::DELETE, &system_api)).await;
    c.expect(401, paths::MGMT_RESOURCE_SERVER, bare.delete(url(&api_path))).await;
    c.expect(204, paths::MGMT_CLIENT, master(Method::DELETE, &oauth_path)).await;
    c.expect(404, paths::MGMT_CLIENT, master(Method::DELETE, &oauth_path)).await;
    c.expect(401, paths::MGMT_CLIENT, bare.delete(url(&oauth_path))).await;

    // --- the token endpoint (client credentials)
    let machine = c
        .expect(
            201,
            paths::MGMT_CLIENTS,
            master(Method::POST, paths::MGMT_CLIENTS).json(&json!({"name": "Cron", "app_type": "non_interactive"})),
        )
        .await;
    let api = json!({"name": "Billing", "identifier": "https://billing", "scopes": [{"value": "read:bills"}]});
    c.expect(201, paths::MGMT_RESOURCE_SERVERS, master(Method::POST, paths::MGMT_RESOURCE_SERVERS).json(&api)).await;
    let grant = json!({"client_id": machine["client_id"], "audience": "https://billing", "scope": ["read:bills"]});
    c.expect(201, paths::MGMT_CLIENT_GRANTS, master(Method::POST, paths::MGMT_CLIENT_GRANTS).json(&grant)).await;
    let (machine_id, machine_secret) =
        (machine["client_id"].as_str().unwrap().to_owned(), machine["client_secret"].as_str().unwrap().to_owned());
    let token_form = |extra: &[(&str, &str)]| {
        let mut fields: Vec<(String, String)> = vec![
            ("client_id".into(), machine_id.clone()),
            ("client_secret".into(), machine_secret.clone()),
            ("grant_type".into(), "client_credentials".into()),
        ];
        fields.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        bare.post(url(paths::TOKEN)).form(&fields)
    };
    c.expect(200, paths::TOKEN, token_form(&[("audience", "https://billing")])).await;
    c.expect(403, paths::TOKEN, token_form(&[])).await;
    c.expect(400, paths::TOKEN, token_form(&[("grant_type", "password")])).await;
    c.expect(
        401,
        paths::TOKEN,
        bare.post(url(paths::TOKEN)).form(&[("grant_type", "client_credentials"), ("client_id", "nope")]),
    )
    .await;

    // --- the authorization-code flow and its pages
    {
        use crate::oauth_flow::{authorize_url, hidden, location, CALLBACK, EMAIL, VERIFIER};
        c.expect(200, paths::DISCOVERY, bare.get(url(paths::DISCOVERY))).await;
        let third = json!({"name": "Partner", "app_type": "spa", "callbacks": [CALLBACK], "is_first_party": false,
            "web_origins": ["https://app.example"]});
        let spa = c.expect(201, paths::MGMT_CLIENTS, master(Method::POST, paths::MGMT_CLIENTS).json(&third)).await;
        let spa_id = spa["client_id"].as_str().unwrap().to_owned();
        let body = json!({"name": "Ada", "email": EMAIL, "password": PASSWORD});
        c.expect(
            200,
            paths::SIGN_UP_EMAIL,
            bare.post(url(paths::SIGN_UP_EMAIL)).header(header::ORIGIN, ORIGIN).json(&body),
        )
        .await;
        let browser = new_client();
        c.expect(400, paths::AUTHORIZE, browser.get(authorize_url(&app, "nope", &[]))).await;
        let start = browser.get(authorize_url(&app, &spa_id, &[])).send().await.unwrap();
        let state = location(&start).split("state=").nth(1).unwrap().to_owned();
        c.expect(302, paths::AUTHORIZE, browser.get(authorize_url(&app, &spa_id, &[]))).await;
        let login_url = url(&format!("{}?state={state}", paths::LOGIN));
        let html = c.expect(200, paths::LOGIN, browser.get(&login_url)).await;
        let csrf = hidden(html.as_str().unwrap(), "csrf");
        c.expect(400, paths::LOGIN, browser.get(url(paths::LOGIN))).await;
        let form = |password: &str, csrf: &str| {
            vec![
                ("state", state.clone()),
                ("csrf", csrf.to_owned()),
                ("email", EMAIL.to_owned()),
                ("password", password.to_owned()),
            ]
        };
        c.expect(403, paths::LOGIN, browser.post(url(paths::LOGIN)).form(&form(PASSWORD, "x"))).await;
        let button =
            |csrf: &str| vec![("state", state.clone()), ("csrf", csrf.to_owned()), ("provider", "nope".into())];
        c.expect(403, paths::LOGIN_SOCIAL, browser.post(url(paths::LOGIN_SOCIAL)).form(&button("x"))).await;
        c.expect(400, paths::LOGIN_SOCIAL, browser.post(url(paths::LOGIN_SOCIAL)).form(&button(&csrf))).await;
        c.expect(400, paths::LOGIN, browser.post(url(paths::LOGIN)).form(&form("wrong-password", &csrf))).await;
        c.expect(303, paths::LOGIN, browser.post(url(paths::LOGIN)).form(&form(PASSWORD, &csrf))).await;
        c.expect(
            400,
            paths::AUTHORIZE_RESUME,
            browser.get(url(&format!("{}?state=ltx_nope", paths::AUTHORIZE_RESUME))),
        )
        .await;
        c.expect(302, paths::AUTHORIZE_RESUME, browser.get(url(&format!("{}?state={state}", paths::AUTHORIZE_RESUME))))
            .await;
        let consent_url = url(&format!("{}?state={state}", paths::CONSENT));
        let html = c.expect(200, paths::CONSENT, browser.get(&consent_url)).await;
        let csrf = hidden(html.as_str().unwrap(), "csrf");
        c.expect(302, paths::CONSENT, bare.get(&consent_url)).await;
        c.expect(400, paths::CONSENT, bare.get(url(paths::CONSENT))).await;
        let decide = |csrf: &str, decision: &str| {
            browser.post(url(paths::CONSENT)).header(header::ORIGIN, ORIGIN).form(&[
                ("state", state.as_str()),
                ("csrf", csrf),
                ("decision", decision),
            ])
        };
        c.expect(403, paths::CONSENT, decide("x", "allow")).await;
        c.expect(400, paths::CONSENT, decide(&csrf, "maybe")).await;
        c.expect(302, paths::CONSENT, decide(&csrf, "allow")).await;
        c.expect(400, paths::CONSENT, decide(&csrf, "allow")).await;
        // Consented: the next authorize goes straight back with a code.
        let answer = browser.get(authorize_url(&app, &spa_id, &[])).send().await.unwrap();
        let code = crate::oauth_flow::code_of(&answer);
        let exchange = bare.post(url(paths::TOKEN)).form(&[
            ("grant_type", "authorization_code"),
            ("client_id", spa_id.as_str()),
            ("code", code.as_str()),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ]);
        let tokens = c.expect(200, paths::TOKEN, exchange).await;
        let refresh = bare.post(url(paths::TOKEN)).json(&json!({"grant_type": "refresh_token", "client_id": spa_id,
            "refresh_token": tokens["refresh_token"]}));
        c.expect(200, paths::TOKEN, refresh).await;
        let access = tokens["access_token"].as_str().unwrap();
        c.expect(200, paths::USERINFO, bare.get(url(paths::USERINFO)).bearer_auth(access)).await;
        c.expect(200, paths::USERINFO, bare.post(url(paths::USERINFO)).bearer_auth(access)).await;
        c.expect(401, paths::USERINFO, bare.get(url(paths::USERINFO))).await;
        c.expect(401, paths::USERINFO, bare.post(url(paths::USERINFO)).bearer_auth("x.y.z")).await;
        // Revocation, introspection, logout.
        let revoke_form =
            |token: &str| bare.post(url(paths::REVOKE)).form(&[("client_id", spa_id.as_str()), ("token", token)]);
        c.expect(200, paths::REVOKE, revoke_form(access)).await;
        c.expect(400, paths::REVOKE, bare.post(url(paths::REVOKE)).form(&[("client_id", spa_id.as_str())])).await;
        c.expect(401, paths::REVOKE, bare.post(url(paths::REVOKE)).form(&[("client_id", "nope"), ("token", "x")]))
            .await;
        let machine_form = |token: &str| {
            bare.post(url(paths::INTROSPECT)).form(&[
                ("client_id", machine_id.as_str()),
                ("client_secret", machine_secret.as_str()),
                ("token", token),
            ])
        };
        let billing = c.expect(200, paths::TOKEN, token_form(&[("audience", "https://billing")])).await;
        c.expect(200, paths::INTROSPECT, machine_form(billing["access_token"].as_str().unwrap())).await;
        c.expect(200, paths::INTROSPECT, machine_form(access)).await;
        c.expect(
            400,
            paths::INTROSPECT,
            bare.post(url(paths::INTROSPECT)).json(&json!({"client_id": machine_id, "client_secret": machine_secret})),
        )
        .await;
        c.expect(
            401,
            paths::INTROSPECT,
            bare.post(url(paths::INTROSPECT)).form(&[("client_id", spa_id.as_str()), ("token", access)]),
        )
        .await;
        c.expect(200, paths::LOGOUT, bare.get(url(paths::LOGOUT))).await;
        c.expect(200, paths::OIDC_LOGOUT, bare.get(url(paths::OIDC_LOGOUT))).await;
        let back = format!("{}?client_id={spa_id}&returnTo=https%3A%2F%2Fapp.example%2Fbye", paths::LOGOUT);
        let patch = json!({"allowed_logout_urls": ["https://app.example/bye"]});
        let spa_path = paths::MGMT_CLIENT.replace("{id}", &spa_id);
        c.expect(200, paths::MGMT_CLIENT, master(Method::PATCH, &spa_path).json(&patch)).await;
        c.expect(302, paths::LOGOUT, browser.get(url(&back))).await;
        let oidc_back = format!(
            "{}?client_id={spa_id}&post_logout_redirect_uri=https%3A%2F%2Fapp.example%2Fbye&state=s",
            paths::OIDC_LOGOUT
        );
        c.expect(302, paths::OIDC_LOGOUT, bare.get(url(&oidc_back))).await;
        // Sign-up page.
        let fresh = new_client();
        let start = fresh.get(authorize_url(&app, &spa_id, &[])).send().await.unwrap();
        let state = location(&start).split("state=").nth(1).unwrap().to_owned();
        let signup_url = url(&format!("{}?state={state}", paths::SIGNUP));
        let html = c.expect(200, paths::SIGNUP, fresh.get(&signup_url)).await;
        let csrf = hidden(html.as_str().unwrap(), "csrf");
        c.expect(400, paths::SIGNUP, fresh.get(url(paths::SIGNUP))).await;
        let signup = |csrf: &str, email: &str| {
            fresh.post(url(paths::SIGNUP)).form(&[
                ("state", state.as_str()),
                ("csrf", csrf),
                ("name", "Grace"),
                ("email", email),
                ("password", PASSWORD),
            ])
        };
        c.expect(403, paths::SIGNUP, signup("x", "grace@example.com")).await;
        c.expect(400, paths::SIGNUP, signup(&csrf, EMAIL)).await;
        c.expect(303, paths::SIGNUP, signup(&csrf, "grace@example.com")).await;
        let first_party = json!({"name": "Own", "app_type": "spa", "callbacks": [CALLBACK]});
        let own =
            c.expect(201, paths::MGMT_CLIENTS, master(Method::POST, paths::MGMT_CLIENTS).json(&first_party)).await;
        let own_url = authorize_url(&app, own["client_id"].as_str().unwrap(), &[("response_mode", "form_post")]);
        c.expect(200, paths::AUTHORIZE, fresh.get(own_url)).await;
    }

    // --- the token handler (capability 6)
    {
        use crate::bff::{echo_upstream, sign_in, SPA};
        let upstream = echo_upstream().await;
        let web =
            json!({"name": "BFF", "app_type": "regular_web", "callbacks": [format!("{BASE_URL}/auth/acme/callback")]});
        let web = c.expect(201, paths::MGMT_CLIENTS, master(Method::POST, paths::MGMT_CLIENTS).json(&web)).await;
        let vendor = "/management/vendors/acme/token-handler";
        let body = json!({"clientId": web["client_id"], "clientSecret": web["client_secret"], "cookieDomain": "localhost",
            "allowedReturnTo": [SPA], "apiUpstream": upstream});
        c.expect(200, paths::BFF_VENDOR, master(Method::PUT, vendor).json(&body)).await;
        c.expect(
            400,
            paths::BFF_VENDOR,
            master(Method::PUT, vendor)
                .json(&json!({"clientId": "x", "cookieDomain": "localhost", "allowedReturnTo": []})),
        )
        .await;
        c.expect(400, paths::BFF_VENDOR, master(Method::GET, "/management/vendors/Not_OK/token-handler")).await;
        c.expect(401, paths::BFF_VENDOR, bare.get(url(vendor))).await;
        c.expect(200, paths::BFF_VENDOR, master(Method::GET, vendor)).await;
        c.expect(404, paths::BFF_VENDOR, master(Method::GET, "/management/vendors/none/token-handler")).await;
        c.expect(200, paths::BFF_VENDOR_ROTATE_KEY, master(Method::POST, &format!("{vendor}/rotate-key"))).await;
        c.expect(
            404,
            paths::BFF_VENDOR_ROTATE_KEY,
            master(Method::POST, "/management/vendors/none/token-handler/rotate-key"),
        )
        .await;
        c.expect(400, paths::BFF_LOGIN, bare.get(url("/auth/acme/login?returnTo=https://evil.example/"))).await;
        c.expect(404, paths::BFF_LOGIN, bare.get(url("/auth/none/login"))).await;
        c.expect(302, paths::BFF_LOGIN, bare.get(url("/auth/acme/login"))).await;
        c.expect(400, paths::BFF_CALLBACK, bare.get(url("/auth/acme/callback?code=x&state=y"))).await;
        c.expect(401, paths::BFF_SESSION, bare.get(url("/auth/acme/session"))).await;
        let (jar, _) = sign_in(&app, "acme", SPA).await;
        let with = |method: Method, path: &str| bare.request(method, url(path)).header(header::COOKIE, jar.header());
        c.expect(200, paths::BFF_SESSION, with(Method::GET, "/auth/acme/session")).await;
        c.expect(200, paths::BFF_CHECK, with(Method::GET, "/auth/acme/check")).await;
        c.expect(401, paths::BFF_CHECK, bare.get(url("/auth/acme/check"))).await;
        for method in [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            c.expect(200, paths::BFF_API, with(method, "/auth/acme/api/orders").header(header::ORIGIN, SPA)).await;
        }
        c.expect(403, paths::BFF_API, with(Method::POST, "/auth/acme/api/orders")).await;
        c.expect(401, paths::BFF_API, bare.get(url("/auth/acme/api/orders"))).await;
        c.expect(403, paths::BFF_REFRESH, with(Method::POST, "/auth/acme/refresh")).await;
        c.expect(204, paths::BFF_REFRESH, with(Method::POST, "/auth/acme/refresh").header(header::ORIGIN, SPA)).await;
        c.expect(401, paths::BFF_REFRESH, bare.post(url("/auth/acme/refresh")).header(header::ORIGIN, SPA)).await;
        c.expect(403, paths::BFF_LOGOUT, with(Method::POST, "/auth/acme/logout")).await;
        c.expect(200, paths::BFF_LOGOUT, with(Method::POST, "/auth/acme/logout").header(header::ORIGIN, SPA)).await;
        c.expect(204, paths::BFF_VENDOR, master(Method::DELETE, vendor)).await;
        c.expect(404, paths::BFF_VENDOR, master(Method::DELETE, vendor)).await;
    }

    // --- every state-changing operation: a body that is not JSON is 415 (refused before any handler)
    let operations: Vec<(String, String)> = c.doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(template, item)| item.as_object().unwrap().keys().map(move |m| (m.clone(), template.clone())))
        .filter(|(method, _)| METHODS.contains(&method.as_str()))
        .collect();
    for (method, template) in &operations {
        // (The token handler's API proxy passes any body on.)
        if method == "get" || *template == documented(paths::BFF_API) {
            continue;
        }
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let request =
            bare.request(method, url(&concrete(template))).header(header::CONTENT_TYPE, "text/plain").body("x");
        c.expect(415, template, request).await;
    }
    // --- every operation taking a JSON body: malformed JSON is 400, with whatever credential it needs
    for (method, template) in &operations {
        // (The pages' forms take no JSON.)
        if c.operation(method, template).and_then(|op| op.pointer("/requestBody/content/application~1json")).is_none() {
            continue;
        }
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let request = if template.starts_with(paths::V1_CLIENTS)
            || template.starts_with("/api/v2/")
            || template.starts_with("/management/")
        {
            master(method, &concrete(template))
        } else if template.starts_with("/v1/") {
            bare.request(method, url(&concrete(template))).header("x-api-key", &live_key)
        } else {
            alice.request(method, url(template)).header(header::ORIGIN, ORIGIN)
        };
        let request = request.header(header::CONTENT_TYPE, "application/json").body("{");
        c.expect(400, template, request).await;
    }

    // --- the pages' and flows' query strings and forms: a malformed one is a JSON error (not text/plain)
    let twice = |template: &str, name: &str| url(&format!("{}?{name}=a&{name}=b", concrete(template)));
    for (template, name) in [
        (paths::LOGIN, "state"),
        (paths::SIGNUP, "state"),
        (paths::CONSENT, "state"),
        (paths::AUTHORIZE_RESUME, "state"),
        (paths::LOGOUT, "client_id"),
        (paths::OIDC_LOGOUT, "state"),
        (paths::AUTH_CHECK, "audience"),
        (paths::BFF_LOGIN, "returnTo"),
        (paths::BFF_CALLBACK, "code"),
    ] {
        let body = c.expect(400, template, bare.get(twice(template, name))).await;
        assert_eq!(body["code"], "VALIDATION_ERROR", "{template}: {body}");
    }
    let body = c.expect(400, paths::AUTHORIZE_RESUME, bare.get(url(paths::AUTHORIZE_RESUME))).await;
    assert_eq!(body["code"], "VALIDATION_ERROR", "resume without state: {body}");
    for template in [paths::LOGIN, paths::LOGIN_SOCIAL, paths::SIGNUP, paths::CONSENT] {
        let body = c.expect(415, template, bare.post(url(template))).await;
        assert_eq!(body["code"], "UNSUPPORTED_MEDIA_TYPE", "{template} without a body: {body}");
        let form = |body: &'static str| {
            bare.post(url(template)).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(body)
        };
        let body = c.expect(400, template, form("state=a&state=b")).await;
        assert_eq!(body["code"], "VALIDATION_ERROR", "{template} with a field twice: {body}");
        let body = c.expect(400, template, form("state=%00")).await;
        assert_eq!(body["code"], "VALIDATION_ERROR", "{template} with U+0000: {body}");
    }

    // --- sign-out and revoke-sessions end the sessions
    c.expect(200, paths::REVOKE_SESSIONS, bob.post(url(paths::REVOKE_SESSIONS)).header(header::ORIGIN, ORIGIN)).await;
    c.expect(401, paths::REVOKE_SESSIONS, bob.post(url(paths::REVOKE_SESSIONS)).header(header::ORIGIN, ORIGIN)).await;
    c.expect(403, paths::SIGN_OUT, alice.post(url(paths::SIGN_OUT))).await;
    c.expect(200, paths::SIGN_OUT, alice.post(url(paths::SIGN_OUT)).header(header::ORIGIN, ORIGIN)).await;
    c.expect(200, paths::SIGN_OUT, bare.post(url(paths::SIGN_OUT))).await;

    // --- readiness without a database
    app.state.db.close().await;
    c.expect(503, paths::READYZ, bare.get(url(paths::READYZ))).await;

    let unexercised = c.unexercised();
    assert!(unexercised.is_empty(), "documented operations this test never calls: {unexercised:?}");
    assert!(
        c.failures.is_empty(),
        "{} answers disagree with the document:\n{}",
        c.failures.len(),
        c.failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_session_is_documented_only_when_served_and_client_management_documents_its_503() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let doc: Value = app.get(paths::OPENAPI).await.json().await.unwrap();
    let mut c = Checker::new(doc);

    assert!(c.doc["paths"].get(paths::DEBUG_SESSION).is_none(), "debug_endpoints is off");
    assert_eq!(app.get(paths::DEBUG_SESSION).await.status(), 404);
    let bare = bare_client();
    c.expect(
        503,
        paths::V1_CLIENTS,
        bare.get(app.url(paths::V1_CLIENTS)).basic_auth(MASTER_USER, Some(MASTER_PASSWORD)),
    )
    .await;
    c.expect(503, paths::V1_CLIENTS, bare.post(app.url(paths::V1_CLIENTS)).json(&json!({"name": "x"}))).await;
    c.expect(503, paths::V1_CLIENT_ROTATE_KEY, bare.post(app.url(&concrete(paths::V1_CLIENT_ROTATE_KEY)))).await;
    c.expect(503, paths::V1_CLIENT, bare.delete(app.url(&concrete(paths::V1_CLIENT)))).await;
    assert!(c.failures.is_empty(), "{}", c.failures.join("\n"));
}

#[test]
fn the_checker_refuses_missing_undocumented_and_mistyped_fields() {
    let mut c = Checker::new(latchkey::app::openapi(false));
    let error = json!({"$ref": "#/components/schemas/ErrorBody"});
    let flattened = json!({"$ref": "#/components/schemas/OrganizationWithMembers"});
    let organization = json!({"id": "org_1", "name": "A", "slug": "a", "logo": null, "metadata": {"any": ["json"]},
        "createdAt": "2026-11-18T11:06:40.000Z", "members": []});

    c.validate("error", &error, &json!({"code": "X", "message": "m"}));
    c.validate("flattened", &flattened, &organization);
    assert!(c.failures.is_empty(), "{:?}", c.failures);

    c.validate("undocumented field", &error, &json!({"code": "X", "message": "m", "extra": 1}));
    c.validate("missing field", &error, &json!({"code": "X"}));
    c.validate("mistyped field", &error, &json!({"code": 1, "message": "m"}));
    let mut extra = organization.clone();
    extra["extra"] = json!(1);
    c.validate("undocumented field beside a flattened part", &flattened, &extra);
    assert_eq!(c.failures.len(), 4, "{:#?}", c.failures);
}
