//! Latchkey: one small, fast, secure authentication server (see `../shared/DESIGN.md`).
//!
//! Reading order: `app` (the merged router, start-up), `state` (what handlers share), `http` (the
//! toolkit: layers, JSON bodies, cookies, the accept loop), then the capabilities (`accounts`,
//! `sessions`, `principal` with tenant resolution, `api_keys`, `orgs`, `extensions`, `service_tokens`,
//! `oauth` with its `management` API, `bff` (the token handler, being built), `social` (sign-in through
//! upstream OpenID Connect providers)),
//! `ops` (health, metrics, the OpenAPI document), then the core they stand on (`tokens`, `crypto`,
//! `storage`, `config`). README "Code tour" has a line per module.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
// No `missing_docs`: nearly every item is `pub` for the black-box tests, and the lint bred comments that
// repeat the name. An item is documented where its name does not say it all.

pub mod accounts;
pub mod api_keys;
pub mod app;
pub mod audit;
pub mod bff;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
pub mod extensions;
pub mod http;
pub mod management;
pub mod oauth;
pub mod ops;
pub mod orgs;
pub mod paths;
pub mod principal;
pub mod rate_limit;
pub mod service_tokens;
pub mod sessions;
pub mod social;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod tokens;
