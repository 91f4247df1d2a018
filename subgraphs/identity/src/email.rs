//! Email addresses: validation and the case-insensitive key that makes them unique.

/// A validated address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress {
    /// As typed, trimmed, with the domain lower-cased.
    pub display: String,
    /// Entirely lower-cased: the uniqueness and look-up key.
    pub key: String,
}

pub const MAX_EMAIL_LENGTH: usize = 254;

/// Parses an address of the usual `local@domain.tld` form (ASCII; no quoted local parts or
/// IP literals). The error says what is wrong.
pub fn parse_email(input: &str) -> Result<EmailAddress, String> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err("email must not be empty".into());
    }
    if trimmed.len() > MAX_EMAIL_LENGTH {
        return Err(format!(
            "email must be at most {MAX_EMAIL_LENGTH} characters"
        ));
    }
    if !trimmed.is_ascii() {
        return Err("email must contain only ASCII characters".into());
    }
    let Some((local, domain)) = trimmed.rsplit_once('@') else {
        return Err("email must look like name@example.com (no @ found)".into());
    };
    if local.is_empty() || local.len() > 64 {
        return Err("the part before @ must be 1 to 64 characters".into());
    }
    const LOCAL_SPECIALS: &str = "!#$%&'*+/=?^_`{|}~.-";
    if !local
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(c))
    {
        return Err("the part before @ contains a character that is not allowed".into());
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(
            "the part before @ must not start or end with a dot or contain two dots in a row"
                .into(),
        );
    }
    let domain = domain.to_ascii_lowercase();
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err("the domain must have at least two parts, like example.com".into());
    }
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return Err("each part of the domain must be 1 to 63 characters".into());
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(format!("the domain part `{label}` is not valid"));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err("the domain must end in a name, not a number".into());
    }
    let display = format!("{local}@{domain}");
    Ok(EmailAddress {
        key: display.to_ascii_lowercase(),
        display,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalizes() {
        let e = parse_email("  Ada.Lovelace+kg@Example.COM ").expect("valid");
        assert_eq!(e.display, "Ada.Lovelace+kg@example.com");
        assert_eq!(e.key, "ada.lovelace+kg@example.com");
    }

    #[test]
    fn rejects_malformed_with_reasons() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a..b@example.com",
            ".a@example.com",
            "a@-example.com",
            "a@example.123",
            "a b@example.com",
            "ä@example.com",
            "a@exa_mple.com",
        ] {
            assert!(parse_email(bad).is_err(), "{bad:?} must be rejected");
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(parse_email(&long).expect_err("long").contains("1 to 64"));
        let huge = format!("a@{}.com", "b".repeat(300));
        assert!(
            parse_email(&huge)
                .expect_err("huge")
                .contains("at most 254")
        );
    }
}
