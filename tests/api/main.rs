//! One integration binary; each module is one capability or concern.

mod helpers;

mod accounts;
mod api_keys;
mod audit;
mod better_auth_client;
mod bff;
mod bff_browser;
mod browser;
mod cli;
mod db_faults;
mod durability;
mod extensions;
mod hardening;
mod management;
mod management_users;
mod multi_node;
mod oauth_browser;
mod oauth_flow;
mod oauth_rp;
mod oauth_spa;
mod oauth_token;
mod openapi;
mod ops;
mod orgs;
mod overload;
mod properties;
mod readme;
mod security;
mod service;
mod service_process;
mod sessions;
mod social;
