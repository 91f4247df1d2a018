//! When a second factor is due: whether the user has a confirmed one, and whether a role
//! they hold requires one (`auth.mfa.required_for_roles`).

use sea_orm::PaginatorTrait as _;
use uuid::Uuid;

use super::confirmed_factors;
use crate::service::{Auth, AuthResult, Grants};

impl Auth {
    /// Whether the user has a confirmed second factor.
    pub async fn has_second_factor(&self, user: Uuid) -> AuthResult<bool> {
        Ok(confirmed_factors(user).count(&self.db).await? > 0)
    }

    /// Whether one of the roles held is in `auth.mfa.required_for_roles`.
    pub(crate) fn role_requires_second_factor(&self, grants: &Grants) -> bool {
        grants
            .roles
            .iter()
            .any(|role| self.mfa.required_for_roles.contains(role))
    }
}
