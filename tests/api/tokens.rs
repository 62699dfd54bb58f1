//! Sign-up, sign-in and refresh through GraphQL, and forged or stale tokens refused.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::json;

use crate::support::{codes, Shop, AUDIENCE, ISSUER, SECRET};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A JWT signed with HMAC-SHA256 by hand.
fn hs256(header: &serde_json::Value, claims: &serde_json::Value, key: &[u8]) -> String {
    use hmac::Mac;
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&mac.finalize().into_bytes()))
}

fn claims(sub: uuid::Uuid, aud: &str, iss: &str, exp: u64) -> serde_json::Value {
    json!({ "sub": sub.to_string(), "role": "admin", "iss": iss, "aud": aud, "exp": exp,
            "iat": now() - 10, "jti": uuid::Uuid::new_v4().to_string() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_registers_signs_in_refreshes_and_signs_out() {
    let shop = Shop::start().await;
    let registered = shop
        .ok(
            None,
            r#"mutation { customerRegister(input: { email: "Ada@Example.com", password: "analytical engine" }) {
                account { email role } userErrors { code field } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        registered["customerRegister"]["account"],
        json!({ "email": "ada@example.com", "role": "CUSTOMER" })
    );
    let again = shop
        .ok(
            None,
            r#"mutation { customerRegister(input: { email: "ada@example.com", password: "another one" }) {
                account { email } userErrors { code field } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        again["customerRegister"]["userErrors"][0]["code"],
        "EMAIL_TAKEN"
    );

    let wrong = shop
        .ok(
            None,
            r#"mutation { sessionCreate(input: { email: "ada@example.com", password: "wrong password" }) {
                session { accessToken } userErrors { code } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        wrong["sessionCreate"]["userErrors"][0]["code"],
        "INVALID_CREDENTIALS"
    );

    let session = shop
        .ok(
            None,
            r#"mutation { sessionCreate(input: { email: "ada@example.com", password: "analytical engine" }) {
                session { accessToken refreshToken } userErrors { code } } }"#,
            json!({}),
        )
        .await;
    let access = session["sessionCreate"]["session"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let refresh = session["sessionCreate"]["session"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = shop
        .ok(Some(&access), "{ me { account { email } } }", json!({}))
        .await;
    assert_eq!(me["me"]["account"]["email"], "ada@example.com");

    let refreshed = shop
        .ok(
            None,
            "mutation($t: String!) { sessionRefresh(input: { refreshToken: $t }) { session { accessToken refreshToken } userErrors { code } } }",
            json!({ "t": refresh }),
        )
        .await;
    let new_refresh = refreshed["sessionRefresh"]["session"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    // The spent token is refused, and its reuse voids the whole family.
    let reused = shop
        .ok(
            None,
            "mutation($t: String!) { sessionRefresh(input: { refreshToken: $t }) { session { accessToken } userErrors { code } } }",
            json!({ "t": refresh }),
        )
        .await;
    assert_eq!(
        reused["sessionRefresh"]["userErrors"][0]["code"],
        "INVALID_TOKEN"
    );
    let after_theft = shop
        .ok(
            None,
            "mutation($t: String!) { sessionRefresh(input: { refreshToken: $t }) { session { accessToken } userErrors { code } } }",
            json!({ "t": new_refresh }),
        )
        .await;
    assert_eq!(
        after_theft["sessionRefresh"]["userErrors"][0]["code"],
        "INVALID_TOKEN"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_misaddressed_tokens_are_unauthenticated() {
    let shop = Shop::start().await;
    let (admin_id, admin) = shop.account(api::auth::Role::Admin).await;
    let query = "{ orders { totalCount } }";
    // The control: a well-formed token signed by hand with the server's key works.
    let good = hs256(
        &json!({ "alg": "HS256", "typ": "JWT" }),
        &claims(admin_id, AUDIENCE, ISSUER, now() + 300),
        SECRET.as_bytes(),
    );
    assert!(shop
        .gql(Some(&good), query, json!({}))
        .await
        .get("errors")
        .is_none());
    assert!(shop
        .gql(Some(&admin), query, json!({}))
        .await
        .get("errors")
        .is_none());

    let valid_claims = claims(admin_id, AUDIENCE, ISSUER, now() + 300);
    let none = format!(
        "{}.{}.",
        b64(json!({ "alg": "none", "typ": "JWT" })
            .to_string()
            .as_bytes()),
        b64(valid_claims.to_string().as_bytes())
    );
    let forged = [
        ("alg none", none),
        (
            "wrong key",
            hs256(
                &json!({ "alg": "HS256" }),
                &valid_claims,
                b"another-secret-another-secret-xx",
            ),
        ),
        (
            "expired",
            hs256(
                &json!({ "alg": "HS256" }),
                &claims(admin_id, AUDIENCE, ISSUER, now() - 120),
                SECRET.as_bytes(),
            ),
        ),
        (
            "wrong audience",
            hs256(
                &json!({ "alg": "HS256" }),
                &claims(admin_id, "someone-else", ISSUER, now() + 300),
                SECRET.as_bytes(),
            ),
        ),
        (
            "wrong issuer",
            hs256(
                &json!({ "alg": "HS256" }),
                &claims(admin_id, AUDIENCE, "evil", now() + 300),
                SECRET.as_bytes(),
            ),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (what, token) in forged {
        let body = shop.gql(Some(&token), query, json!({})).await;
        assert_eq!(codes(&body), ["UNAUTHENTICATED"], "{what}: {body}");
        assert!(body["data"].is_null(), "{what}: {body}");
    }
}
