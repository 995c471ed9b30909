//! SQL of the OAuth provider.

use super::clients::{AppType, AuthMethod, GrantType, OAuthClient, RefreshTokenSettings, SecretChange};
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
    StorageError::Other(sqlx::Error::Decode(format!("oauth_clients.{what} holds an unknown value").into()))
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
    let sql = format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE client_id = $1");
    let row = db_run!(db, |pool| Ok::<_, StorageError>(
        sqlx::query_as::<_, ClientRow>(&sql).bind(client_id).fetch_optional(pool).await?
    ))?;
    row.map(ClientRow::into_client).transpose()
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

/// Writes a client's fields and changes its secret hash as told; false if there is no such client.
pub async fn update_client(db: &Db, client: &OAuthClient, secret: SecretChange) -> Result<bool, StorageError> {
    let (change, hash) = match secret {
        SecretChange::Keep => ("keep", None),
        SecretChange::Set(hash) => ("set", Some(hash)),
        SecretChange::Clear => ("clear", None),
    };
    const SQL: &str = "UPDATE oauth_clients SET name = $1, description = $2, is_first_party = $3, \
                       token_endpoint_auth_method = $4, grant_types = $5, callbacks = $6, allowed_logout_urls = $7, \
                       web_origins = $8, jwt_alg = $9, refresh_token = $10, updated_at = $11, \
                       secret_hash = CASE $12 WHEN 'keep' THEN secret_hash WHEN 'set' THEN $13 ELSE NULL END \
                       WHERE client_id = $14";
    db_run!(db, |pool| Ok(sqlx::query(SQL)
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
        .execute(pool)
        .await?
        .rows_affected()
        == 1))
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
