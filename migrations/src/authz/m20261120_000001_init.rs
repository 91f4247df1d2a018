use chrono::Utc;
use keygraph_kernel::permissions::{CATALOG, module_of};
use sea_orm_migration::{prelude::*, schema::*};
use uuid::Uuid;

use super::{ADMIN_ROLE, USER_ROLE};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Permissions {
    Table,
    Code,
    Module,
    Description,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Roles {
    Table,
    Id,
    Name,
    Description,
    BuiltIn,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RolePermissions {
    Table,
    RoleId,
    PermissionCode,
    GrantedBy,
    GrantedAt,
}

#[derive(DeriveIden)]
enum UserRoles {
    Table,
    UserId,
    RoleId,
    GrantedBy,
    GrantedAt,
}

fn seed_error(e: impl std::fmt::Display) -> DbErr {
    DbErr::Migration(format!("authz seed: {e}"))
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Permissions::Table)
                    .col(string_len(Permissions::Code, 128).primary_key())
                    .col(string_len(Permissions::Module, 64))
                    .col(string_len(Permissions::Description, 500))
                    .col(timestamp_with_time_zone(Permissions::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Roles::Table)
                    .col(uuid(Roles::Id).primary_key())
                    .col(string_len_uniq(Roles::Name, 64))
                    .col(string_len(Roles::Description, 500))
                    .col(boolean(Roles::BuiltIn).default(false))
                    .col(timestamp_with_time_zone(Roles::CreatedAt))
                    .col(timestamp_with_time_zone(Roles::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RolePermissions::Table)
                    .col(uuid(RolePermissions::RoleId))
                    // A catalog code, or a wildcard grant such as `identity.user.*` or `*`.
                    .col(string_len(RolePermissions::PermissionCode, 128))
                    .col(uuid_null(RolePermissions::GrantedBy))
                    .col(timestamp_with_time_zone(RolePermissions::GrantedAt))
                    .primary_key(
                        Index::create()
                            .col(RolePermissions::RoleId)
                            .col(RolePermissions::PermissionCode),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("role_permissions_role")
                            .from(RolePermissions::Table, RolePermissions::RoleId)
                            .to(Roles::Table, Roles::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UserRoles::Table)
                    .col(uuid(UserRoles::UserId))
                    .col(uuid(UserRoles::RoleId))
                    .col(uuid_null(UserRoles::GrantedBy))
                    .col(timestamp_with_time_zone(UserRoles::GrantedAt))
                    .primary_key(
                        Index::create()
                            .col(UserRoles::UserId)
                            .col(UserRoles::RoleId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("user_roles_role")
                            .from(UserRoles::Table, UserRoles::RoleId)
                            .to(Roles::Table, Roles::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("user_roles_role")
                    .table(UserRoles::Table)
                    .col(UserRoles::RoleId)
                    .to_owned(),
            )
            .await?;
        crate::outbox::create(manager).await?;

        let now = Utc::now();
        let mut permissions = Query::insert()
            .into_table(Permissions::Table)
            .columns([
                Permissions::Code,
                Permissions::Module,
                Permissions::Description,
                Permissions::CreatedAt,
            ])
            .to_owned();
        for (code, description) in CATALOG {
            permissions
                .values([
                    (*code).into(),
                    module_of(code).into(),
                    (*description).into(),
                    now.into(),
                ])
                .map_err(seed_error)?;
        }
        manager.exec_stmt(permissions).await?;

        let admin = Uuid::now_v7();
        let user = Uuid::now_v7();
        let mut roles = Query::insert()
            .into_table(Roles::Table)
            .columns([
                Roles::Id,
                Roles::Name,
                Roles::Description,
                Roles::BuiltIn,
                Roles::CreatedAt,
                Roles::UpdatedAt,
            ])
            .to_owned();
        for (id, name, description) in [
            (admin, ADMIN_ROLE, "Administrators: every permission (`*`)"),
            (
                user,
                USER_ROLE,
                "Signed-in users: their own profile, password, sessions and roles",
            ),
        ] {
            roles
                .values([
                    id.into(),
                    name.into(),
                    description.into(),
                    true.into(),
                    now.into(),
                    now.into(),
                ])
                .map_err(seed_error)?;
        }
        manager.exec_stmt(roles).await?;

        let admin_grant = Query::insert()
            .into_table(RolePermissions::Table)
            .columns([
                RolePermissions::RoleId,
                RolePermissions::PermissionCode,
                RolePermissions::GrantedAt,
            ])
            .values([admin.into(), "*".into(), now.into()])
            .map_err(seed_error)?
            .to_owned();
        manager.exec_stmt(admin_grant).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "outbox",
            "user_roles",
            "role_permissions",
            "roles",
            "permissions",
        ] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
