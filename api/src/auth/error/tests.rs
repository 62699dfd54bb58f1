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
