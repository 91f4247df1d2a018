//! GraphiQL, served by the router itself: the page (with a content security policy that
//! allows only its own assets) and the bundled scripts and styles under `/graphiql/`.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const GRAPHIQL_HTML: &str = include_str!("../assets/graphiql.html");
const GRAPHIQL_INIT: &str = include_str!("../assets/graphiql-init.js");
const GRAPHIQL_JS: &[u8] = include_bytes!("../assets/graphiql/graphiql.min.js");
const GRAPHIQL_CSS: &[u8] = include_bytes!("../assets/graphiql/graphiql.min.css");
const REACT_JS: &[u8] = include_bytes!("../assets/graphiql/react.production.min.js");
const REACT_DOM_JS: &[u8] = include_bytes!("../assets/graphiql/react-dom.production.min.js");

/// The GraphiQL page, for a browser that GETs `/graphql` without a query.
pub(crate) fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
        ],
        GRAPHIQL_HTML,
    )
        .into_response()
}

/// `/graphiql/{asset}`: one of the bundled files, cached for a day.
pub(crate) async fn asset(axum::extract::Path(asset): axum::extract::Path<String>) -> Response {
    let (body, content_type): (&'static [u8], &str) = match asset.as_str() {
        "graphiql.min.js" => (GRAPHIQL_JS, "text/javascript"),
        "graphiql.min.css" => (GRAPHIQL_CSS, "text/css"),
        "react.production.min.js" => (REACT_JS, "text/javascript"),
        "react-dom.production.min.js" => (REACT_DOM_JS, "text/javascript"),
        "init.js" => (GRAPHIQL_INIT.as_bytes(), "text/javascript"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}
