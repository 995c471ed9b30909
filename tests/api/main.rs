//! One integration binary; each module is one capability or concern.

mod helpers;

mod accounts;
mod cli;
mod multi_node;
mod ops;
mod security;
mod sessions;
mod api_keys;
mod extensions;
mod orgs;
