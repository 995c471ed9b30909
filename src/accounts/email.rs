//! Email addresses, parsed at the edge: trimmed, lower-cased, then checked for a plausible shape
//! (DESIGN.md contract details). Deliverability is not our business here; shape is.

use std::fmt;

/// A normalised, syntactically valid email address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Trims, lower-cases and validates `raw`.
    pub fn parse(raw: &str) -> Option<Email> {
        let email = raw.trim().to_lowercase();
        let (local, domain) = email.rsplit_once('@')?;
        let valid_local = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.chars().all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let valid_domain = labels.len() >= 2
            && domain.len() <= 253
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
            && labels.last().is_some_and(|tld| tld.len() >= 2 && !tld.chars().all(|c| c.is_ascii_digit()));
        (valid_local && valid_domain && email.len() <= 254).then_some(Email(email))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Email;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(Email::parse("  Alice@Example.COM ").unwrap().as_str(), "alice@example.com");
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "alice@example",
            "a b@example.com",
            "alice@@example.com",
            "alice@example..com",
            ".alice@example.com",
            "alice@-example.com",
            "alice@example.c",
        ] {
            assert!(Email::parse(bad).is_none(), "{bad} accepted");
        }
    }

    #[test]
    fn ordinary_emails_are_accepted() {
        for good in ["a@b.co", "first.last+tag@sub.example.org", "o'brien@example.ie"] {
            assert!(Email::parse(good).is_some(), "{good} refused");
        }
    }
}
