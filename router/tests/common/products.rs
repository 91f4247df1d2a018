//! The products test subgraph: products (one field behind a scope, one with an argument), a
//! union and an interface of books and movies; and two later deploys of it, one that adds a
//! root field and one that no longer composes.

use async_graphql::{ComplexObject, Interface, Object, SimpleObject, Union};

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Product {
    pub upc: String,
    pub name: String,
    pub price: i32,
    pub weight: i32,
    /// Needs a scope at the router.
    #[graphql(requires_scopes = "billing.read")]
    pub cost: i32,
}

#[ComplexObject]
impl Product {
    /// The price in a currency: a field with an argument, which inventory requires with
    /// another argument than clients use.
    async fn price_in(&self, currency: String) -> async_graphql::Result<i32> {
        match currency.as_str() {
            "USD" => Ok(self.price),
            "EUR" => Ok(self.price * 2),
            other => Err(format!("unknown currency {other}").into()),
        }
    }
}

fn products() -> Vec<Product> {
    vec![
        Product {
            upc: "1".into(),
            name: "Table".into(),
            price: 899,
            weight: 100,
            cost: 400,
        },
        Product {
            upc: "2".into(),
            name: "Couch".into(),
            price: 1299,
            weight: 1000,
            cost: 700,
        },
        Product {
            upc: "3".into(),
            name: "Chair".into(),
            price: 54,
            weight: 50,
            cost: 20,
        },
    ]
}

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Book {
    pub title: String,
    pub pages: i32,
}

/// `sequel` narrows `Titled.sequel: Titled!` to each type's own (a covariant field).
#[ComplexObject]
impl Book {
    async fn sequel(&self, _ctx: &async_graphql::Context<'_>) -> Book {
        Book {
            title: format!("{} II", self.title),
            pages: self.pages / 2,
        }
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Movie {
    pub id: async_graphql::ID,
    pub title: String,
    pub minutes: i32,
}

#[ComplexObject]
impl Movie {
    async fn sequel(&self, _ctx: &async_graphql::Context<'_>) -> Movie {
        Movie {
            id: self.id.clone(),
            title: format!("{} 2", self.title),
            minutes: self.minutes,
        }
    }
}

#[derive(Union, Clone)]
pub enum Media {
    Book(Book),
    Movie(Movie),
}

#[derive(Interface, Clone)]
#[graphql(
    field(name = "title", ty = "&String"),
    field(name = "sequel", ty = "Titled")
)]
pub enum Titled {
    Book(Book),
    Movie(Movie),
}

pub struct ProductsQuery;

#[Object(name = "Query")]
impl ProductsQuery {
    async fn top_products(&self, first: Option<i32>) -> Vec<Product> {
        top(first)
    }
    async fn media(&self) -> Vec<Media> {
        vec![
            Media::Book(Book {
                title: "Dune".into(),
                pages: 412,
            }),
            Media::Movie(Movie {
                id: "m1".into(),
                title: "Alien".into(),
                minutes: 117,
            }),
        ]
    }
    async fn titled(&self) -> Vec<Titled> {
        vec![
            Titled::Movie(Movie {
                id: "m2".into(),
                title: "Heat".into(),
                minutes: 170,
            }),
            Titled::Book(Book {
                title: "Emma".into(),
                pages: 474,
            }),
        ]
    }
    #[graphql(entity)]
    async fn find_product(&self, upc: String) -> Option<Product> {
        products().into_iter().find(|p| p.upc == upc)
    }
    #[graphql(entity)]
    async fn find_movie(&self, id: async_graphql::ID) -> Option<Movie> {
        let movie = |id: &str, title: &str, minutes| Movie {
            id: id.into(),
            title: title.into(),
            minutes,
        };
        [movie("m1", "Alien", 117), movie("m2", "Heat", 170)]
            .into_iter()
            .find(|m| m.id == id)
    }
}

fn top(first: Option<i32>) -> Vec<Product> {
    products()
        .into_iter()
        .take(first.unwrap_or(5).max(0) as usize)
        .collect()
}

/// Products after a deploy that adds `Query.featured`.
pub struct ProductsQueryV2;

#[Object(name = "Query")]
impl ProductsQueryV2 {
    async fn top_products(&self, first: Option<i32>) -> Vec<Product> {
        top(first)
    }
    async fn featured(&self) -> Option<Product> {
        products().into_iter().nth(2)
    }
    #[graphql(entity)]
    async fn find_product(&self, upc: String) -> Option<Product> {
        products().into_iter().find(|p| p.upc == upc)
    }
}

/// A broken deploy: `User.name` also resolved here (not shareable in accounts) as an Int.
#[derive(SimpleObject, Clone)]
#[graphql(name = "User")]
pub struct ClashingUser {
    pub id: async_graphql::ID,
    pub name: i32,
}

pub struct ProductsQueryBroken;

#[Object(name = "Query")]
impl ProductsQueryBroken {
    async fn top_products(&self, first: Option<i32>) -> Vec<Product> {
        top(first)
    }
    #[graphql(entity)]
    async fn find_user(&self, id: async_graphql::ID) -> ClashingUser {
        ClashingUser { id, name: 0 }
    }
}
