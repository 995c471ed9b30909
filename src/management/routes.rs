//! The management API's router.

use axum::{
    http::{header, HeaderValue},
    response::Response,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{client_grants, clients, keys, logs, organizations, resource_servers, users};
use crate::state::AppState;

/// The routes of the management API; every answer is `Cache-Control: no-store` (some carry a client
/// secret).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(clients::create_client, clients::list_clients))
        .routes(routes!(clients::get_client, clients::update_client, clients::delete_client))
        .routes(routes!(clients::rotate_secret))
        .routes(routes!(resource_servers::create_resource_server, resource_servers::list_resource_servers))
        .routes(routes!(
            resource_servers::get_resource_server,
            resource_servers::update_resource_server,
            resource_servers::delete_resource_server
        ))
        .routes(routes!(client_grants::create_grant, client_grants::list_grants))
        .routes(routes!(client_grants::update_grant, client_grants::delete_grant))
        .routes(routes!(users::create_user, users::list_users))
        .routes(routes!(users::users_by_email))
        .routes(routes!(users::get_user, users::update_user, users::delete_user))
        .routes(routes!(users::list_user_sessions, users::delete_user_sessions))
        .routes(routes!(users::list_user_refresh_tokens, users::delete_user_refresh_tokens))
        .routes(routes!(users::unlink_identity))
        .routes(routes!(users::get_session, users::delete_session))
        .routes(routes!(users::get_refresh_token, users::delete_refresh_token))
        .routes(routes!(organizations::create_organization, organizations::list_organizations))
        .routes(routes!(
            organizations::get_organization,
            organizations::update_organization,
            organizations::delete_organization
        ))
        .routes(routes!(organizations::get_organization_by_name))
        .routes(routes!(organizations::list_members, organizations::add_members, organizations::remove_members))
        .routes(routes!(keys::list_keys))
        .routes(routes!(keys::get_key))
        .routes(routes!(keys::rotate_keys))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(logs::list_logs))
        .routes(routes!(logs::get_log))
        .route_layer(axum::middleware::map_response(no_store))
}

async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
