use super::*;

#[test]
fn a_role_round_trips_through_its_name() {
    for role in Role::ALL {
        assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        assert_eq!(role.to_string(), role.as_str());
        assert_eq!(
            serde_json::to_value(role).unwrap(),
            serde_json::json!(role.as_str())
        );
    }
}

#[test]
fn role_names_are_exact() {
    assert_eq!(
        "Admin".parse::<Role>(),
        Err(UnknownRole("Admin".to_owned()))
    );
    assert!("root".parse::<Role>().is_err());
    assert!(serde_json::from_str::<Role>("\"superuser\"").is_err());
}

#[test]
fn a_principal_acts_as_its_account() {
    let id = Uuid::new_v4();
    let principal = Principal {
        account_id: id,
        role: Role::Operator,
    };
    assert_eq!(principal.actor(), Actor::User(id));
}
