//! The GraphQL endpoints: `POST /graphql` (one operation per request: batches are
//! refused), GraphiQL on `GET /graphql`, subscriptions on `GET /graphql/ws`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::http::GraphiQLSource;
use async_graphql::{Data, Response as GraphqlResponse, ServerError, Value};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use infra_nats::RemoteTrace;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tracing::Instrument;

use super::context::{MinPosition, Viewer};
use super::error::ApiError;
use super::{loaders, ShopSchema};
use crate::auth::{Accounts, Principal};
use crate::limits::{rate_limit, RateLimits};

/// The header a read sends to see its own writes: a `position` a mutation returned.
pub const MIN_POSITION_HEADER: &str = "x-min-position";

/// How the GraphQL endpoints are served.
#[derive(Debug, Clone)]
pub struct GraphqlConfig {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Origins browsers may call from; empty allows none (same origin only), `*` any.
    pub cors_origins: Vec<String>,
    /// Whether GraphiQL is served on `GET /graphql`.
    pub graphiql: bool,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            cors_origins: Vec::new(),
            graphiql: true,
        }
    }
}

#[derive(Clone)]
struct GraphqlState {
    schema: ShopSchema,
    accounts: Accounts,
    db: sqlx::PgPool,
    graphiql: bool,
}

/// The GraphQL routes, rate-limited, with a body size cap and CORS.
pub fn router(
    schema: ShopSchema,
    services: &Arc<super::Services>,
    config: &GraphqlConfig,
    limits: RateLimits,
) -> Router {
    let state = GraphqlState {
        schema,
        accounts: services.accounts.clone(),
        db: services.db.clone(),
        graphiql: config.graphiql,
    };
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter(|origin| origin.as_str() != "*")
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    let allow_origin = if config.cors_origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins)
    };
    let cors = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderName::from_static(MIN_POSITION_HEADER),
        ])
        .max_age(Duration::from_secs(600));
    Router::new()
        .route("/graphql", get(graphiql).post(execute))
        .route("/graphql/ws", get(subscribe))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(limits, rate_limit))
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        .layer(cors)
}

async fn graphiql(State(state): State<GraphqlState>) -> Response {
    if !state.graphiql {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .finish(),
    )
    .into_response()
}

async fn execute(
    State(state): State<GraphqlState>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse {
    let started = Instant::now();
    let viewer = match viewer(&state.accounts, &headers) {
        Ok(viewer) => viewer,
        Err(error) => return refused(error),
    };
    let min_position = match min_position(&headers) {
        Ok(position) => position,
        Err(error) => return refused(error),
    };
    let request = request.into_inner();
    // The root of the trace every command of this request belongs to (or a child of
    // the caller's, when it sends `traceparent`).
    let span = tracing::info_span!(
        "graphql.request",
        operation = request.operation_name.as_deref(),
        otel.kind = "server"
    );
    if let Some(trace) =
        RemoteTrace::from_fields(|name| headers.get(name).and_then(|v| v.to_str().ok()))
    {
        trace.adopt(&span);
    }
    let request = loaders::add_to(request, &state.db)
        .data(Viewer(viewer))
        .data(MinPosition(min_position));
    let mut response = state.schema.execute(request).instrument(span).await;
    give_every_error_a_code(&mut response);
    let outcome = if response.errors.is_empty() {
        "ok"
    } else {
        "error"
    };
    metrics::histogram!("shopstream_graphql_request_seconds", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    count_errors(&response.errors);
    response.into()
}

/// Counts errors by their `extensions.code` (set by the server, never by the client; a
/// code outside the expected shape is counted as `OTHER`).
fn count_errors(errors: &[ServerError]) {
    for error in errors {
        let code = error
            .extensions
            .as_ref()
            .and_then(|extensions| extensions.get("code"))
            .and_then(|code| match code {
                Value::String(code) => Some(code.as_str()),
                _ => None,
            })
            .filter(|code| {
                code.len() <= 40 && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            })
            .unwrap_or("OTHER");
        metrics::counter!("shopstream_graphql_errors_total", "code" => code.to_owned())
            .increment(1);
    }
}

/// The caller of a request: none without `Authorization`, an error with a bad token (a
/// request with a bad token is refused, not served as anonymous).
fn viewer(accounts: &Accounts, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
    let Some(header) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    // The scheme is case-insensitive (RFC 9110); the token is not.
    let token = header
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token)
        .ok_or(ApiError::Unauthenticated)?;
    accounts.verify(token.trim()).map(Some).map_err(|error| {
        tracing::debug!(error = %infra_nats::ErrorChain(&error), "refused an access token");
        ApiError::Unauthenticated
    })
}

fn min_position(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    headers
        .get(MIN_POSITION_HEADER)
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_input(format!(
                        "{MIN_POSITION_HEADER} must be a position a mutation returned"
                    ))
                })
        })
        .transpose()
}

fn refused(error: ApiError) -> GraphQLResponse {
    let error: async_graphql::Error = error.into();
    let errors = vec![error.into_server_error(Default::default())];
    count_errors(&errors);
    GraphqlResponse::from_errors(errors).into()
}

/// Errors async-graphql raises itself (parse, validation, limits) have no code: those
/// are the client's (`BAD_USER_INPUT`, or `QUERY_TOO_COMPLEX` for the limits). An
/// error with a path but no code escaped a resolver unmapped: it becomes `INTERNAL`,
/// and its message is logged instead of sent.
fn give_every_error_a_code(response: &mut GraphqlResponse) {
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|extensions| extensions.get("code").is_some());
        if has_code {
            continue;
        }
        let code = if is_argument_error(error) {
            "BAD_USER_INPUT"
        } else if !error.path.is_empty() {
            tracing::error!(message = %error.message, path = ?error.path, "unmapped resolver error");
            error.message = "internal error".to_owned();
            "INTERNAL"
        } else if is_limit(error) {
            "QUERY_TOO_COMPLEX"
        } else {
            "BAD_USER_INPUT"
        };
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", Value::from(code));
    }
}

/// An argument that failed its type or validator while its field resolved (these carry
/// the field's path, like resolver errors, but are the client's).
fn is_argument_error(error: &ServerError) -> bool {
    error.message.starts_with("Failed to parse") || error.message.starts_with("Invalid value")
}

fn is_limit(error: &ServerError) -> bool {
    let message = error.message.to_lowercase();
    message.contains("too complex")
        || message.contains("too deep")
        || message.contains("nested too deep")
}

async fn subscribe(
    State(state): State<GraphqlState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let accounts = state.accounts.clone();
    let db = state.db.clone();
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| {
            GraphQLWebSocket::new(stream, state.schema.clone(), protocol)
                .on_connection_init(move |payload| async move {
                    let viewer = connection_viewer(&accounts, &payload)?;
                    let mut data = Data::default();
                    data.insert(Viewer(viewer));
                    loaders::insert_into(&mut data, &db);
                    Ok(data)
                })
                .serve()
        })
}

/// The caller of a WebSocket: the token in `connection_init`'s payload
/// (`{"Authorization": "Bearer …"}` or `{"token": "…"}`); none when absent.
fn connection_viewer(
    accounts: &Accounts,
    payload: &serde_json::Value,
) -> async_graphql::Result<Option<Principal>> {
    let token = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"))
        .and_then(serde_json::Value::as_str)
        .map(|value| value.strip_prefix("Bearer ").unwrap_or(value))
        .or_else(|| payload.get("token").and_then(serde_json::Value::as_str));
    match token {
        None => Ok(None),
        Some(token) => accounts
            .verify(token.trim())
            .map(Some)
            .map_err(|_| ApiError::Unauthenticated.into()),
    }
}
