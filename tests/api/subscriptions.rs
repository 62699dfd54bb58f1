//! Subscriptions over `graphql-transport-ws`: every status of an order, to confirmation
//! and to cancellation, for its owner and admins only.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{address, Shop};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(shop: &Shop, token: &str) -> Socket {
    let mut request = format!("ws://{}/graphql/ws", shop.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    send(&mut socket, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })).await;
    let ack = receive(&mut socket).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

async fn receive(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("a message within 30 s")
            .expect("the socket stays open")
            .unwrap();
        match message {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] == "ping" {
                    send(socket, json!({ "type": "pong" })).await;
                    continue;
                }
                return value;
            }
            Message::Close(frame) => {
                return json!({ "type": "closed", "frame": format!("{frame:?}") })
            }
            _ => continue,
        }
    }
}

async fn subscribe(socket: &mut Socket, order_id: &str) {
    send(
        socket,
        json!({ "id": "1", "type": "subscribe", "payload": {
            "query": "subscription($id: ID!) { orderStatusChanged(orderId: $id) { change { status reason } order { status } } }",
            "variables": { "id": order_id } } }),
    )
    .await;
}

/// Statuses pushed until `last` arrives.
async fn statuses_until(socket: &mut Socket, last: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let message = receive(socket).await;
        assert_eq!(message["type"], "next", "{message}");
        let status = message["payload"]["data"]["orderStatusChanged"]["change"]["status"]
            .as_str()
            .unwrap()
            .to_owned();
        // The order the update carries already shows the change.
        assert!(message["payload"]["data"]["orderStatusChanged"]["order"]["status"].is_string());
        seen.push(status.clone());
        if status == last {
            return seen;
        }
    }
}

async fn place(shop: &Shop, customer: &str, token: &str) -> String {
    let placed = shop
        .ok(
            Some(customer),
            "mutation($input: OrderPlaceInput!) { orderPlace(input: $input) { order { id } userErrors { code } } }",
            json!({ "input": { "lines": [{ "sku": "LAMP-1", "quantity": 1 }], "paymentToken": token,
                               "shippingAddress": address() } }),
        )
        .await;
    placed["orderPlace"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_receives_every_status_to_confirmation_and_to_cancellation() {
    let shop = Shop::start().await;
    let admin = shop.admin().await;
    shop.product(&admin, &[("LAMP-1", "40.00")], 10).await;
    let customer = shop.customer().await;

    let confirmed = place(&shop, &customer, "tok_visa").await;
    let mut socket = connect(&shop, &customer).await;
    subscribe(&mut socket, &confirmed).await;
    assert_eq!(
        statuses_until(&mut socket, "CONFIRMED").await,
        [
            "PLACED",
            "STOCK_RESERVED",
            "PAYMENT_AUTHORISED",
            "CONFIRMED"
        ]
    );
    // Later changes arrive on the same subscription: the admin ships it.
    shop.ok(
        Some(&admin),
        r#"mutation($id: ID!) { orderShip(input: { id: $id, carrier: "UPS", tracking: "1Z" }) { position } }"#,
        json!({ "id": confirmed }),
    )
    .await;
    assert_eq!(statuses_until(&mut socket, "SHIPPED").await, ["SHIPPED"]);

    // A declined card: the admin watches it end cancelled.
    let declined = place(&shop, &customer, "tok_declined").await;
    let mut admin_socket = connect(&shop, &admin).await;
    subscribe(&mut admin_socket, &declined).await;
    let seen = statuses_until(&mut admin_socket, "CANCELLED").await;
    assert_eq!(seen.first().map(String::as_str), Some("PLACED"));
    assert_eq!(seen.last().map(String::as_str), Some("CANCELLED"));
    assert!(!seen.contains(&"CONFIRMED".to_owned()), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customer_cannot_subscribe_and_a_bad_token_is_refused_at_connection() {
    let shop = Shop::start().await;
    let admin = shop.admin().await;
    shop.product(&admin, &[("LAMP-1", "40.00")], 10).await;
    let owner = shop.customer().await;
    let order = place(&shop, &owner, "tok_visa").await;

    let stranger = shop.customer().await;
    let mut socket = connect(&shop, &stranger).await;
    subscribe(&mut socket, &order).await;
    let refused = receive(&mut socket).await;
    assert!(refused["payload"]["data"].is_null(), "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{refused}"
    );
    assert_eq!(receive(&mut socket).await["type"], "complete");

    let mut request = format!("ws://{}/graphql/ws", shop.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    send(&mut socket, json!({ "type": "connection_init", "payload": { "Authorization": "Bearer forged.token.here" } })).await;
    let answer = receive(&mut socket).await;
    assert_eq!(answer["type"], "closed", "{answer}");
}
