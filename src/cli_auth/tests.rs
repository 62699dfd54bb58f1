use std::time::Duration;

use api::auth::Role;

use super::*;

#[test]
fn a_ttl_is_a_number_and_a_unit() {
    assert_eq!(parse_ttl("12h"), Ok(Duration::from_secs(12 * 3600)));
    assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
    assert_eq!(parse_ttl("30d"), Ok(Duration::from_secs(30 * 86_400)));
}

#[test]
fn a_ttl_without_a_unit_zero_or_past_30_days_is_refused() {
    for bad in [
        "12",
        "h",
        "0h",
        "31d",
        "-1h",
        "1.5h",
        "12 h",
        "99999999999999999999d",
    ] {
        assert!(parse_ttl(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_refusal_names_the_command_the_caller_and_the_roles_allowed() {
    let refused = Refused {
        command: "dlq retry".to_owned(),
        refusal: Refusal::Role(Role::Customer),
        allowed: OPERATORS,
    };
    assert_eq!(
        refused.to_string(),
        "refused: `shopstream dlq retry` needs role operator or admin; caller: role customer"
    );
    let anonymous = Refused {
        command: "audit history".to_owned(),
        refusal: Refusal::NoToken,
        allowed: AUDITORS,
    };
    assert!(anonymous.to_string().contains("caller: not signed in"));
    assert!(!anonymous.to_string().contains('\n'));
}
