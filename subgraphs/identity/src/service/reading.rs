//! Reading users: one by id, and pages of users filtered by status and searched by address
//! or display name.

use sea_orm::{
    ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait as _, Func, LikeExpr},
};
use uuid::Uuid;

use super::{Identity, IdentityError, IdentityResult, MAX_SEARCH, UserPage, UserQuery};
use crate::entity::user;

impl Identity {
    pub async fn user(&self, id: Uuid) -> IdentityResult<Option<user::Model>> {
        Ok(user::Entity::find_by_id(id).one(&self.db).await?)
    }

    /// One page of users in id order (ids are UUIDv7: creation order), after `after`.
    pub async fn users(
        &self,
        first: u64,
        after: Option<Uuid>,
        query: &UserQuery,
    ) -> IdentityResult<UserPage> {
        let mut filter = Condition::all();
        if let Some(status) = query.status {
            filter = filter.add(user::Column::Status.eq(status.as_str()));
        }
        if let Some(search) = query
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if search.chars().count() > MAX_SEARCH {
                return Err(IdentityError::input(
                    "filter.search",
                    format!("search must be at most {MAX_SEARCH} characters"),
                ));
            }
            // A NUL ends the pattern early on SQLite (it then matches everyone).
            if let Some(c) = search.chars().find(|c| c.is_control()) {
                return Err(IdentityError::input(
                    "filter.search",
                    format!(
                        "search must not contain control characters (found U+{:04X})",
                        u32::from(c)
                    ),
                ));
            }
            let pattern = format!("%{}%", escape_like(&search.to_lowercase()));
            filter = filter.add(
                Condition::any()
                    .add(
                        Expr::col(user::Column::EmailKey)
                            .like(LikeExpr::new(pattern.clone()).escape('\\')),
                    )
                    .add(
                        Expr::expr(Func::lower(Expr::col(user::Column::DisplayName)))
                            .like(LikeExpr::new(pattern).escape('\\')),
                    ),
            );
        }
        let total_count = user::Entity::find()
            .filter(filter.clone())
            .count(&self.db)
            .await?;
        let mut page = user::Entity::find().filter(filter);
        if let Some(after) = after {
            page = page.filter(user::Column::Id.gt(after));
        }
        let mut users = page
            .order_by_asc(user::Column::Id)
            .limit(first + 1)
            .all(&self.db)
            .await?;
        let has_next_page = users.len() as u64 > first;
        users.truncate(first as usize);
        Ok(UserPage {
            users,
            has_next_page,
            total_count,
        })
    }
}

fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
