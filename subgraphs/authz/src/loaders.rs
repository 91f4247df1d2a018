//! DataLoaders for the many-to-many look-ups: all keys wanted at one level of a query are
//! collected and loaded with one SQL statement (per [`MAX_BATCH`] keys). Created per
//! request, so nothing is cached across requests.

use std::{collections::HashMap, sync::Arc, time::Duration};

use keygraph_kernel::batching::PollFence;

use async_graphql::dataloader::{DataLoader, Loader};
use keygraph_kernel::ApiError;
use uuid::Uuid;

use crate::{
    entity::role,
    service::{Authz, GrantedPermission},
};

/// Most keys one statement asks for: a level with more is loaded in several statements, so
/// an `IN (…)` list stays far below the bind-parameter limits (SQLite 32766, Postgres 65535).
pub const MAX_BATCH: usize = 1000;

pub struct RolesOfUser(pub Arc<Authz>);
pub struct PermissionsOfRole(pub Arc<Authz>);
pub struct EffectivePermissionsOfUser(pub Arc<Authz>);

impl Loader<Uuid> for RolesOfUser {
    type Value = Vec<role::Model>;
    type Error = ApiError;

    async fn load(&self, users: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        self.0.roles_of_users(users).await.map_err(Into::into)
    }
}

impl Loader<Uuid> for PermissionsOfRole {
    type Value = Vec<GrantedPermission>;
    type Error = ApiError;

    async fn load(&self, roles: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        self.0.permissions_of_roles(roles).await.map_err(Into::into)
    }
}

impl Loader<Uuid> for EffectivePermissionsOfUser {
    type Value = Vec<String>;
    type Error = ApiError;

    async fn load(&self, users: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        self.0
            .effective_permissions_of_users(users)
            .await
            .map_err(Into::into)
    }
}

/// The loaders of one request.
pub struct Loaders {
    fence: PollFence,
    pub roles_of_user: DataLoader<RolesOfUser>,
    pub permissions_of_role: DataLoader<PermissionsOfRole>,
    pub effective_permissions: DataLoader<EffectivePermissionsOfUser>,
}

fn fenced<T: Loader<Uuid>>(load: T, fence: &PollFence, max_batch: usize) -> DataLoader<T> {
    DataLoader::new(load, fence.spawner())
        .delay(Duration::ZERO)
        .max_batch_size(max_batch)
}

impl Loaders {
    /// `fence` must guard the request's future: batches start when a poll of it ends (see
    /// `keygraph_kernel::batching`), so no timed wait is needed.
    /// At most `max_batch` keys per statement ([`MAX_BATCH`] in the service; the benchmark
    /// also runs with 1, a statement per item, to show what batching saves).
    pub fn new(authz: Arc<Authz>, max_batch: usize, fence: &PollFence) -> Self {
        // The batch task starts after the poll that enqueued the level's keys; the DataLoader's
        // own wait is then unneeded.
        Self {
            roles_of_user: fenced(RolesOfUser(authz.clone()), fence, max_batch),
            permissions_of_role: fenced(PermissionsOfRole(authz.clone()), fence, max_batch),
            effective_permissions: fenced(EffectivePermissionsOfUser(authz), fence, max_batch),
            fence: fence.clone(),
        }
    }

    /// Asks `loader` for `key`, telling the fence a key was asked for.
    async fn batched<T: Loader<Uuid, Error = ApiError>>(
        &self,
        loader: &DataLoader<T>,
        key: Uuid,
    ) -> Result<Option<T::Value>, ApiError> {
        self.fence.note_key();
        loader.load_one(key).await
    }

    pub async fn roles_of_user(&self, user: Uuid) -> Result<Vec<role::Model>, ApiError> {
        Ok(self
            .batched(&self.roles_of_user, user)
            .await?
            .unwrap_or_default())
    }

    pub async fn permissions_of_role(
        &self,
        role: Uuid,
    ) -> Result<Vec<GrantedPermission>, ApiError> {
        Ok(self
            .batched(&self.permissions_of_role, role)
            .await?
            .unwrap_or_default())
    }

    pub async fn effective_permissions(&self, user: Uuid) -> Result<Vec<String>, ApiError> {
        Ok(self
            .batched(&self.effective_permissions, user)
            .await?
            .unwrap_or_default())
    }
}
