//! SQL of the OAuth provider.

use super::{
    apis::{ClientGrant, ResourceServer},
    clients::{AppType, AuthMethod, GrantType, OAuthClient, RefreshTokenSettings, SecretChange},
};
use crate::{
    clock::Millis,
    db_run,
    storage::{Db, StorageError},
    tokens::Algorithm,
};

const CLIENT_COLUMNS: &str = "client_id, name, description, app_type, is_first_party, token_endpoint_auth_method, \
     grant_types, callbacks, allowed_logout_urls, web_origins, jwt_alg, refresh_token, secret_hash IS NOT NULL AS has_secret, \
     created_at, updated_at";

/// A row of `oauth_clients`, its JSON and enum columns as text.
#[derive(sqlx::FromRow)]
struct ClientRow {
    client_id: String,
    name: String,
    description: Option<String>,
    app_type: String,
    is_first_party: bool,
    token_endpoint_auth_method: String,
    grant_types: String,
    callbacks: String,
    allowed_logout_urls: String,
    web_origins: String,
    jwt_alg: String,
    refresh_token: String,
    has_secret: bool,
    created_at: Millis,
    updated_at: Millis,
}

/// A stored value this version cannot read: a 500, never a guess.
fn corrupt(what: &str) -> StorageError {
    StorageError::Other(sqlx::Error::Decode(format!("oauth {what} holds an unknown value").into()))
}

fn json_list<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<Vec<T>, StorageError> {
    serde_json::from_str(text).map_err(|_| corrupt(what))
}

impl ClientRow {
    fn into_client(self) -> Result<(OAuthClient, bool), StorageError> {
        let text = |value: &str| serde_json::Value::String(value.to_owned());
        let client = OAuthClient {
            app_type: serde_json::from_value::<AppType>(text(&self.app_type)).map_err(|_| corrupt("app_type"))?,
            token_endpoint_auth_method: serde_json::from_value::<AuthMethod>(text(&self.token_endpoint_auth_method))
                .map_err(|_| corrupt("token_endpoint_auth_method"))?,
            grant_types: json_list::<GrantType>(&self.grant_types, "grant_types")?,
            callbacks: json_list(&self.callbacks, "callbacks")?,
            allowed_logout_urls: json_list(&self.allowed_logout_urls, "allowed_logout_urls")?,
            web_origins: json_list(&self.web_origins, "web_origins")?,
            jwt_alg: Algorithm::parse(&self.jwt_alg).ok_or_else(|| corrupt("jwt_alg"))?,
            refresh_token: serde_json::from_str::<RefreshTokenSettings>(&self.refresh_token)
                .map_err(|_| corrupt("refresh_token"))?,
            client_id: self.client_id,
            name: self.name,
            description: self.description,
            is_first_party: self.is_first_party,
            created_at: self.created_at,
            updated_at: self.updated_at,
        };
        Ok((client, self.has_secret))
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
}

/// Stores a new client with the hash of its secret (`None` for a public client).
pub async fn insert_client(db: &Db, client: &OAuthClient, secret_hash: Option<&str>) -> Result<(), StorageError> {
    const SQL: &str = "INSERT INTO oauth_clients (client_id, name, description, app_type, is_first_party, \
                       token_endpoint_auth_method, grant_types, callbacks, allowed_logout_urls, web_origins, jwt_alg, \
                       refresh_token, secret_hash, created_at, updated_at) \
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";
    db_run!(db, |pool| {
        sqlx::query(SQL)
            .bind(&client.client_id)
            .bind(&client.name)
            .bind(&client.description)
            .bind(client.app_type.as_str())
            .bind(client.is_first_party)
            .bind(client.token_endpoint_auth_method.as_str())
            .bind(to_json(&client.grant_types))
            .bind(to_json(&client.callbacks))
            .bind(to_json(&client.allowed_logout_urls))
            .bind(to_json(&client.web_origins))
            .bind(client.jwt_alg.as_str())
            .bind(to_json(&client.refresh_token))
            .bind(secret_hash)
            .bind(client.created_at)
            .bind(client.updated_at)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// A client and whether it has a secret.
pub async fn find_client(db: &Db, client_id: &str) -> Result<Option<(OAuthClient, bool)>, StorageError> {
    Ok(client_with_secret_hash(db, client_id).await?.map(|(client, hash)| (client, hash.is_some())))
}

/// A page of clients, oldest first, and the total.
pub async fn list_clients(db: &Db, limit: i64, offset: i64) -> Result<(Vec<OAuthClient>, i64), StorageError> {
    let sql = format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients ORDER BY created_at, client_id LIMIT $1 OFFSET $2");
    let (rows, total) = db_run!(db, |pool| {
        let rows = sqlx::query_as::<_, ClientRow>(&sql).bind(limit).bind(offset).fetch_all(pool).await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM oauth_clients").fetch_one(pool).await?;
        Ok::<_, StorageError>((rows, total))
    })?;
    let clients = rows.into_iter().map(|row| row.into_client().map(|(client, _)| client)).collect::<Result<_, _>>()?;
    Ok((clients, total))
}

/// What a conditional write found.
pub enum Written {
    Yes,
    /// No such row.
    Missing,
    /// The row changed since it was read.
    Changed,
}

/// Writes a client's fields and changes its secret hash as told, if its `updated_at` is still
/// `read_version` (the row was not changed since it was read).
pub async fn update_client(
    db: &Db,
    client: &OAuthClient,
    secret: SecretChange,
    read_version: Millis,
) -> Result<Written, StorageError> {
    let (change, hash) = match secret {
        SecretChange::Keep => ("keep", None),
        SecretChange::Set(hash) => ("set", Some(hash)),
        SecretChange::Clear => ("clear", None),
    };
    const SQL: &str = "UPDATE oauth_clients SET name = $1, description = $2, is_first_party = $3, \
                       token_endpoint_auth_method = $4, grant_types = $5, callbacks = $6, allowed_logout_urls = $7, \
                       web_origins = $8, jwt_alg = $9, refresh_token = $10, updated_at = $11, \
                       secret_hash = CASE $12 WHEN 'keep' THEN secret_hash WHEN 'set' THEN $13 ELSE NULL END \
                       WHERE client_id = $14 AND updated_at = $15";
    let updated = db_run!(db, |pool| Ok::<_, StorageError>(
        sqlx::query(SQL)
            .bind(&client.name)
            .bind(&client.description)
            .bind(client.is_first_party)
            .bind(client.token_endpoint_auth_method.as_str())
            .bind(to_json(&client.grant_types))
            .bind(to_json(&client.callbacks))
            .bind(to_json(&client.allowed_logout_urls))
            .bind(to_json(&client.web_origins))
            .bind(client.jwt_alg.as_str())
            .bind(to_json(&client.refresh_token))
            .bind(client.updated_at)
            .bind(change)
            .bind(&hash)
            .bind(&client.client_id)
            .bind(read_version)
            .execute(pool)
            .await?
            .rows_affected()
    ))?;
    if updated == 1 {
        return Ok(Written::Yes);
    }
    Ok(if find_client(db, &client.client_id).await?.is_some() { Written::Changed } else { Written::Missing })
}

/// Replaces a confidential client's secret hash in one statement; the client after the change, or
/// `None` when there is no such client or it is public.
pub async fn set_client_secret(
    db: &Db,
    client_id: &str,
    secret_hash: &str,
    now: Millis,
) -> Result<Option<OAuthClient>, StorageError> {
    let sql = format!(
        "UPDATE oauth_clients SET secret_hash = $1, updated_at = CASE WHEN updated_at >= $2 THEN updated_at + 1 \
         ELSE $2 END WHERE client_id = $3 AND token_endpoint_auth_method <> 'none' RETURNING {CLIENT_COLUMNS}"
    );
    let row = db_run!(db, |pool| Ok::<_, StorageError>(
        sqlx::query_as::<_, ClientRow>(&sql).bind(secret_hash).bind(now).bind(client_id).fetch_optional(pool).await?
    ))?;
    row.map(|row| row.into_client().map(|(client, _)| client)).transpose()
}

/// Deletes a client; false if there was none.
pub async fn delete_client(db: &Db, client_id: &str) -> Result<bool, StorageError> {
    db_run!(db, |pool| Ok(sqlx::query("DELETE FROM oauth_clients WHERE client_id = $1")
        .bind(client_id)
        .execute(pool)
        .await?
        .rows_affected()
        == 1))
}

const API_COLUMNS: &str = "id, name, identifier, scopes, signing_alg, token_lifetime, allow_offline_access, \
     skip_consent_for_verifiable_first_party_clients, created_at, updated_at";

/// A row of `oauth_resource_servers`.
#[derive(sqlx::FromRow)]
struct ApiRow {
    id: String,
    name: String,
    identifier: String,
    scopes: String,
    signing_alg: String,
    token_lifetime: i64,
    allow_offline_access: bool,
    skip_consent_for_verifiable_first_party_clients: bool,
    created_at: Millis,
    updated_at: Millis,
}

impl ApiRow {
    fn into_api(self) -> Result<ResourceServer, StorageError> {
        Ok(ResourceServer {
            scopes: serde_json::from_str(&self.scopes).map_err(|_| corrupt("resource_servers.scopes"))?,
            signing_alg: Algorithm::parse(&self.signing_alg).ok_or_else(|| corrupt("resource_servers.signing_alg"))?,
            id: self.id,
            name: self.name,
            identifier: self.identifier,
            token_lifetime: self.token_lifetime,
            allow_offline_access: self.allow_offline_access,
            skip_consent_for_verifiable_first_party_clients: self.skip_consent_for_verifiable_first_party_clients,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Stores a new API (a taken identifier is a `UniqueViolation`).
pub async fn insert_resource_server(db: &Db, api: &ResourceServer) -> Result<(), StorageError> {
    const SQL: &str = "INSERT INTO oauth_resource_servers (id, name, identifier, scopes, signing_alg, token_lifetime, \
                       allow_offline_access, skip_consent_for_verifiable_first_party_clients, created_at, updated_at) \
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    db_run!(db, |pool| {
        sqlx::query(SQL)
            .bind(&api.id)
            .bind(&api.name)
            .bind(&api.identifier)
            .bind(to_json(&api.scopes))
            .bind(api.signing_alg.as_str())
            .bind(api.token_lifetime)
            .bind(api.allow_offline_access)
            .bind(api.skip_consent_for_verifiable_first_party_clients)
            .bind(api.created_at)
            .bind(api.updated_at)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// The API with this id.
pub async fn find_resource_server(db: &Db, id: &str) -> Result<Option<ResourceServer>, StorageError> {
    let sql = format!("SELECT {API_COLUMNS} FROM oauth_resource_servers WHERE id = $1");
    let row = db_run!(db, |pool| Ok::<_, StorageError>(
        sqlx::query_as::<_, ApiRow>(&sql).bind(id).fetch_optional(pool).await?
    ))?;
    row.map(ApiRow::into_api).transpose()
}

/// The API with this identifier (audience).
pub async fn resource_server_by_identifier(db: &Db, identifier: &str) -> Result<Option<ResourceServer>, StorageError> {
    let sql = format!("SELECT {API_COLUMNS} FROM oauth_resource_servers WHERE identifier = $1");
    let row = db_run!(db, |pool| Ok::<_, StorageError>(
        sqlx::query_as::<_, ApiRow>(&sql).bind(identifier).fetch_optional(pool).await?
    ))?;
    row.map(ApiRow::into_api).transpose()
}

/// A page of APIs, oldest first, and the total.
pub async fn list_resource_servers(
    db: &Db,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ResourceServer>, i64), StorageError> {
    let sql = format!("SELECT {API_COLUMNS} FROM oauth_resource_servers ORDER BY created_at, id LIMIT $1 OFFSET $2");
    let (rows, total) = db_run!(db, |pool| {
        let rows = sqlx::query_as::<_, ApiRow>(&sql).bind(limit).bind(offset).fetch_all(pool).await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM oauth_resource_servers").fetch_one(pool).await?;
        Ok::<_, StorageError>((rows, total))
    })?;
    Ok((rows.into_iter().map(ApiRow::into_api).collect::<Result<_, _>>()?, total))
}

/// Writes an API's fields; false if there is no such API.
pub async fn update_resource_server(db: &Db, api: &ResourceServer) -> Result<bool, StorageError> {
    const SQL: &str = "UPDATE oauth_resource_servers SET name = $1, scopes = $2, signing_alg = $3, token_lifetime = $4, \
                       allow_offline_access = $5, skip_consent_for_verifiable_first_party_clients = $6, updated_at = $7 \
                       WHERE id = $8";
    db_run!(db, |pool| Ok(sqlx::query(SQL)
        .bind(&api.name)
        .bind(to_json(&api.scopes))
        .bind(api.signing_alg.as_str())
        .bind(api.token_lifetime)
        .bind(api.allow_offline_access)
        .bind(api.skip_consent_for_verifiable_first_party_clients)
        .bind(api.updated_at)
        .bind(&api.id)
        .execute(pool)
        .await?
        .rows_affected()
        == 1))
}

/// Deletes an API and the client grants for its identifier, in one transaction; false if there was none.
pub async fn delete_resource_server(db: &Db, id: &str) -> Result<bool, StorageError> {
    db_run!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "DELETE FROM oauth_client_grants WHERE audience IN \
             (SELECT identifier FROM oauth_resource_servers WHERE id = $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query("DELETE FROM oauth_resource_servers WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted == 1)
    })
}

const GRANT_COLUMNS: &str = "id, client_id, audience, scope, created_at";

/// A row of `oauth_client_grants`.
#[derive(sqlx::FromRow)]
struct GrantRow {
    id: String,
    client_id: String,
    audience: String,
    scope: String,
    created_at: Millis,
}

impl GrantRow {
    fn into_grant(self) -> Result<ClientGrant, StorageError> {
        Ok(ClientGrant {
            scope: serde_json::from_str(&self.scope).map_err(|_| corrupt("client_grants.scope"))?,
            id: self.id,
            client_id: self.client_id,
            audience: self.audience,
            created_at: self.created_at,
        })
    }
}

/// Stores a grant (a second one for the same client and audience is a `UniqueViolation`).
pub async fn insert_client_grant(db: &Db, grant: &ClientGrant) -> Result<(), StorageError> {
    const SQL: &str =
        "INSERT INTO oauth_client_grants (id, client_id, audience, scope, created_at) VALUES ($1, $2, $3, $4, $5)";
    db_run!(db, |pool| {
        sqlx::query(SQL)
            .bind(&grant.id)
            .bind(&grant.client_id)
            .bind(&grant.audience)
            .bind(to_json(&grant.scope))
            .bind(grant.created_at)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// The grant with this id.
pub async fn find_client_grant(db: &Db, id: &str) -> Result<Option<ClientGrant>, StorageError> {
    let sql = format!("SELECT {GRANT_COLUMNS} FROM oauth_client_grants WHERE id = $1");
    let row = db_run!(db, |pool| Ok::<_, StorageError>(
        sqlx::query_as::<_, GrantRow>(&sql).bind(id).fetch_optional(pool).await?
    ))?;
    row.map(GrantRow::into_grant).transpose()
}

/// A page of grants, oldest first, optionally of one client and/or for one audience; and their total.
pub async fn list_client_grants(
    db: &Db,
    client_id: Option<&str>,
    audience: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ClientGrant>, i64), StorageError> {
    const FILTER: &str = "($1 IS NULL OR client_id = $1) AND ($2 IS NULL OR audience = $2)";
    let sql = format!(
        "SELECT {GRANT_COLUMNS} FROM oauth_client_grants WHERE {FILTER} \
         ORDER BY created_at, id LIMIT $3 OFFSET $4"
    );
    let count = format!("SELECT COUNT(*) FROM oauth_client_grants WHERE {FILTER}");
    let (rows, total) = db_run!(db, |pool| {
        let rows = sqlx::query_as::<_, GrantRow>(&sql)
            .bind(client_id)
            .bind(audience)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?;
        let total: i64 = sqlx::query_scalar(&count).bind(client_id).bind(audience).fetch_one(pool).await?;
        Ok::<_, StorageError>((rows, total))
    })?;
    Ok((rows.into_iter().map(GrantRow::into_grant).collect::<Result<_, _>>()?, total))
}

/// Writes a grant's scopes; false if there is no such grant.
pub async fn update_client_grant(db: &Db, grant: &ClientGrant) -> Result<bool, StorageError> {
    db_run!(db, |pool| Ok(sqlx::query("UPDATE oauth_client_grants SET scope = $1 WHERE id = $2")
        .bind(to_json(&grant.scope))
        .bind(&grant.id)
        .execute(pool)
        .await?
        .rows_affected()
        == 1))
}

/// Deletes a grant; false if there was none.
pub async fn delete_client_grant(db: &Db, id: &str) -> Result<bool, StorageError> {
    db_run!(db, |pool| Ok(sqlx::query("DELETE FROM oauth_client_grants WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected()
        == 1))
}

/// A client and the SHA-256 of its secret (`None` for a public client), for client authentication.
pub async fn client_with_secret_hash(
    db: &Db,
    client_id: &str,
) -> Result<Option<(OAuthClient, Option<String>)>, StorageError> {
    #[derive(sqlx::FromRow)]
    struct WithHash {
        #[sqlx(flatten)]
        client: ClientRow,
        secret_hash: Option<String>,
    }
    let sql = format!("SELECT {CLIENT_COLUMNS}, secret_hash FROM oauth_clients WHERE client_id = $1");
    let row = db_run!(db, |pool| Ok::<_, StorageError>(
        sqlx::query_as::<_, WithHash>(&sql).bind(client_id).fetch_optional(pool).await?
    ))?;
    row.map(|row| row.client.into_client().map(|(client, _)| (client, row.secret_hash))).transpose()
}

/// The grant of `client_id` for `audience`.
pub async fn client_grant_for(db: &Db, client_id: &str, audience: &str) -> Result<Option<ClientGrant>, StorageError> {
    let sql = format!("SELECT {GRANT_COLUMNS} FROM oauth_client_grants WHERE client_id = $1 AND audience = $2");
    let row = db_run!(db, |pool| Ok::<_, StorageError>(
        sqlx::query_as::<_, GrantRow>(&sql).bind(client_id).bind(audience).fetch_optional(pool).await?
    ))?;
    row.map(GrantRow::into_grant).transpose()
}

/// The longest access-token lifetime (seconds) of the APIs signing with `alg`, if any does.
pub async fn longest_api_token_lifetime(db: &Db, alg: Algorithm) -> Result<Option<i64>, StorageError> {
    const SQL: &str = "SELECT MAX(token_lifetime) FROM oauth_resource_servers WHERE signing_alg = $1";
    db_run!(db, |pool| Ok(sqlx::query_scalar::<_, Option<i64>>(SQL).bind(alg.as_str()).fetch_one(pool).await?))
}

/// True if some client lists `origin` among its `web_origins`.
pub async fn any_client_with_origin(db: &Db, origin: &str) -> Result<bool, StorageError> {
    // A quoted-string match narrows the rows; the JSON is then read to compare exactly.
    let pattern = format!("%{}%", serde_json::to_string(origin).unwrap_or_default());
    const SQL: &str = "SELECT web_origins FROM oauth_clients WHERE web_origins LIKE $1";
    let rows: Vec<String> = db_run!(db, |pool| sqlx::query_scalar(SQL).bind(&pattern).fetch_all(pool).await)?;
    Ok(rows
        .iter()
        .any(|text| json_list::<String>(text, "web_origins").is_ok_and(|list| list.iter().any(|o| o == origin))))
}
