//! DataLoaders: the statements a query runs do not grow with the number of users. In its own
//! test binary so no other test competes for the CPU while a level's keys are collected.

mod common;

use common::{ENTITIES, Stack, reps};
use keygraph_kernel::testing::Backend;
use uuid::Uuid;

keygraph_kernel::on_both_backends!(one_statement_per_level_for_any_number_of_users);

async fn statements_for(stack: &Stack, users: &[Uuid]) -> usize {
    let admin = stack.admin();
    let before = stack.statements.len();
    let answer = stack.gql(ENTITIES, reps(users), Some(&admin)).await;
    let ran = stack.statements.since(before);
    let entities = answer.data()["_entities"].as_array().expect("list");
    assert_eq!(entities.len(), users.len());
    for entity in entities {
        // `a`, `b` and `c`, then `user`, which every account holds (`authz.default_roles`).
        let roles = entity["roles"].as_array().expect("roles");
        assert_eq!(roles.len(), 4, "{entity}");
        assert!(
            roles[..3]
                .iter()
                .all(|r| r["permissions"].as_array().is_some_and(|p| p.len() == 2)),
            "{entity}"
        );
        assert_eq!(roles[3]["name"], "user", "{entity}");
    }
    assert!(
        ran.len() <= 2,
        "statements for {} users:\n{}",
        users.len(),
        ran.join("\n")
    );
    ran.len()
}

async fn one_statement_per_level_for_any_number_of_users(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let mut roles = Vec::new();
    for (name, codes) in [
        ("a", ["identity.user.read", "identity.user.update"]),
        ("b", ["authz.role.read", "authz.role.*"]),
        ("c", ["audit.event.read", "*"]),
    ] {
        roles.push(stack.seed_role(name, &codes).await);
    }
    let ten = stack.seed_users_with_roles(10, &roles).await;
    let hundred = stack.seed_users_with_roles(100, &roles).await;
    let for_ten = statements_for(&stack, &ten).await;
    let for_hundred = statements_for(&stack, &hundred).await;
    assert_eq!(
        for_ten, for_hundred,
        "the statement count does not grow with the number of users"
    );
    assert_eq!(
        for_ten, 2,
        "one statement for the users' roles, one for the roles' permissions"
    );
}
