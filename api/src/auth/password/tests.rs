use argon2::{Argon2, Params, PasswordHash};

use super::*;

#[test]
fn the_dummy_hash_costs_what_a_real_hash_costs() {
    let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
    let params = Params::try_from(&dummy).unwrap();
    let defaults = Params::default();
    assert_eq!(dummy.algorithm.as_str(), "argon2id");
    assert_eq!(params.m_cost(), defaults.m_cost());
    assert_eq!(params.t_cost(), defaults.t_cost());
    assert_eq!(params.p_cost(), defaults.p_cost());
    let fresh = Argon2::default().hash_password(b"any password").unwrap();
    assert_eq!(fresh.algorithm, dummy.algorithm);
    assert_eq!(fresh.version, dummy.version);
}

#[test]
fn new_passwords_need_eight_to_two_hundred_fifty_six_characters() {
    assert!(matches!(
        check_new("1234567"),
        Err(AuthError::WeakPassword { min: 8 })
    ));
    assert!(check_new("12345678").is_ok());
    assert!(check_new(&"é".repeat(256)).is_ok());
    assert!(matches!(
        check_new(&"é".repeat(257)),
        Err(AuthError::PasswordTooLong { max: 256 })
    ));
}

#[tokio::test]
async fn a_hash_verifies_its_password_and_no_other() {
    let hash = hash("correct horse").await.unwrap();
    assert!(hash.starts_with("$argon2id$"));
    assert!(verify("correct horse", &hash).await.unwrap());
    assert!(!verify("correct horsf", &hash).await.unwrap());
}

#[tokio::test]
async fn a_corrupt_stored_hash_is_an_error_not_a_mismatch() {
    let error = verify("whatever1", "not a phc string").await.unwrap_err();
    assert!(matches!(error, AuthError::Hashing(_)), "{error:?}");
}
