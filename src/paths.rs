//! Every path the server answers, for the library's clients (the black-box tests, benchmarks). Each is
//! defined by the capability that serves it; nothing in `src/` imports this module.

pub use crate::{
    accounts::paths::*, api_keys::paths::*, bff::paths::*, extensions::paths::*, management::paths::*, oauth::paths::*,
    ops::paths::*, orgs::paths::*, principal::paths::*, service_tokens::paths::*, sessions::paths::*, social::paths::*,
};
