//! The management API's router.

use axum::{
    http::{header, HeaderValue},
    response::Response,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{client_grants, clients, logs, resource_servers};
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
        .routes(routes!(logs::list_logs))
        .routes(routes!(logs::get_log))
        .route_layer(axum::middleware::map_response(no_store))
}

async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
