//! Authority: who may hand out or take away what, who is more powerful than whom, and that
//! the last active administrator (holder of `*`) stays one.

use std::collections::BTreeSet;

use keygraph_kernel::{permissions::list_codes, token::grant_covers};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use uuid::Uuid;

use super::{Authority, Authz, AuthzError, AuthzResult};

impl Authz {
    /// For identity, before it changes or deletes `target` on `actor`'s behalf: what each
    /// holds now, and who the administrators (holders of `*`) are.
    pub async fn authority(&self, actor: Uuid, target: Uuid) -> AuthzResult<Authority> {
        let (actor_permissions, target_beyond_actor) = self.compare(actor, target).await?;
        let administrators = administrators(&self.db).await?;
        Ok(Authority {
            actor_permissions,
            target_beyond_actor,
            target_holds_everything: administrators.contains(&target),
            others_holding_everything: administrators
                .into_iter()
                .filter(|u| *u != target)
                .collect(),
        })
    }

    /// The codes and wildcards a role grants.
    pub(super) async fn grants_of_role(&self, role: Uuid) -> AuthzResult<Vec<String>> {
        Ok(self
            .permissions_of_roles(&[role])
            .await?
            .remove(&role)
            .unwrap_or_default()
            .into_iter()
            .map(|g| g.code)
            .collect())
    }

    /// Nobody hands out (or takes away) what they do not hold, and sensitive changes read the
    /// actor's current grants, never their token (whose `scope` may be up to its lifetime
    /// old): the actor must hold `needed` now, and everything `grants` give. A code must be
    /// covered by one of the actor's grants; a wildcard by the same or a wider wildcard, so a
    /// code defined later under it is one the actor holds too.
    pub(super) async fn require_authority(
        &self,
        actor: Uuid,
        needed: &str,
        grants: &[String],
    ) -> AuthzResult<()> {
        let own = self.grants_of_user(actor).await?;
        let holds = |code: &str| own.iter().any(|g| grant_covers(g, code));
        if !holds(needed) {
            return Err(AuthzError::Forbidden(format!(
                "this needs the permission `{needed}`, which you do not hold (any more)"
            )));
        }
        for grant in grants {
            if !holds(grant) {
                return Err(AuthzError::Forbidden(format!(
                    "you can only hand out or take away permissions you hold yourself; you do not hold `{grant}`"
                )));
            }
        }
        Ok(())
    }

    /// The actor's catalog codes, and those `target` holds beyond them (none when the actor
    /// is the target). One statement.
    async fn compare(&self, actor: Uuid, target: Uuid) -> AuthzResult<(Vec<String>, Vec<String>)> {
        let mut effective = self
            .effective_permissions_of_users(&[actor, target])
            .await?;
        let own = effective.remove(&actor).unwrap_or_default();
        if actor == target {
            return Ok((own, Vec::new()));
        }
        let held: BTreeSet<&str> = own.iter().map(String::as_str).collect();
        let beyond = effective
            .remove(&target)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !held.contains(c.as_str()))
            .collect();
        Ok((own, beyond))
    }

    /// The actor holds every permission `target` holds (anyone may act on themself).
    pub(super) async fn require_superior(&self, actor: Uuid, target: Uuid) -> AuthzResult<()> {
        let (_, beyond) = self.compare(actor, target).await?;
        let missing: Vec<&str> = beyond.iter().map(String::as_str).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(AuthzError::Forbidden(format!(
            "this user holds permissions you do not ({}); only someone who holds all of them may take their roles away",
            list_codes(&missing)
        )))
    }

    /// The administrators before a change that may take `*` from someone (`touches`), with
    /// the change serialized against others like it; `None` when it cannot.
    pub(super) async fn administrators_before(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        touches: bool,
    ) -> AuthzResult<Option<BTreeSet<Uuid>>> {
        if !touches {
            return Ok(None);
        }
        if txn.get_database_backend() == DbBackend::Postgres {
            // Two replicas each demoting one of the last two administrators must not both
            // see the other still there (SQLite writes are serialized already).
            txn.execute_unprepared("SELECT pg_advisory_xact_lock(4137201907)")
                .await?;
        }
        Ok(Some(administrators(txn).await?))
    }

    /// After a change inside `txn`: if it took `*` from every active administrator, it is
    /// refused (the transaction is dropped, so nothing changed).
    pub(super) async fn ensure_an_administrator_remains(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        before: Option<BTreeSet<Uuid>>,
    ) -> AuthzResult<()> {
        let Some(before) = before else {
            return Ok(());
        };
        let after = administrators(txn).await?;
        let lost: Vec<Uuid> = before.difference(&after).copied().collect();
        if lost.is_empty() || self.any_active(after.iter().copied()).await? {
            return Ok(());
        }
        if self.any_active(lost.into_iter()).await? {
            return Err(AuthzError::Conflict(
                "this would leave no active administrator (holder of `*`); make another user an administrator first".into(),
            ));
        }
        Ok(())
    }

    /// Whether identity has any of `users` as an active account.
    async fn any_active(&self, users: impl Iterator<Item = Uuid>) -> AuthzResult<bool> {
        for user in users {
            let account = self
                .identity
                .get_json::<serde_json::Value>(&format!("/internal/users/{user}"))
                .await
                .map_err(AuthzError::IdentityUnavailable)?;
            if account.is_some_and(|a| a["status"] == "active") {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Users holding `*` through any role.
async fn administrators<C: ConnectionTrait>(db: &C) -> AuthzResult<BTreeSet<Uuid>> {
    let statement = Statement::from_string(
        db.get_database_backend(),
        "SELECT DISTINCT ur.user_id AS user_id FROM user_roles ur \
         JOIN role_permissions rp ON rp.role_id = ur.role_id \
         WHERE rp.permission_code = '*'",
    );
    db.query_all_raw(statement)
        .await?
        .iter()
        .map(|row| row.try_get::<Uuid>("", "user_id").map_err(Into::into))
        .collect()
}
