//! The OAuth provider's router.

use utoipa_axum::{router::OpenApiRouter, routes};

use super::token;
use crate::state::AppState;

/// The routes of the OAuth provider.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(token::token))
}
