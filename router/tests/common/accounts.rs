//! The accounts test subgraph: users by id, with a `nickname` that fails for user 2 so that
//! error paths and null propagation can be tested.

use async_graphql::{ComplexObject, Object, SimpleObject};

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct User {
    pub id: async_graphql::ID,
    pub name: String,
    #[graphql(shareable)]
    pub username: String,
}

#[ComplexObject]
impl User {
    /// Fails for user 2, to test error paths and null propagation.
    async fn nickname(&self) -> async_graphql::Result<String> {
        if self.id.as_str() == "2" {
            Err("nickname lookup failed".into())
        } else {
            Ok(format!("nick-{}", self.name))
        }
    }
}

fn users() -> Vec<User> {
    vec![
        User {
            id: "1".into(),
            name: "Ada".into(),
            username: "@ada".into(),
        },
        User {
            id: "2".into(),
            name: "Alan".into(),
            username: "@alan".into(),
        },
    ]
}

pub struct AccountsQuery;

#[Object(name = "Query")]
impl AccountsQuery {
    async fn me(&self) -> User {
        users().remove(0)
    }
    async fn users(&self) -> Vec<Option<User>> {
        users().into_iter().map(Some).collect()
    }
    #[graphql(entity)]
    async fn find_user(&self, id: async_graphql::ID) -> Option<User> {
        users().into_iter().find(|u| u.id == id)
    }
}
