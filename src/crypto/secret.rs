//! [`Secret`]: a secret value (server secret, master password, extension-token secrets) that never
//! prints. It sits below `config`, which holds secrets in its settings, and below `crypto::password`,
//! which hashes them, so neither imports the other for it.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A secret value: never printed, compared only in constant time by its users.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The secret itself; call sites are the audit trail of who reads it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        lenient_string(deserializer).map(Secret)
    }
}

/// Accepts a string or any scalar as a string: environment values such as `LATCHKEY_SECRET=1234…`
/// arrive typed as numbers. A visitor rather than an untagged enum: `Secret` is also deserialized from
/// request bodies, and an untagged enum buffers every value first.
pub(crate) fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct Lenient;

    impl serde::de::Visitor<'_> for Lenient {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<String, E> {
            Ok(value.to_owned())
        }
        fn visit_string<E: serde::de::Error>(self, value: String) -> Result<String, E> {
            Ok(value)
        }
        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<String, E> {
            Ok(value.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<String, E> {
            Ok(value.to_string())
        }
        fn visit_i128<E: serde::de::Error>(self, value: i128) -> Result<String, E> {
            Ok(value.to_string())
        }
        fn visit_u128<E: serde::de::Error>(self, value: u128) -> Result<String, E> {
            Ok(value.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<String, E> {
            Ok(value.to_string())
        }
        fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<String, E> {
            Ok(value.to_string())
        }
    }

    deserializer.deserialize_any(Lenient)
}
