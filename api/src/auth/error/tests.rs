use super::*;

#[test]
fn each_error_has_its_graphql_code() {
    let cases = [
        (AuthError::InvalidEmail, "BAD_USER_INPUT"),
        (AuthError::weak_password(), "BAD_USER_INPUT"),
        (AuthError::password_too_long(), "BAD_USER_INPUT"),
        (AuthError::InvalidLifetime, "BAD_USER_INPUT"),
        (AuthError::EmailTaken, "CONFLICT"),
        (AuthError::InvalidCredentials, "UNAUTHENTICATED"),
        (AuthError::InvalidToken("expired".into()), "UNAUTHENTICATED"),
        (AuthError::WeakSecret, "INTERNAL"),
        (AuthError::Database(sqlx::Error::PoolTimedOut), "INTERNAL"),
        (AuthError::Hashing("rng".into()), "INTERNAL"),
    ];
    for (error, code) in cases {
        assert_eq!(error.code(), code, "{error:?}");
    }
}

#[test]
fn each_error_keeps_its_user_error_code() {
    let cases = [
        (AuthError::InvalidEmail, "INVALID_EMAIL"),
        (AuthError::weak_password(), "WEAK_PASSWORD"),
        (AuthError::password_too_long(), "PASSWORD_TOO_LONG"),
        (AuthError::EmailTaken, "EMAIL_TAKEN"),
        (AuthError::InvalidCredentials, "INVALID_CREDENTIALS"),
        (AuthError::InvalidToken("expired".into()), "INVALID_TOKEN"),
        (AuthError::InvalidLifetime, "INVALID_LIFETIME"),
        (AuthError::WeakSecret, "WEAK_SECRET"),
        (AuthError::Database(sqlx::Error::PoolTimedOut), "DATABASE"),
        (AuthError::Hashing("rng".into()), "HASHING"),
    ];
    let mut seen = std::collections::HashSet::new();
    for (error, code) in cases {
        assert_eq!(error.user_error_code(), code, "{error:?}");
        assert!(seen.insert(code), "`{code}` is used twice");
    }
}

#[test]
fn password_errors_name_the_limits() {
    assert_eq!(
        AuthError::weak_password().to_string(),
        "password must be at least 8 characters"
    );
    assert_eq!(
        AuthError::password_too_long().to_string(),
        "password must be at most 256 characters"
    );
}
