//! The built-in `user` role is the default role every account holds (`authz.default_roles`),
//! not a self-service role: its seeded description says so now. A description an operator
//! changed is left as it is.

use sea_orm_migration::prelude::*;

use super::USER_ROLE;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Roles {
    Table,
    Name,
    Description,
    BuiltIn,
}

const SEEDED: &str = "Signed-in users: their own profile, password, sessions and roles";
const DEFAULT: &str =
    "Every account (authz.default_roles): codes granted here are every signed-in user's";

async fn describe(manager: &SchemaManager<'_>, from: &str, to: &str) -> Result<(), DbErr> {
    let update = Query::update()
        .table(Roles::Table)
        .value(Roles::Description, to)
        .and_where(Expr::col(Roles::Name).eq(USER_ROLE))
        .and_where(Expr::col(Roles::BuiltIn).eq(true))
        .and_where(Expr::col(Roles::Description).eq(from))
        .to_owned();
    manager.exec_stmt(update).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        describe(manager, SEEDED, DEFAULT).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        describe(manager, DEFAULT, SEEDED).await
    }
}
