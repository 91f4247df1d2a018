//! The reviews test subgraph: reviews of products by users (`@provides` the author's
//! username), the reviews of each user and product, and the ratings of movies.

use async_graphql::{ComplexObject, Object, SimpleObject};

#[derive(SimpleObject, Clone)]
pub struct Review {
    pub id: async_graphql::ID,
    pub body: String,
    #[graphql(provides = "username")]
    pub author: ReviewUser,
    pub product: ReviewProduct,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "User", complex)]
pub struct ReviewUser {
    pub id: async_graphql::ID,
    #[graphql(external)]
    pub username: String,
}

#[ComplexObject]
impl ReviewUser {
    async fn reviews(&self) -> Vec<Review> {
        reviews()
            .into_iter()
            .filter(|r| r.author.id == self.id)
            .collect()
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "Product", complex)]
pub struct ReviewProduct {
    pub upc: String,
}

#[ComplexObject]
impl ReviewProduct {
    async fn reviews(&self) -> Vec<Review> {
        reviews()
            .into_iter()
            .filter(|r| r.product.upc == self.upc)
            .collect()
    }
}

/// Movies are entities of products; reviews adds their rating.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Movie")]
pub struct ReviewMovie {
    pub id: async_graphql::ID,
    pub rating: i32,
}

fn review(id: &str, body: &str, user: (&str, &str), upc: &str) -> Review {
    Review {
        id: id.into(),
        body: body.into(),
        author: ReviewUser {
            id: user.0.into(),
            username: user.1.into(),
        },
        product: ReviewProduct { upc: upc.into() },
    }
}

fn reviews() -> Vec<Review> {
    vec![
        review("r1", "Love it", ("1", "@ada"), "1"),
        review("r2", "Too expensive", ("2", "@alan"), "2"),
        review("r3", "Could be better", ("1", "@ada"), "3"),
        review("r4", "Sturdy", ("2", "@alan"), "1"),
    ]
}

pub struct ReviewsQuery;

#[Object(name = "Query")]
impl ReviewsQuery {
    async fn latest_reviews(&self) -> Vec<Review> {
        reviews()
    }
    #[graphql(entity)]
    async fn find_user(&self, id: async_graphql::ID) -> ReviewUser {
        ReviewUser {
            id,
            username: String::new(),
        }
    }
    #[graphql(entity)]
    async fn find_product(&self, upc: String) -> ReviewProduct {
        ReviewProduct { upc }
    }
    #[graphql(entity)]
    async fn find_movie(&self, id: async_graphql::ID) -> ReviewMovie {
        let rating = if id == "m1" { 5 } else { 4 };
        ReviewMovie { id, rating }
    }
}
