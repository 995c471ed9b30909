//! The password policy (DESIGN.md "Capability 1"): 8–128 characters counted as Unicode scalar values
//! (NIST SP 800-63B), no composition rules, and not on the built-in list of common passwords.

use std::{collections::HashSet, sync::OnceLock};

/// Minimum length in characters.
pub const MIN_LENGTH: usize = 8;
/// Maximum length in characters.
pub const MAX_LENGTH: usize = 128;

/// Why a new password is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PolicyViolation {
    /// Fewer than [`MIN_LENGTH`] characters.
    TooShort,
    /// More than [`MAX_LENGTH`] characters.
    TooLong,
    /// On the common-password list.
    Compromised,
}

static COMMON: OnceLock<HashSet<&'static str>> = OnceLock::new();

/// True if `password` (case-insensitively) is on the built-in list (see `data/README.md`).
pub fn is_common(password: &str) -> bool {
    let list = COMMON.get_or_init(|| include_str!("data/common-passwords.txt").lines().collect());
    list.contains(password.to_lowercase().as_str())
}

/// Checks a new password against the policy.
pub fn check(password: &str) -> Result<(), PolicyViolation> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(PolicyViolation::TooShort);
    }
    if length > MAX_LENGTH {
        return Err(PolicyViolation::TooLong);
    }
    if is_common(password) {
        return Err(PolicyViolation::Compromised);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_is_counted_in_characters_not_bytes() {
        // Seven 3-byte characters: 21 bytes, but too short.
        assert_eq!(check("日本語日本語日"), Err(PolicyViolation::TooShort));
        assert_eq!(check("日本語日本語日本"), Ok(()));
        assert_eq!(check(&"é".repeat(128)), Ok(()));
        assert_eq!(check(&"é".repeat(129)), Err(PolicyViolation::TooLong));
    }

    #[test]
    fn common_passwords_are_refused_in_any_case() {
        assert_eq!(check("password"), Err(PolicyViolation::Compromised));
        assert_eq!(check("PassWord1"), Err(PolicyViolation::Compromised));
        assert_eq!(check("12345678"), Err(PolicyViolation::Compromised));
        assert_eq!(check("correct horse battery staple"), Ok(()));
    }

    #[test]
    fn the_list_has_thousands_of_entries() {
        assert!(include_str!("data/common-passwords.txt").lines().count() > 5_000);
    }
}
