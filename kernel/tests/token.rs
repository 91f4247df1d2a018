//! Access-token verification: every refusal has its own test, then key discovery over JWKS.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use axum::{Json, Router, extract::State, routing::get};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keygraph_kernel::{
    config::TokenConfig,
    testing::{TestSigner, now_secs},
    token::{TokenError, TokenVerifier},
};
use serde_json::{Value, json};
use uuid::Uuid;

fn setup() -> (TestSigner, TokenVerifier) {
    let signer = TestSigner::default();
    let verifier = TokenVerifier::from_config(&signer.token_config()).expect("verifier");
    (signer, verifier)
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

#[tokio::test]
async fn a_valid_token_yields_its_principal() {
    let (signer, verifier) = setup();
    let user = Uuid::now_v7();
    let principal = verifier
        .verify(&signer.token(user, &["identity.user.*", "authz.role.read"]))
        .await
        .expect("valid");
    assert_eq!(principal.user_id, user);
    assert!(principal.has_permission("identity.user.read"));
    assert!(principal.has_permission("authz.role.read"));
    assert!(!principal.has_permission("authz.role.delete"));
}

#[tokio::test]
async fn alg_none_is_refused() {
    let (signer, verifier) = setup();
    let header = json!({ "alg": "none", "typ": "at+jwt", "kid": signer.kid });
    let claims = serde_json::to_value(signer.claims(Uuid::now_v7(), &["*"])).expect("claims");
    let token = format!("{}.{}.", b64(&header), b64(&claims));
    assert_eq!(
        verifier.verify(&token).await.expect_err("unsigned"),
        TokenError::UnsupportedAlgorithm("none".into())
    );
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let (signer, verifier) = setup();
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(signer.kid.clone());
    let claims = signer.claims(Uuid::now_v7(), &["*"]);
    for secret in [
        signer.x.as_bytes().to_vec(),
        URL_SAFE_NO_PAD.decode(&signer.x).expect("x"),
    ] {
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret))
            .expect("hs256");
        assert_eq!(
            verifier.verify(&token).await.expect_err("key confusion"),
            TokenError::UnsupportedAlgorithm("HS256".into())
        );
    }
}

#[tokio::test]
async fn wrong_or_missing_typ_is_refused() {
    let (signer, verifier) = setup();
    let claims = signer.claims(Uuid::now_v7(), &[]);
    for typ in [Some("JWT"), Some("refresh+jwt"), None] {
        let mut header = signer.header();
        header.typ = typ.map(str::to_owned);
        let err = verifier
            .verify(&signer.sign_with_header(header, &claims))
            .await
            .expect_err("typ");
        assert!(matches!(err, TokenError::WrongType(_)), "{typ:?}: {err:?}");
    }
}

#[tokio::test]
async fn wrong_issuer_is_refused() {
    let (signer, verifier) = setup();
    let mut claims = signer.claims(Uuid::now_v7(), &[]);
    claims.iss = "someone-else".into();
    assert_eq!(
        verifier
            .verify(&signer.sign(&claims))
            .await
            .expect_err("iss"),
        TokenError::WrongIssuer
    );
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    let (signer, verifier) = setup();
    let mut claims = signer.claims(Uuid::now_v7(), &[]);
    claims.aud = "another-api".into();
    assert_eq!(
        verifier
            .verify(&signer.sign(&claims))
            .await
            .expect_err("aud"),
        TokenError::WrongAudience
    );
}

#[tokio::test]
async fn expired_token_is_refused() {
    let (signer, verifier) = setup();
    let mut claims = signer.claims(Uuid::now_v7(), &[]);
    claims.iat = now_secs() - 1200;
    claims.nbf = claims.iat;
    claims.exp = now_secs() - 60;
    assert_eq!(
        verifier
            .verify(&signer.sign(&claims))
            .await
            .expect_err("exp"),
        TokenError::Expired
    );
}

#[tokio::test]
async fn future_nbf_is_refused() {
    let (signer, verifier) = setup();
    let mut claims = signer.claims(Uuid::now_v7(), &[]);
    claims.nbf = now_secs() + 300;
    assert_eq!(
        verifier
            .verify(&signer.sign(&claims))
            .await
            .expect_err("nbf"),
        TokenError::NotYetValid
    );
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_refused() {
    let (signer, verifier) = setup();
    let mut claims = signer.claims(Uuid::now_v7(), &[]);
    claims.iat = now_secs() + 300;
    assert_eq!(
        verifier
            .verify(&signer.sign(&claims))
            .await
            .expect_err("iat"),
        TokenError::IssuedInFuture
    );
}

#[tokio::test]
async fn a_token_without_iat_is_refused() {
    let (signer, verifier) = setup();
    let claims = serde_json::to_value(signer.claims(Uuid::now_v7(), &[])).expect("json");
    let mut claims = claims.as_object().expect("object").clone();
    claims.remove("iat");
    let token = signer.sign_json(&Value::Object(claims));
    let err = verifier.verify(&token).await.expect_err("no iat");
    assert!(matches!(err, TokenError::InvalidClaims(_)), "{err:?}");
}

#[tokio::test]
async fn a_token_without_a_session_is_refused() {
    let (signer, verifier) = setup();
    let mut claims = signer.claims(Uuid::now_v7(), &["*"]);
    claims.sid = None;
    let err = verifier
        .verify(&signer.sign(&claims))
        .await
        .expect_err("no sid");
    assert_eq!(
        err,
        TokenError::InvalidClaims("`sid` is missing: only tokens of a session are accepted".into())
    );
    assert_eq!(err.reason(), "invalid");
}

#[tokio::test]
async fn unknown_or_missing_kid_is_refused() {
    let (signer, verifier) = setup();
    let claims = signer.claims(Uuid::now_v7(), &[]);
    let stranger = TestSigner::new("stranger");
    assert_eq!(
        verifier
            .verify(&stranger.sign(&claims))
            .await
            .expect_err("kid"),
        TokenError::UnknownKey("stranger".into())
    );
    let mut header = signer.header();
    header.kid = None;
    assert_eq!(
        verifier
            .verify(&signer.sign_with_header(header, &claims))
            .await
            .expect_err("no kid"),
        TokenError::MissingKeyId
    );
    // Another key claiming our kid does not pass either.
    let impostor = TestSigner::new(&signer.kid);
    assert_eq!(
        verifier
            .verify(&impostor.sign(&claims))
            .await
            .expect_err("forged"),
        TokenError::BadSignature
    );
}

#[tokio::test]
async fn tampered_payload_is_refused() {
    let (signer, verifier) = setup();
    let token = signer.token(Uuid::now_v7(), &[]);
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
    claims["scope"] = json!("*");
    let forged = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    assert_eq!(
        verifier.verify(&forged).await.expect_err("tampered"),
        TokenError::BadSignature
    );
}

#[tokio::test]
async fn an_opaque_refresh_token_is_no_access_token() {
    let (_, verifier) = setup();
    let refresh = URL_SAFE_NO_PAD.encode([7u8; 32]);
    for token in [refresh.as_str(), "", "a.b.c"] {
        let err = verifier.verify(token).await.expect_err("not a JWT");
        assert!(
            matches!(err, TokenError::Malformed(_)),
            "{token:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn claims_must_name_a_user() {
    let (signer, verifier) = setup();
    let mut claims = signer.claims(Uuid::now_v7(), &[]);
    claims.sub = "admin".into();
    let err = verifier
        .verify(&signer.sign(&claims))
        .await
        .expect_err("sub");
    assert!(matches!(err, TokenError::InvalidClaims(_)), "{err:?}");
}

/// A JWKS endpoint on loopback whose key set the test changes, counting fetches.
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

type JwksState = (Arc<Mutex<Vec<Value>>>, Arc<AtomicUsize>);

async fn jwks(State((keys, fetches)): State<JwksState>) -> Json<Value> {
    fetches.fetch_add(1, Ordering::SeqCst);
    let keys = keys.lock().expect("keys").clone();
    Json(json!({ "keys": keys }))
}

impl JwksServer {
    async fn start(keys: Vec<Value>) -> Self {
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .with_state((keys.clone(), fetches.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("addr")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, keys, fetches }
    }

    fn config(&self, min_refetch_secs: u64) -> TokenConfig {
        TokenConfig {
            issuer: "keygraph".into(),
            audience: "keygraph".into(),
            jwks_url: Some(self.url.clone()),
            jwks_cache_secs: 300,
            jwks_min_refetch_secs: min_refetch_secs,
            leeway_secs: 0,
            static_keys: vec![],
            revocations_url: None,
            revocations_poll_secs: 2,
            step_up_max_age_secs: 600,
        }
    }
}

#[tokio::test]
async fn keys_come_from_jwks_and_a_new_kid_is_picked_up_without_restart() {
    let current = TestSigner::new("k1");
    let rsa_like = json!({ "kty": "RSA", "kid": "r1", "n": "AQAB", "e": "AQAB" });
    let wrong_alg =
        json!({ "kty": "OKP", "crv": "Ed25519", "alg": "HS256", "kid": "k9", "x": current.x });
    let server = JwksServer::start(vec![rsa_like, wrong_alg, current.jwk()]).await;
    let verifier = TokenVerifier::from_config(&server.config(0)).expect("verifier");
    let user = Uuid::now_v7();

    verifier
        .verify(&current.token(user, &[]))
        .await
        .expect("k1 via JWKS");
    verifier
        .verify(&current.token(user, &[]))
        .await
        .expect("cached");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1, "keys are cached");

    // Keys that are not Ed25519 signing keys are never used.
    let mut header = current.header();
    header.kid = Some("k9".into());
    let with_k9 = current.sign_with_header(header, &current.claims(user, &[]));
    assert_eq!(
        verifier.verify(&with_k9).await.expect_err("k9"),
        TokenError::UnknownKey("k9".into())
    );

    let next = TestSigner::new("k2");
    server.keys.lock().expect("keys").push(next.jwk());
    verifier
        .verify(&next.token(user, &[]))
        .await
        .expect("k2 after rotation");
    verifier
        .verify(&current.token(user, &[]))
        .await
        .expect("k1 still valid");
}

#[tokio::test]
async fn unknown_kids_do_not_hammer_the_jwks_endpoint() {
    let current = TestSigner::new("k1");
    let server = JwksServer::start(vec![current.jwk()]).await;
    let verifier = TokenVerifier::from_config(&server.config(60)).expect("verifier");
    let stranger = TestSigner::new("nope");
    for _ in 0..20 {
        let err = verifier
            .verify(&stranger.token(Uuid::now_v7(), &[]))
            .await
            .expect_err("unknown");
        assert_eq!(err, TokenError::UnknownKey("nope".into()));
    }
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        1,
        "at most one refetch per interval"
    );
    verifier
        .verify(&current.token(Uuid::now_v7(), &[]))
        .await
        .expect("known key still works");
}

#[tokio::test]
async fn an_unreachable_jwks_reports_keys_unavailable() {
    let signer = TestSigner::new("k1");
    let config = TokenConfig {
        jwks_url: Some("http://127.0.0.1:9/.well-known/jwks.json".into()),
        static_keys: vec![],
        ..signer.token_config()
    };
    let verifier = TokenVerifier::from_config(&config).expect("verifier");
    assert_eq!(
        verifier
            .verify(&signer.token(Uuid::now_v7(), &[]))
            .await
            .expect_err("down"),
        TokenError::KeysUnavailable
    );
}

/// Auth's list of ended sessions: 503 until `up`, then `revoked`.
async fn revocations_endpoint(up: Arc<AtomicBool>, revoked: Uuid) -> String {
    let app = Router::new().route(
        "/internal/revocations",
        get(move || {
            let up = up.load(Ordering::SeqCst);
            async move {
                if up {
                    Ok(Json(json!({ "sessions": [revoked] })))
                } else {
                    Err(axum::http::StatusCode::SERVICE_UNAVAILABLE)
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/internal/revocations",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn session_tokens_wait_for_the_first_list_of_ended_sessions() {
    let signer = TestSigner::default();
    let verifier = TokenVerifier::from_config(&signer.token_config()).expect("verifier");
    let up = Arc::new(AtomicBool::new(false));
    let revoked = Uuid::now_v7();
    let url = revocations_endpoint(up.clone(), revoked).await;
    verifier
        .watch_revocations(&url, "internal", std::time::Duration::from_secs(30))
        .expect("watch");
    let user = Uuid::now_v7();
    let live = signer.token(user, &[]);
    let mut claims = signer.claims(user, &[]);
    claims.sid = Some(revoked.to_string());
    let ended = signer.sign(&claims);

    // A restarted service that cannot tell which sessions ended takes none of them.
    assert_eq!(
        verifier.verify(&live).await.expect_err("no list yet"),
        TokenError::RevocationsUnavailable
    );
    // Once auth answers (asked again within seconds, not after the 30 s poll), the list
    // decides.
    up.store(true, Ordering::SeqCst);
    verifier.verify(&live).await.expect("a live session");
    assert_eq!(
        verifier.verify(&ended).await.expect_err("ended"),
        TokenError::Revoked
    );
}
