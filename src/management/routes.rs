//! The management API's router.

use utoipa_axum::{router::OpenApiRouter, routes};

use super::clients;
use crate::state::AppState;

/// The routes of the management API.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(clients::create_client, clients::list_clients))
        .routes(routes!(clients::get_client, clients::update_client, clients::delete_client))
        .routes(routes!(clients::rotate_secret))
}
