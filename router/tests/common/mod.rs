//! Test subgraphs (not Keygraph's domain ones) and a router composed over them, all served
//! over loopback HTTP: accounts, products, inventory and reviews, the classic federation demo
//! shapes — entity chains, `@requires`, `@provides`, unions, interfaces, scopes.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_graphql::{
    ComplexObject, EmptyMutation, EmptySubscription, Interface, Object, Schema, SimpleObject, Union,
};
use axum::extract::State;
use axum::routing::post;
use keygraph_kernel::config::SubgraphEndpoint;
use keygraph_kernel::testing::{Answer, TestServer, TestSigner, test_config};
use keygraph_router::edge::routes;
use keygraph_router::health::readiness;
use keygraph_router::reload::keep_supergraph_current;
use keygraph_router::server::RouterState;
use serde_json::{Value, json};

// ---------- accounts ----------

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

// ---------- products ----------

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

// ---------- inventory ----------

#[derive(SimpleObject, Clone)]
#[graphql(name = "Product", complex)]
pub struct InventoryProduct {
    pub upc: String,
    #[graphql(external)]
    pub price: Option<i32>,
    #[graphql(external)]
    pub weight: Option<i32>,
    pub in_stock: Option<bool>,
    /// `priceIn(currency: "EUR")`, from the representation.
    #[graphql(skip)]
    pub price_in_eur: Option<i32>,
}

#[ComplexObject]
impl InventoryProduct {
    #[graphql(external)]
    async fn price_in(&self, currency: String) -> Option<i32> {
        (currency == "EUR").then_some(self.price_in_eur).flatten()
    }
    /// Needs the EUR price while clients may ask for the USD one: the planner aliases the
    /// required field apart from the client's.
    // async-graphql prints this string into the SDL unescaped: escape the quotes here.
    #[graphql(requires = "priceIn(currency: \\\"EUR\\\")")]
    async fn shipping_estimate_eur(&self) -> Option<i32> {
        Some(self.price_in_eur? / 100)
    }
    #[graphql(requires = "price weight")]
    async fn shipping_estimate(&self) -> Option<i32> {
        let (price, weight) = (self.price?, self.weight?);
        Some(if price > 1000 { 0 } else { weight / 2 })
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
        price_in: Option<i32>,
    ) -> InventoryProduct {
        InventoryProduct {
            in_stock: Some(upc != "2"),
            upc,
            price,
            weight,
            price_in_eur: price_in,
        }
    }
}

// ---------- reviews ----------

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

// ---------- serving ----------

/// How a test subgraph behaves: up, failing with HTTP 503, or hanging.
pub const UP: u8 = 0;
pub const FAILING: u8 = 1;
pub const HANGING: u8 = 2;
/// Answers after 300 ms: long enough for requests to meet in flight.
pub const SLOW: u8 = 3;

type Executor = Arc<
    dyn Fn(async_graphql::Request) -> futures::future::BoxFuture<'static, async_graphql::Response>
        + Send
        + Sync,
>;

fn executor<Q>(query: Q) -> Executor
where
    Q: async_graphql::ObjectType + Send + Sync + 'static,
{
    let schema = Schema::build(query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish();
    Arc::new(move |request| {
        let schema = schema.clone();
        Box::pin(async move { schema.execute(request).await })
    })
}

#[derive(Clone)]
struct Served {
    execute: Arc<std::sync::RwLock<Executor>>,
    mode: Arc<AtomicU8>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    last_headers: Arc<std::sync::Mutex<axum::http::HeaderMap>>,
    last_variables: Arc<std::sync::Mutex<Value>>,
}

async fn handle(
    State(served): State<Served>,
    headers: axum::http::HeaderMap,
    axum::Json(request): axum::Json<async_graphql::Request>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    served.requests.fetch_add(1, Ordering::SeqCst);
    *served
        .last_headers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = headers;
    *served
        .last_variables
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) =
        serde_json::to_value(&request.variables).unwrap_or_default();
    match served.mode.load(Ordering::SeqCst) {
        FAILING => return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
        HANGING => tokio::time::sleep(Duration::from_secs(30)).await,
        SLOW => tokio::time::sleep(Duration::from_millis(300)).await,
        _ => {}
    }
    let execute = served
        .execute
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    axum::Json(execute(request).await).into_response()
}

/// A running test subgraph.
pub struct Subgraph {
    pub url: String,
    execute: Arc<std::sync::RwLock<Executor>>,
    pub mode: Arc<AtomicU8>,
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
    /// The headers of the last request this subgraph received.
    pub last_headers: Arc<std::sync::Mutex<axum::http::HeaderMap>>,
    last_variables: Arc<std::sync::Mutex<Value>>,
}

async fn serve<Q>(query: Q) -> Subgraph
where
    Q: async_graphql::ObjectType + Send + Sync + 'static,
{
    let served = Served {
        execute: Arc::new(std::sync::RwLock::new(executor(query))),
        mode: Arc::new(AtomicU8::new(UP)),
        requests: Arc::default(),
        last_headers: Arc::default(),
        last_variables: Arc::default(),
    };
    let listener = TestServer::listener().await;
    let url = format!("{}/graphql", TestServer::base_of(&listener));
    let subgraph = Subgraph {
        url,
        execute: served.execute.clone(),
        mode: served.mode.clone(),
        requests: served.requests.clone(),
        last_headers: served.last_headers.clone(),
        last_variables: served.last_variables.clone(),
    };
    let app = axum::Router::new()
        .route("/graphql", post(handle))
        .with_state(served);
    tokio::spawn(async move { axum::serve(listener, app).await });
    subgraph
}

impl Subgraph {
    /// The variables of the last request this subgraph received.
    pub fn last_variables(&self) -> Value {
        self.last_variables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Serves another schema from now on (a deploy of the subgraph).
    pub fn replace<Q>(&self, query: Q)
    where
        Q: async_graphql::ObjectType + Send + Sync + 'static,
    {
        *self
            .execute
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = executor(query);
    }
}

/// Four test subgraphs and the router in front of them.
pub struct Federation {
    pub router: TestServer,
    pub state: Arc<RouterState>,
    pub subgraphs: BTreeMap<&'static str, Subgraph>,
    pub signer: TestSigner,
    _data: tempfile::TempDir,
}

/// The four test subgraphs, each on its own loopback port.
pub async fn start_subgraphs() -> BTreeMap<&'static str, Subgraph> {
    let mut subgraphs = BTreeMap::new();
    subgraphs.insert("accounts", serve(AccountsQuery).await);
    subgraphs.insert("products", serve(ProductsQuery).await);
    subgraphs.insert("inventory", serve(InventoryQuery).await);
    subgraphs.insert("reviews", serve(ReviewsQuery).await);
    subgraphs
}

impl Federation {
    pub async fn start() -> Self {
        Self::start_polling(0).await
    }

    /// Like [`Federation::start`], the router polling subgraph schemas every `secs` seconds.
    pub async fn start_polling(secs: u64) -> Self {
        Self::start_with(|config| config.router.poll_interval_secs = secs).await
    }

    /// Like [`Federation::start`], with the router's config changed by `configure`.
    pub async fn start_with(configure: impl FnOnce(&mut keygraph_kernel::config::Config)) -> Self {
        let subgraphs = start_subgraphs().await;
        let data = tempfile::tempdir().expect("tempdir");
        let signer = TestSigner::default();
        let mut config = test_config(data.path(), &signer);
        config.tokens.revocations_url = None;
        config.router.subgraphs = subgraphs
            .iter()
            .map(|(name, s)| {
                (
                    (*name).to_owned(),
                    SubgraphEndpoint {
                        url: s.url.clone(),
                        timeout_secs: 1,
                    },
                )
            })
            .collect();
        config.router.poll_interval_secs = 0;
        configure(&mut config);
        let verifier =
            keygraph_kernel::token::TokenVerifier::from_config(&config.tokens).expect("verifier");
        let state = RouterState::new(
            config.router.clone(),
            keygraph_router::server::Edge {
                verifier: Some(verifier),
                internal_token: Some(keygraph_kernel::internal::InternalToken::new(
                    keygraph_kernel::testing::INTERNAL_TOKEN,
                )),
                address_proof: Some(keygraph_kernel::address::AddressProof::new(
                    keygraph_kernel::testing::INTERNAL_TOKEN,
                )),
                counters: Default::default(),
            },
        )
        .expect("router state");
        let (trigger, shutdown) = TestServer::shutdown_pair();
        tokio::spawn(keep_supergraph_current(state.clone(), shutdown.clone()));
        let router = TestServer::start(
            "router",
            routes(state.clone()),
            &config,
            readiness(state.clone()),
            (trigger, shutdown),
        )
        .await;
        for _ in 0..100 {
            if state.graph().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if state.graph().is_none() {
            let why = match state.fetch_subgraph_sdls().await {
                Err(e) => e,
                Ok(sdls) => match keygraph_router::supergraph::compose(&sdls) {
                    Err(e) => format!(
                        "{e}\n{}",
                        sdls.iter()
                            .map(|s| format!("# {}\n{}", s.name, s.sdl))
                            .collect::<Vec<_>>()
                            .join("\n")
                    ),
                    Ok((sdl, _)) => state.install(sdl).err().unwrap_or_default(),
                },
            };
            panic!("the router composed no supergraph: {why}");
        }
        Self {
            router,
            state,
            subgraphs,
            signer,
            _data: data,
        }
    }

    pub async fn query(&self, query: &str, variables: Value) -> Value {
        self.router.gql(query, variables, None).await.0
    }

    pub async fn query_as(&self, query: &str, token: &str) -> Answer {
        self.router.gql(query, json!({}), Some(token)).await
    }

    pub fn set_mode(&self, subgraph: &str, mode: u8) {
        self.subgraphs[subgraph].mode.store(mode, Ordering::SeqCst);
    }

    pub fn plan(&self, query: &str) -> Value {
        self.state
            .graph()
            .expect("graph")
            .plan_json(query, None)
            .expect("plan")
    }
}
