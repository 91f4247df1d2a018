//! The permission catalog: every `module.resource.action` code a Keygraph service checks, in
//! one place. Authz seeds it; tokens carry the codes a user holds as `scope`.

/// Codes the identity subgraph checks.
pub mod identity {
    /// Read any user's profile, list and search users, resolve others' `User` entities.
    pub const USER_READ: &str = "identity.user.read";
    /// Enable or disable another user's account.
    pub const USER_UPDATE: &str = "identity.user.update";
    /// Delete a user account.
    pub const USER_DELETE: &str = "identity.user.delete";
}

/// Codes the authz subgraph checks.
pub mod authz {
    /// Read roles, their permissions and other users' roles.
    pub const ROLE_READ: &str = "authz.role.read";
    /// Create roles.
    pub const ROLE_CREATE: &str = "authz.role.create";
    /// Rename and describe roles.
    pub const ROLE_UPDATE: &str = "authz.role.update";
    /// Delete roles (built-in ones excepted).
    pub const ROLE_DELETE: &str = "authz.role.delete";
    /// Grant permissions to roles and revoke them.
    pub const ROLE_GRANT: &str = "authz.role.grant";
    /// Assign roles to users and unassign them.
    pub const ROLE_ASSIGN: &str = "authz.role.assign";
    /// Read the permission catalog and other users' permissions.
    pub const PERMISSION_READ: &str = "authz.permission.read";
    /// Add permissions to the catalog.
    pub const PERMISSION_DEFINE: &str = "authz.permission.define";
}

/// Codes the auth subgraph checks.
pub mod auth {
    /// Revoke other users' sessions.
    pub const SESSION_REVOKE: &str = "auth.session.revoke";
    /// Rotate the token signing key.
    pub const KEY_ROTATE: &str = "auth.key.rotate";
    /// Remove every second factor and recovery code of another user (who lost them).
    pub const FACTOR_RESET: &str = "auth.factor.reset";
}

/// Codes the audit subgraph checks.
pub mod audit {
    /// Read the audit log.
    pub const EVENT_READ: &str = "audit.event.read";
    pub const EVENT_VERIFY: &str = "audit.event.verify";
    pub const CHECKPOINT_CREATE: &str = "audit.checkpoint.create";
}

/// `(code, description)` of every code above.
pub const CATALOG: &[(&str, &str)] = &[
    (
        identity::USER_READ,
        "Read any user's profile and list users",
    ),
    (identity::USER_UPDATE, "Enable or disable user accounts"),
    (identity::USER_DELETE, "Delete user accounts"),
    (
        authz::ROLE_READ,
        "Read roles, their permissions and other users' roles",
    ),
    (authz::ROLE_CREATE, "Create roles"),
    (authz::ROLE_UPDATE, "Rename and describe roles"),
    (authz::ROLE_DELETE, "Delete roles"),
    (
        authz::ROLE_GRANT,
        "Grant permissions to roles and revoke them",
    ),
    (
        authz::ROLE_ASSIGN,
        "Assign roles to users and unassign them",
    ),
    (
        authz::PERMISSION_READ,
        "Read the permission catalog and other users' permissions",
    ),
    (authz::PERMISSION_DEFINE, "Add permissions to the catalog"),
    (auth::SESSION_REVOKE, "Revoke other users' sessions"),
    (auth::KEY_ROTATE, "Rotate the token signing key"),
    (
        auth::FACTOR_RESET,
        "Reset another user's second factors and recovery codes",
    ),
    (audit::EVENT_READ, "Read the audit log"),
    (
        audit::EVENT_VERIFY,
        "Verify the audit log's hash chain and signed checkpoints",
    ),
    (
        audit::CHECKPOINT_CREATE,
        "Sign a checkpoint of the audit log on demand",
    ),
];

/// Longest code accepted.
pub const MAX_CODE_LENGTH: usize = 128;

/// Codes for a message: the first five in backticks, then how many more.
pub fn list_codes(codes: &[&str]) -> String {
    let shown: Vec<String> = codes.iter().take(5).map(|c| format!("`{c}`")).collect();
    match codes.len() - shown.len() {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// A permission code: exactly `module.resource.action`, each segment a lowercase letter
/// followed by lowercase letters, digits or `_`.
pub fn validate_code(code: &str) -> Result<(), String> {
    let segments: Vec<&str> = code.split('.').collect();
    if code.len() > MAX_CODE_LENGTH {
        return Err(format!(
            "permission codes are at most {MAX_CODE_LENGTH} characters"
        ));
    }
    if segments.len() != 3 {
        return Err(format!(
            "`{code}` is not a permission code: expected module.resource.action, like identity.user.read"
        ));
    }
    for segment in segments {
        validate_segment(code, segment)?;
    }
    Ok(())
}

/// A grant: a code, or a prefix of whole segments ending in `*` (`identity.user.*`,
/// `identity.*`, or `*` for everything). `*` stands only as a whole trailing segment.
pub fn validate_grant(grant: &str) -> Result<(), String> {
    if grant == "*" {
        return Ok(());
    }
    match grant.strip_suffix(".*") {
        Some(prefix) => {
            let segments: Vec<&str> = prefix.split('.').collect();
            if segments.len() > 2 {
                return Err(format!(
                    "`{grant}` has too many segments: a wildcard grant is `*`, `module.*` or `module.resource.*`"
                ));
            }
            for segment in segments {
                validate_segment(grant, segment)?;
            }
            Ok(())
        }
        None if grant.contains('*') => Err(format!(
            "`{grant}`: `*` is allowed only as a whole trailing segment, like identity.user.*"
        )),
        None => validate_code(grant),
    }
}

fn validate_segment(code: &str, segment: &str) -> Result<(), String> {
    if segment.contains('*') {
        return Err(format!(
            "`{code}`: `*` is allowed only as a whole trailing segment, like identity.user.*"
        ));
    }
    let mut chars = segment.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{code}`: each segment must start with a lowercase letter and hold only lowercase letters, digits and _"
        ))
    }
}

/// The module of a code or grant (`identity` for `identity.user.*`, `*` for `*`).
pub fn module_of(code: &str) -> &str {
    code.split('.').next().unwrap_or(code)
}

/// Words for a grant that has no catalog entry (a wildcard).
pub fn grant_description(grant: &str) -> String {
    match grant.strip_suffix('*') {
        Some("") => "Every permission".to_owned(),
        Some(prefix) => format!("Every permission whose code starts with `{prefix}`"),
        None => format!("The permission `{grant}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_codes_are_valid_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for (code, description) in CATALOG {
            validate_code(code).expect("valid catalog code");
            assert!(!description.is_empty());
            assert!(seen.insert(*code), "{code} listed twice");
        }
    }

    #[test]
    fn codes_and_grants() {
        assert!(validate_code("identity.user.read").is_ok());
        assert!(validate_code("billing.invoice.set_due2").is_ok());
        for bad in [
            "identity.user",
            "identity.user.read.x",
            "Identity.user.read",
            "identity..read",
            "identity.user.*",
            "1d.user.read",
            "identity.us-er.read",
            "",
        ] {
            assert!(validate_code(bad).is_err(), "{bad}");
        }
        for good in ["*", "identity.*", "identity.user.*", "identity.user.read"] {
            assert!(validate_grant(good).is_ok(), "{good}");
        }
        for bad in [
            "identity.user*",
            "*.user.read",
            "identity.*.read",
            "identity.user.read.*",
            "**",
            "identity.user.r*",
        ] {
            assert!(validate_grant(bad).is_err(), "{bad}");
        }
        assert!(
            validate_grant("identity.*.read")
                .expect_err("mid")
                .contains("whole trailing segment")
        );
    }
}
