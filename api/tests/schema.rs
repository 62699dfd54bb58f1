//! The checked-in `schema.graphql` is the schema the server serves.

#[test]
fn the_checked_in_schema_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema.graphql");
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    let current = api::graphql::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &current).unwrap();
        return;
    }
    assert!(
        checked_in == current,
        "schema.graphql is stale: run `UPDATE_SCHEMA=1 cargo test -p api --test schema` \
         (or `shopstream schema > schema.graphql`) and commit the result"
    );
}
