//! The router over four test subgraphs, over real HTTP: planning, execution, merging, errors.
//! Access, bad requests, introspection and GraphiQL, reload and metrics have files of their own.

mod common;

use std::sync::atomic::Ordering;

use common::{FAILING, Federation, HANGING, UP};
use serde_json::json;

#[tokio::test]
async fn entity_chains_requires_and_provides_cross_subgraphs() {
    let fed = Federation::start().await;
    let query = "{ topProducts(first: 2) { name shippingEstimate inStock reviews { body author { username name } } } }";
    let response = fed.query(query, json!({})).await;
    assert_eq!(
        response,
        json!({ "data": { "topProducts": [
            { "name": "Table", "shippingEstimate": 50, "inStock": true, "reviews": [
                { "body": "Love it", "author": { "username": "@ada", "name": "Ada" } },
                { "body": "Sturdy", "author": { "username": "@alan", "name": "Alan" } } ] },
            { "name": "Couch", "shippingEstimate": 0, "inStock": false, "reviews": [
                { "body": "Too expensive", "author": { "username": "@alan", "name": "Alan" } } ] }
        ] } })
    );
    insta::assert_json_snapshot!("plan_entity_chain", fed.plan(query));
}

#[tokio::test]
async fn one_request_per_fetch_node_with_deduplicated_representations() {
    let fed = Federation::start().await;
    let before: Vec<usize> = fed
        .subgraphs
        .values()
        .map(|s| s.requests.load(Ordering::SeqCst))
        .collect();
    // Four reviews by two authors: accounts gets one request with two representations.
    let response = fed
        .query("{ latestReviews { author { name } } }", json!({}))
        .await;
    assert_eq!(
        response["data"]["latestReviews"],
        json!([{ "author": { "name": "Ada" } }, { "author": { "name": "Alan" } }, { "author": { "name": "Ada" } }, { "author": { "name": "Alan" } }])
    );
    let after: Vec<usize> = fed
        .subgraphs
        .values()
        .map(|s| s.requests.load(Ordering::SeqCst))
        .collect();
    let delta: Vec<usize> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    // BTreeMap order: accounts, inventory, products, reviews.
    assert_eq!(delta, vec![1, 0, 0, 1]);
}

#[tokio::test]
async fn aliases_fragments_variables_typename_skip_and_include() {
    let fed = Federation::start().await;
    let query = r#"
        query Shop($n: Int, $withPrice: Boolean!, $noName: Boolean = false) {
          first: topProducts(first: $n) { ...Basics price @include(if: $withPrice) }
          again: topProducts(first: 1) { __typename name @skip(if: $noName) ... on Product { label: name } }
        }
        fragment Basics on Product { upc productName: name }
    "#;
    let response = fed
        .query(query, json!({ "n": 1, "withPrice": false }))
        .await;
    assert_eq!(
        response,
        json!({ "data": {
            "first": [{ "upc": "1", "productName": "Table" }],
            "again": [{ "__typename": "Product", "name": "Table", "label": "Table" }]
        } })
    );
    let response = fed
        .query(query, json!({ "n": 1, "withPrice": true, "noName": true }))
        .await;
    assert_eq!(
        response["data"]["first"],
        json!([{ "upc": "1", "productName": "Table", "price": 899 }])
    );
    assert_eq!(
        response["data"]["again"],
        json!([{ "__typename": "Product", "label": "Table" }])
    );
}

#[tokio::test]
async fn unions_and_interfaces_resolve_by_typename() {
    let fed = Federation::start().await;
    let response = fed
        .query(
            "{ media { __typename ... on Book { title pages } ... on Movie { title minutes } } titled { title ... on Movie { minutes } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        response,
        json!({ "data": {
            "media": [{ "__typename": "Book", "title": "Dune", "pages": 412 }, { "__typename": "Movie", "title": "Alien", "minutes": 117 }],
            "titled": [{ "title": "Heat", "minutes": 170 }, { "title": "Emma" }]
        } })
    );
}

#[tokio::test]
async fn fields_of_a_narrowed_interface_field_type_are_valid_below_it() {
    let fed = Federation::start().await;
    // `Book.sequel: Book!` narrows `Titled.sequel: Titled!`: `pages` is a Book field.
    let response = fed
        .query(
            "{ titled { ... on Book { sequel { title pages } } ... on Movie { sequel { minutes } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        response,
        json!({ "data": { "titled": [
            { "sequel": { "minutes": 170 } },
            { "sequel": { "title": "Emma II", "pages": 237 } }
        ] } })
    );
}

#[tokio::test]
async fn an_entity_fetch_under_a_type_condition_asks_only_for_that_type() {
    let fed = Federation::start().await;
    // `rating` lives in reviews, for movies only: the books in the list get no call.
    let response = fed
        .query(
            "{ media { ... on Movie { title rating } ... on Book { title } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        response,
        json!({ "data": { "media": [{ "title": "Dune" }, { "title": "Alien", "rating": 5 }] } })
    );
    let representations = fed.subgraphs["reviews"].last_variables()["representations"].clone();
    assert_eq!(
        representations,
        json!([{ "__typename": "Movie", "id": "m1" }])
    );
}

#[tokio::test]
async fn requires_of_a_field_with_arguments_gets_its_own_value_beside_the_clients() {
    let fed = Federation::start().await;
    // inventory requires `priceIn(currency: "EUR")`; the client asks for the USD price.
    let response = fed
        .query(
            r#"{ topProducts(first: 2) { upc priceIn(currency: "USD") shippingEstimateEur } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        response,
        json!({ "data": { "topProducts": [
            { "upc": "1", "priceIn": 899, "shippingEstimateEur": 17 },
            { "upc": "2", "priceIn": 1299, "shippingEstimateEur": 25 }
        ] } })
    );
}

#[tokio::test]
async fn subgraph_errors_keep_client_paths_and_nulls_propagate() {
    let fed = Federation::start().await;
    // Root fetch: accounts fails `nickname` (String!) for user 2; the nullable list item goes null.
    let response = fed.query("{ users { name nickname } }", json!({})).await;
    assert_eq!(
        response["data"],
        json!({ "users": [{ "name": "Ada", "nickname": "nick-Ada" }, null] })
    );
    assert_eq!(
        response["errors"].as_array().map(Vec::len),
        Some(1),
        "{response}"
    );
    assert_eq!(
        response["errors"][0]["path"],
        json!(["users", 1, "nickname"])
    );
    assert_eq!(response["errors"][0]["message"], "nickname lookup failed");
    assert_eq!(
        response["errors"][0]["extensions"]["serviceName"],
        "accounts"
    );

    // Entity fetch: the `_entities` path is rewritten to where the author sits in the response.
    // `author`, the list items and `latestReviews` are all non-null, so the null reaches `data`.
    let response = fed
        .query("{ latestReviews { body author { nickname } } }", json!({}))
        .await;
    assert_eq!(response["data"], json!(null));
    let paths: Vec<_> = response["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["path"].clone())
        .collect();
    assert!(
        paths.contains(&json!(["latestReviews", 1, "author", "nickname"])),
        "{response}"
    );
}

#[tokio::test]
async fn a_failing_subgraph_leaves_the_rest_of_the_data() {
    let fed = Federation::start().await;
    fed.set_mode("inventory", FAILING);
    let response = fed
        .query("{ topProducts(first: 2) { name inStock } }", json!({}))
        .await;
    assert_eq!(
        response["data"],
        json!({ "topProducts": [{ "name": "Table", "inStock": null }, { "name": "Couch", "inStock": null }] })
    );
    assert_eq!(
        response["errors"][0]["extensions"]["code"], "SUBGRAPH_UNAVAILABLE",
        "{response}"
    );
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("inventory"),
        "{response}"
    );

    // A hanging subgraph is cut off at its timeout (1 s here), not waited for.
    fed.set_mode("inventory", HANGING);
    let started = std::time::Instant::now();
    let response = fed
        .query("{ topProducts(first: 1) { name inStock } }", json!({}))
        .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        response["data"],
        json!({ "topProducts": [{ "name": "Table", "inStock": null }] })
    );
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("within 1s"),
        "{response}"
    );

    fed.set_mode("inventory", UP);
    let response = fed
        .query("{ topProducts(first: 1) { name inStock } }", json!({}))
        .await;
    assert_eq!(
        response,
        json!({ "data": { "topProducts": [{ "name": "Table", "inStock": true }] } })
    );
}

#[tokio::test]
async fn unmatched_fragments_leave_empty_objects_and_variable_defaults_apply() {
    let fed = Federation::start().await;
    // The Movie matches no fragment: the spec answers `{}`, not null.
    let response = fed
        .query(
            "{ media { ... on Book { pages } } titled { title } }",
            json!({}),
        )
        .await;
    assert_eq!(
        response,
        json!({ "data": {
            "media": [{ "pages": 412 }, {}],
            "titled": [{ "title": "Heat" }, { "title": "Emma" }]
        } })
    );
    // A variable's default counts where the client sent none, in @skip as everywhere.
    let response = fed
        .query(
            "query($skip: Boolean = true) { me { name @skip(if: $skip) id } }",
            json!({}),
        )
        .await;
    assert_eq!(response, json!({ "data": { "me": { "id": "1" } } }));
}

#[tokio::test]
async fn plans_for_unions_and_requires_are_stable() {
    let fed = Federation::start().await;
    insta::assert_json_snapshot!(
        "plan_union_fragments",
        fed.plan("{ media { __typename ... on Book { title } ... on Movie { minutes } } }")
    );
    insta::assert_json_snapshot!(
        "plan_requires_skip",
        fed.plan(
            "query($skip: Boolean!) { topProducts { name shippingEstimate @skip(if: $skip) } }"
        )
    );
    let graph = fed.state.graph().expect("graph");
    let cached = graph.cached_plans();
    fed.plan("{ media { __typename ... on Book { title } ... on Movie { minutes } } }");
    assert_eq!(
        graph.cached_plans(),
        cached,
        "the same document is planned once"
    );
}

#[tokio::test]
async fn fragments_on_a_union_apply_where_the_value_is_that_union() {
    let fed = Federation::start().await;
    let query = "{ media { ...Item } more: media { ... on Media { ... on Movie { minutes } } } } \
                 fragment Item on Media { __typename ... on Book { title } }";
    let response = fed.query(query, json!({})).await;
    assert_eq!(
        response,
        json!({ "data": {
            "media": [{ "__typename": "Book", "title": "Dune" }, { "__typename": "Movie" }],
            "more": [{}, { "minutes": 117 }]
        } })
    );
    // Validation still speaks of the document as written.
    let response = fed
        .query(
            "{ media { ...Item } } fragment Item on Media { nope }",
            json!({}),
        )
        .await;
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nope"),
        "{response}"
    );
}

/// The router's error shapes are part of its contract: a change shows up as snapshot drift.
#[tokio::test]
async fn error_shapes_are_stable() {
    let fed = Federation::start().await;
    let cases = [
        ("syntax_error", "{ me { id }", json!({})),
        ("unknown_field", "{ me { nope } }", json!({})),
        (
            "wrong_variable_type",
            "query($n: Int) { topProducts(first: $n) { name } }",
            json!({ "n": "two" }),
        ),
        (
            "missing_variable",
            "query($n: Int!) { topProducts(first: $n) { name } }",
            json!({}),
        ),
        (
            "several_operations",
            "query A { me { id } } query B { me { id } }",
            json!({}),
        ),
        (
            "conflicting_fields",
            "{ topProducts(first: 1) { name } topProducts(first: 2) { name } }",
            json!({}),
        ),
        (
            "unauthenticated",
            "{ topProducts(first: 1) { name cost } }",
            json!({}),
        ),
        (
            "subgraph_error_in_a_list",
            "{ users { name nickname } }",
            json!({}),
        ),
    ];
    let mut answers = serde_json::Map::new();
    for (name, query, variables) in cases {
        answers.insert(name.to_owned(), fed.query(query, variables).await);
    }
    let deep = format!(
        "{{ titled {{ {} title {} }} }}",
        "sequel { ".repeat(20),
        "} ".repeat(20)
    );
    answers.insert("too_deep".to_owned(), fed.query(&deep, json!({})).await);
    let too_many_fields = keygraph_kernel::testing::fragment_fan(10, "__typename");
    answers.insert(
        "too_many_fields".to_owned(),
        fed.query(&too_many_fields, json!({})).await,
    );
    let aliases: String = (0..31).map(|i| format!(" a{i}: __typename")).collect();
    answers.insert(
        "too_many_aliases".to_owned(),
        fed.query(&format!("{{{aliases} }}"), json!({})).await,
    );
    answers.insert(
        "too_many_directives".to_owned(),
        fed.query(
            &format!("{{ __typename {} }}", "@skip(if: false) ".repeat(51)),
            json!({}),
        )
        .await,
    );
    answers.insert(
        "too_many_tokens".to_owned(),
        fed.query(
            &format!("{{ {} }}", "__typename ".repeat(20_000)),
            json!({}),
        )
        .await,
    );
    insta::assert_json_snapshot!("error_shapes", answers);
}
