use std::time::Duration;

use super::*;

fn config() -> AuthConfig {
    AuthConfig::new(
        vec![7; 32],
        "shopstream",
        "shopstream-api",
        Duration::from_secs(900),
        Duration::from_secs(86_400),
    )
    .unwrap()
}

#[test]
fn an_issued_token_verifies_to_its_principal() {
    let tokens = AccessTokens::new(&config());
    let id = Uuid::new_v4();
    let (token, expires_at) = tokens.issue(id, Role::Auditor, Utc::now()).unwrap();
    assert!(expires_at > Utc::now() + TimeDelta::seconds(890));
    let principal = tokens.verify(&token).unwrap();
    assert_eq!(
        principal,
        Principal {
            account_id: id,
            role: Role::Auditor
        }
    );
}

#[test]
fn refresh_tokens_are_random_url_safe_and_stored_hashed() {
    let first = RefreshToken::generate().unwrap();
    let second = RefreshToken::generate().unwrap();
    assert_ne!(first.token, second.token);
    assert_eq!(first.token.len(), 43);
    assert!(first
        .token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(first.hash, hash_refresh_token(&first.token));
    assert_ne!(first.hash, hash_refresh_token(&second.token));
}
