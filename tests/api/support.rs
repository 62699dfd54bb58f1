//! A whole shop for one test: NATS, a database, and `serve`, `project` and `saga` in
//! this process, plus a GraphQL client.

use std::net::SocketAddr;
use std::time::Duration;

use api::auth::{Accounts, AuthConfig, Role};
use serde_json::{json, Value};
use shopstream::saga_role::SagaSettings;
use shopstream::{ApiSettings, Application, Settings};
use testkit::{NatsServer, TestDatabase};
use tokio::sync::watch;

pub const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";
pub const ISSUER: &str = "shopstream";
pub const AUDIENCE: &str = "shopstream-api";

pub struct Shop {
    pub addr: SocketAddr,
    settings: Settings,
    stopped: watch::Receiver<bool>,
    pub accounts: Accounts,
    client: reqwest::Client,
    _db: TestDatabase,
    _nats: NatsServer,
    _stop: watch::Sender<bool>,
}

pub fn api_settings() -> ApiSettings {
    let mut api = ApiSettings::from_env();
    api.jwt_secret = Some(SECRET.to_owned());
    api.rate_limit_ip_per_second = 0;
    api.rate_limit_user_per_second = 0;
    api
}

impl Shop {
    pub async fn start() -> Shop {
        Self::start_with(api_settings()).await
    }

    pub async fn start_with(api: ApiSettings) -> Shop {
        let shop = Self::start_api(api).await;
        shop.start_projectors();
        shop.start_saga();
        shop
    }

    /// The API alone: no projector or saga runs until started.
    pub async fn start_api(api: ApiSettings) -> Shop {
        let nats = NatsServer::start();
        let db = TestDatabase::create().await.unwrap();
        let settings = Settings::for_test(nats.url(), db.url.clone());
        let app = Application::build(&settings, &api).await.unwrap();
        let addr = app.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        tokio::spawn(app.run_until_stopped(until_stopped(stopped.clone())));
        let accounts = Accounts::new(
            db.pool.clone(),
            AuthConfig::new(
                SECRET.as_bytes().to_vec(),
                ISSUER,
                AUDIENCE,
                Duration::from_secs(900),
                Duration::from_secs(3600),
            )
            .unwrap(),
        );
        Shop {
            addr,
            settings,
            stopped,
            _db: db,
            accounts,
            client: reqwest::Client::new(),
            _nats: nats,
            _stop: stop,
        }
    }

    /// What the shop's roles were started with (NATS and PostgreSQL URLs).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Kills the shop's nats-server (SIGKILL).
    pub fn kill_nats(&mut self) {
        self._nats.kill();
    }

    /// Starts the shop's nats-server again on the same port and store.
    pub fn restart_nats(&mut self) {
        self._nats.restart();
    }

    /// The shop's database.
    pub fn db(&self) -> sqlx::PgPool {
        self._db.pool.clone()
    }

    /// Runs every projector in this process until the shop stops.
    pub fn start_projectors(&self) {
        let settings = self.settings.clone();
        let mut stopped = self.stopped.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            // After the test the servers go away under it; that ends it with an error.
            if let Err(error) = shopstream::projecting::run_projectors(&settings, shutdown).await {
                eprintln!("projectors stopped: {error:#}");
            }
        });
    }

    /// Runs the saga role in this process until the shop stops.
    pub fn start_saga(&self) {
        let settings = self.settings.clone();
        let mut stopped = self.stopped.clone();
        let saga = SagaSettings {
            step_timeout_ms: 5_000,
            ack_wait_ms: 5_000,
            max_in_flight: 64,
        };
        // The saga role's future is not `Send` for every lifetime (a higher-ranked bound
        // in sqlx), so it runs on a thread of its own with its own runtime.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                if let Err(error) =
                    shopstream::saga_role::run_saga(&settings, &saga, shutdown).await
                {
                    eprintln!("saga role stopped: {error:#}");
                }
            });
        });
    }

    /// An account of `role` and its access token.
    pub async fn account(&self, role: Role) -> (uuid::Uuid, String) {
        let email = format!("{}-{}@example.com", role.as_str(), uuid::Uuid::new_v4());
        let account = self
            .accounts
            .create(&email, "correct horse battery", role)
            .await
            .unwrap();
        let (token, _) = self.accounts.issue_access_token(account.id, role).unwrap();
        (account.id, token)
    }

    pub async fn admin(&self) -> String {
        self.account(Role::Admin).await.1
    }

    pub async fn customer(&self) -> String {
        self.account(Role::Customer).await.1
    }

    /// Posts one operation; returns status and body.
    pub async fn post(&self, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("http://{}/graphql", self.addr))
            .json(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// Runs an operation as `token` (anonymous with `None`); returns the whole response.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        self.gql_after(token, query, variables, None).await
    }

    /// As [`Shop::gql`], reading after `position`.
    pub async fn gql_after(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
        position: Option<&str>,
    ) -> Value {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let mut headers = Vec::new();
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer.as_str()));
        }
        if let Some(position) = position {
            headers.push(("x-min-position", position));
        }
        let (status, body) = self
            .post(&headers, &json!({ "query": query, "variables": variables }))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Runs an operation that must succeed; returns `data`.
    pub async fn ok(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = self.gql(token, query, variables).await;
        assert!(body.get("errors").is_none(), "{body}");
        body["data"].clone()
    }

    /// A published product with one variant per `(sku, price)` and `stock` units each;
    /// returns its id and the position of the last change.
    pub async fn product(
        &self,
        admin: &str,
        skus: &[(&str, &str)],
        stock: i32,
    ) -> (String, String) {
        let variants: Vec<Value> = skus
            .iter()
            .map(|(sku, price)| {
                json!({ "sku": sku, "name": format!("{sku} variant"),
                        "price": { "amount": price, "currencyCode": "EUR" } })
            })
            .collect();
        let created = self
            .ok(
                Some(admin),
                "mutation($input: ProductCreateInput!) { productCreate(input: $input) {
                    product { id } userErrors { code message } position } }",
                json!({ "input": { "name": format!("Product {}", skus[0].0),
                    "description": "A fine thing", "category": "Mugs", "variants": variants } }),
            )
            .await;
        assert_eq!(
            created["productCreate"]["userErrors"],
            json!([]),
            "{created}"
        );
        let id = created["productCreate"]["product"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let published = self
            .ok(
                Some(admin),
                "mutation($id: ID!) { productPublish(input: { id: $id }) { userErrors { code } position } }",
                json!({ "id": id }),
            )
            .await;
        let mut position = published["productPublish"]["position"]
            .as_str()
            .unwrap()
            .to_owned();
        for (sku, _) in skus {
            if stock > 0 {
                let received = self
                    .ok(
                        Some(admin),
                        "mutation($input: InventoryReceiveInput!) { inventoryReceive(input: $input) {
                            userErrors { code } position } }",
                        json!({ "input": { "sku": sku, "quantity": stock, "reference": "PO-1" } }),
                    )
                    .await;
                assert_eq!(received["inventoryReceive"]["userErrors"], json!([]));
                position = received["inventoryReceive"]["position"]
                    .as_str()
                    .unwrap()
                    .to_owned();
            }
        }
        (id, position)
    }
}

pub fn address() -> Value {
    json!({ "name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London",
            "postalCode": "SW1Y 4JH", "countryCode": "GB" })
}

/// The `extensions.code` of every error of a response.
pub fn codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|error| {
                    error["extensions"]["code"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Polls an order until `done` holds for it (its status, payments...), within 30 s.
pub async fn order_until(
    shop: &Shop,
    token: &str,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    testkit::eventually("the order to settle", Duration::from_secs(30), || async {
        let data = shop
            .ok(
                Some(token),
                "query($id: ID!) { order(id: $id) { id status paymentState total { amount currencyCode }
                    lines { sku quantity unitPrice { amount } }
                    statusTimeline { status reason position }
                    payments { status captured { amount } refunded { amount } } } }",
                json!({ "id": id }),
            )
            .await;
        done(&data["order"]).then_some(data["order"].clone())
    })
    .await
}

/// Polls a SKU's stock until it equals `expected` (fields `onHand`, `reserved`), within
/// 30 s: the inventory read model is projected apart from the orders one.
pub async fn stock_until(shop: &Shop, admin: &str, sku: &str, expected: Value) -> Value {
    testkit::eventually("the stock to settle", Duration::from_secs(30), || async {
        let data = shop
            .ok(
                Some(admin),
                "query($sku: String!) { inventory(sku: $sku) { onHand reserved } }",
                json!({ "sku": sku }),
            )
            .await;
        (data["inventory"] == expected).then_some(data["inventory"].clone())
    })
    .await
}
