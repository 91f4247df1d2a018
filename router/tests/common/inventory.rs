//! The inventory test subgraph: stock and shipping estimates of products, fields that
//! `@requires` product fields of products, one of them with an argument.

use async_graphql::{ComplexObject, Object, SimpleObject};

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
