use super::*;

#[test]
fn emails_are_trimmed_and_lowercased() {
    assert_eq!(
        normalize_email("  Alice@Example.COM \n").unwrap(),
        "alice@example.com"
    );
}

#[test]
fn an_email_needs_one_at_with_text_on_both_sides() {
    for bad in [
        "",
        "alice",
        "@example.com",
        "alice@",
        "a@b@c",
        "al ice@example.com",
        "alice@exa\u{0}mple.com",
    ] {
        assert!(
            matches!(normalize_email(bad), Err(AuthError::InvalidEmail)),
            "{bad:?} was accepted"
        );
    }
}

#[test]
fn an_email_has_at_most_254_characters() {
    let longest = format!("{}@example.com", "a".repeat(254 - 12));
    assert_eq!(longest.len(), 254);
    assert!(normalize_email(&longest).is_ok());
    let too_long = format!("a{longest}");
    assert!(matches!(
        normalize_email(&too_long),
        Err(AuthError::InvalidEmail)
    ));
}
