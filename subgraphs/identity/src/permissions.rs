//! Every permission code the identity subgraph checks, in one place: this list becomes the
//! identity part of the permission catalog.

/// Read any user's profile, list and search users, resolve `User` entities of others.
pub const USER_READ: &str = "identity.user.read";
/// Change another user's account status (enable, disable).
pub const USER_UPDATE: &str = "identity.user.update";
/// Delete a user account.
pub const USER_DELETE: &str = "identity.user.delete";

/// `(code, description)` of every code above.
pub const CATALOG: &[(&str, &str)] = &[
    (USER_READ, "Read any user's profile and list users"),
    (USER_UPDATE, "Enable or disable user accounts"),
    (USER_DELETE, "Delete user accounts"),
];
