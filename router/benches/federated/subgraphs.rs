//! The benchmark's four subgraphs, in the shape of The Guild's public gateway benchmark:
//! accounts (users), products (a catalog of 1,000), inventory (stock and shipping, which
//! requires price and weight) and reviews (on users and products, with authors). Each serves
//! async-graphql over axum on a loopback port and can record the bodies it answers with, for
//! the benchmark's floor. A subgraph executes each distinct request body once and answers
//! repeats from memory, so under load the routers' own work is what is measured, not
//! async-graphql's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::{
    ComplexObject, EmptyMutation, EmptySubscription, ID, Object, ObjectType, Schema, SimpleObject,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;

pub const USERS: usize = 10;
pub const PRODUCTS: usize = 1_000;
/// Reviews written by each user.
const REVIEWS_PER_USER: usize = 2;

const TEXT: &str = "Delivered on a wet Tuesday and assembled by lunch. The finish is warmer than the photographs suggest, the joints are tight, and nothing wobbles on an old floor. Two of the screws were short, which the shop replaced without a question. After a month of daily use it still looks new, though the corners collect dust. Would buy again, and probably will for the spare room.";

fn body(id: usize) -> String {
    // 150 to 400 characters, different for neighbouring reviews.
    TEXT.chars().take(150 + (id * 97) % 250).collect()
}

fn review(id: usize) -> Review {
    let author = (id - 1) / REVIEWS_PER_USER + 1;
    // The 20 reviews fall on products 1 to 7, about three each.
    let product = (id - 1) % 7 + 1;
    Review {
        id: ID(id.to_string()),
        body: body(id),
        author_id: author,
        product_upc: product.to_string(),
    }
}

fn all_reviews() -> impl Iterator<Item = Review> {
    (1..=USERS * REVIEWS_PER_USER).map(review)
}

// ---------- accounts ----------

#[derive(SimpleObject, Clone)]
pub struct User {
    id: ID,
    name: String,
    #[graphql(shareable)]
    username: String,
}

fn user(id: usize) -> User {
    User {
        id: ID(id.to_string()),
        name: format!("User Number {id}"),
        username: format!("@user{id}"),
    }
}

pub struct AccountsQuery;

#[Object(name = "Query")]
impl AccountsQuery {
    async fn users(&self) -> Vec<User> {
        (1..=USERS).map(user).collect()
    }
    #[graphql(entity)]
    async fn find_user(&self, id: ID) -> Option<User> {
        let n: usize = id.parse().ok()?;
        (1..=USERS).contains(&n).then(|| user(n))
    }
}

// ---------- products ----------

#[derive(SimpleObject, Clone)]
pub struct Product {
    upc: String,
    name: String,
    price: i32,
    weight: i32,
}

fn product(n: usize) -> Product {
    Product {
        upc: n.to_string(),
        name: format!("Product {n}"),
        price: 100 + (n as i32 * 37) % 900,
        weight: 1 + (n as i32 * 13) % 50,
    }
}

pub struct ProductsQuery;

#[Object(name = "Query")]
impl ProductsQuery {
    async fn top_products(&self, #[graphql(default = 5)] first: i32) -> Vec<Product> {
        let first = usize::try_from(first).unwrap_or(0).min(PRODUCTS);
        (1..=first).map(product).collect()
    }
    #[graphql(entity)]
    async fn find_product(&self, upc: String) -> Option<Product> {
        let n: usize = upc.parse().ok()?;
        (1..=PRODUCTS).contains(&n).then(|| product(n))
    }
}

// ---------- inventory ----------

#[derive(SimpleObject)]
#[graphql(name = "Product", complex)]
pub struct InventoryProduct {
    upc: String,
    #[graphql(external)]
    price: i32,
    #[graphql(external)]
    weight: i32,
}

#[ComplexObject]
impl InventoryProduct {
    async fn in_stock(&self) -> bool {
        self.upc.len() % 2 == 1
    }
    #[graphql(requires = "price weight")]
    async fn shipping_estimate(&self) -> i32 {
        if self.price > 500 { 0 } else { self.weight / 2 }
    }
}

pub struct InventoryQuery;

#[Object(name = "Query")]
impl InventoryQuery {
    #[graphql(entity)]
    async fn find_product(
        &self,
        #[graphql(key)] upc: String,
        price: Option<i32>,
        weight: Option<i32>,
    ) -> InventoryProduct {
        InventoryProduct {
            upc,
            price: price.unwrap_or_default(),
            weight: weight.unwrap_or_default(),
        }
    }
}

// ---------- reviews ----------

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Review {
    id: ID,
    body: String,
    #[graphql(skip)]
    author_id: usize,
    #[graphql(skip)]
    product_upc: String,
}

#[ComplexObject]
impl Review {
    #[graphql(provides = "username")]
    async fn author(&self) -> ReviewUser {
        ReviewUser {
            id: ID(self.author_id.to_string()),
            username: format!("@user{}", self.author_id),
        }
    }
    async fn product(&self) -> ReviewProduct {
        ReviewProduct {
            upc: self.product_upc.clone(),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "User", complex)]
pub struct ReviewUser {
    id: ID,
    #[graphql(external)]
    username: String,
}

#[ComplexObject]
impl ReviewUser {
    async fn reviews(&self) -> Vec<Review> {
        all_reviews()
            .filter(|r| r.author_id.to_string() == self.id.as_str())
            .collect()
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Product", complex)]
pub struct ReviewProduct {
    upc: String,
}

#[ComplexObject]
impl ReviewProduct {
    async fn reviews(&self) -> Vec<Review> {
        all_reviews()
            .filter(|r| r.product_upc == self.upc)
            .collect()
    }
}

pub struct ReviewsQuery;

#[Object(name = "Query")]
impl ReviewsQuery {
    #[graphql(entity)]
    async fn find_user(&self, id: ID) -> ReviewUser {
        let username = format!("@user{}", id.as_str());
        ReviewUser { id, username }
    }
    #[graphql(entity)]
    async fn find_product(&self, upc: String) -> ReviewProduct {
        ReviewProduct { upc }
    }
    #[graphql(entity)]
    async fn find_review(&self, id: ID) -> Option<Review> {
        let n: usize = id.parse().ok()?;
        (1..=USERS * REVIEWS_PER_USER)
            .contains(&n)
            .then(|| review(n))
    }
}

// ---------- serving ----------

/// Bodies a subgraph answered while recording was on.
#[derive(Clone, Default)]
pub struct Recorder {
    on: Arc<AtomicBool>,
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

impl Recorder {
    pub fn start(&self) {
        self.bodies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.on.store(true, Ordering::SeqCst);
    }

    pub fn stop(&self) -> Vec<Bytes> {
        self.on.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.bodies.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

type Run = Arc<
    dyn Fn(async_graphql::Request) -> futures::future::BoxFuture<'static, async_graphql::Response>
        + Send
        + Sync,
>;

/// A running subgraph.
pub struct Subgraph {
    pub name: &'static str,
    pub url: String,
    pub sdl: String,
}

async fn serve<Q>(name: &'static str, query: Q, recorder: Recorder) -> anyhow::Result<Subgraph>
where
    Q: ObjectType + 'static,
{
    let schema = Schema::build(query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish();
    let sdl = schema.sdl_with_options(async_graphql::SDLExportOptions::new().federation());
    let run: Run = Arc::new(move |request| {
        let schema = schema.clone();
        Box::pin(async move { schema.execute(request).await })
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/graphql", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/graphql", post(handle))
        .with_state((run, recorder, Answers::default()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Subgraph { name, url, sdl })
}

/// Answers by request body, once executed.
type Answers = Arc<Mutex<std::collections::HashMap<Bytes, Bytes>>>;

async fn handle(
    State((run, recorder, answers)): State<(Run, Recorder, Answers)>,
    request: Bytes,
) -> axum::response::Response {
    let known = answers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&request)
        .cloned();
    let body = match known {
        Some(body) => body,
        None => {
            let parsed: async_graphql::Request = serde_json::from_slice(&request)
                .unwrap_or_else(|_| async_graphql::Request::new(""));
            let response = run(parsed).await;
            let body = Bytes::from(serde_json::to_vec(&response).unwrap_or_default());
            answers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(request, body.clone());
            body
        }
    };
    if recorder.on.load(Ordering::SeqCst) {
        recorder
            .bodies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(body.clone());
    }
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The four subgraphs, each on its own loopback port, recording into `recorder` when asked.
pub async fn start(recorder: &Recorder) -> anyhow::Result<Vec<Subgraph>> {
    Ok(vec![
        serve("accounts", AccountsQuery, recorder.clone()).await?,
        serve("products", ProductsQuery, recorder.clone()).await?,
        serve("inventory", InventoryQuery, recorder.clone()).await?,
        serve("reviews", ReviewsQuery, recorder.clone()).await?,
    ])
}
