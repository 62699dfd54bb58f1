//! One placed order is one trace: the GraphQL mutation, the order command and its append,
//! the saga's steps (continued from the commit's NATS headers) and the projectors' apply
//! of the commit, with the shop's real roles on real NATS and PostgreSQL. The process's
//! subscriber is the production one (`telemetry::subscriber`, JSON logs) with an
//! in-memory span exporter, so this binary holds this one test.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use shopstream::LogFormat;
use tracing_subscriber::EnvFilter;

use crate::support::{address, order_until, Shop};

/// Log lines written by the subscriber, for the test to read.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = Lines;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Lines {
    fn json(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).expect("every log line is one JSON object"))
            .collect()
    }
}

/// The finished spans, by span id.
struct Spans(HashMap<SpanId, SpanData>);

impl Spans {
    fn read(exporter: &InMemorySpanExporter) -> Self {
        Spans(
            exporter
                .get_finished_spans()
                .unwrap()
                .into_iter()
                .map(|span| (span.span_context.span_id(), span))
                .collect(),
        )
    }

    fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a SpanData> + 'a {
        self.0.values().filter(move |span| span.name == name)
    }

    /// Whether `ancestor` is `span`'s parent, grandparent, ...
    fn descends_from(&self, span: &SpanData, ancestor: &SpanData) -> bool {
        let mut parent = span.parent_span_id;
        while let Some(up) = self.0.get(&parent) {
            if up.span_context.span_id() == ancestor.span_context.span_id() {
                return true;
            }
            parent = up.parent_span_id;
        }
        false
    }
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn has(span: &SpanData, key: &str, value: &str) -> bool {
    attribute(span, key).is_some_and(|v| v.as_str() == value)
}

/// What the test expects to find in one trace.
struct OrderTrace {
    trace_id: TraceId,
    append: SpanId,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placed_order_is_one_trace_from_the_mutation_through_the_saga_to_the_projectors() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let lines = Lines::default();
    let subscriber = shopstream::telemetry::subscriber(
        LogFormat::Json,
        EnvFilter::new("info"),
        Some(provider.tracer("shopstream-test")),
        lines.clone(),
    );
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let shop = Shop::start().await;
    let admin = shop.admin().await;
    shop.product(&admin, &[("MUG-BLUE", "12.50")], 10).await;
    let customer = shop.customer().await;
    let cart = shop
        .ok(
            Some(&customer),
            r#"mutation { cartLinesAdd(input: { lines: [{ sku: "MUG-BLUE", quantity: 2 }] }) { cart { id } } }"#,
            json!({}),
        )
        .await;
    let cart_id = cart["cartLinesAdd"]["cart"]["id"].as_str().unwrap();
    let placed = shop
        .ok(
            Some(&customer),
            "mutation($input: OrderPlaceInput!) { orderPlace(input: $input) {
                order { id } userErrors { code } } }",
            json!({ "input": { "cartId": cart_id, "paymentToken": "tok_visa", "shippingAddress": address() } }),
        )
        .await;
    assert_eq!(placed["orderPlace"]["userErrors"], json!([]), "{placed}");
    let order_id = placed["orderPlace"]["order"]["id"].as_str().unwrap();
    order_until(&shop, &customer, order_id, |order| {
        order["status"] == "CONFIRMED"
    })
    .await;

    // The spans of the checkout's trace, once the projectors' apply spans have ended
    // (they end after the transaction commits, which a reader may see first).
    let (spans, order) = testkit::eventually(
        "the checkout's spans to be exported",
        Duration::from_secs(30),
        || async {
            let spans = Spans::read(&exporter);
            let order = checkout_trace(&spans)?;
            let applied_by = |projector: &str| {
                spans.named("projector.apply").any(|apply| {
                    has(apply, "projector", projector)
                        && apply.parent_span_id == order.append
                        && apply.span_context.trace_id() == order.trace_id
                })
            };
            (applied_by("orders") && applied_by("sales") && saga_step(&spans, &order).is_some())
                .then_some((spans, order))
        },
    )
    .await;

    // The saga continued the trace from the OrderPlaced commit's headers: its trigger
    // span is the append span's child, and the steps descend from it.
    let trigger = spans
        .named("saga.trigger")
        .find(|span| span.parent_span_id == order.append)
        .expect("the saga's trigger span is a child of the order's append span");
    assert_eq!(trigger.span_context.trace_id(), order.trace_id);
    assert!(trigger.parent_span_is_remote, "the parent came over NATS");
    let step = saga_step(&spans, &order).unwrap();
    assert!(spans.descends_from(step, trigger));

    // A command a saga step sent is in the same trace, and so is the projectors' apply
    // of the commit it appended (the inventory's reservation).
    let reserve = spans
        .named("command")
        .find(|span| has(span, "aggregate_type", "inventory") && spans.descends_from(span, step))
        .expect("the reserving step sent an inventory command");
    let reserve_append = spans
        .named("append")
        .find(|span| span.parent_span_id == reserve.span_context.span_id())
        .expect("the reservation was appended");
    let inventory_apply = spans
        .named("projector.apply")
        .find(|span| {
            has(span, "projector", "inventory")
                && span.parent_span_id == reserve_append.span_context.span_id()
        })
        .expect("the inventory projector applied the reservation in the same trace");
    assert_eq!(inventory_apply.span_context.trace_id(), order.trace_id);

    // Each apply span links to the batch that applied it.
    let batch = &inventory_apply.links.links[0].span_context;
    let batch = spans.0.get(&batch.span_id()).expect("the batch span");
    assert_eq!(batch.name, "projector.batch");
    assert!(has(batch, "projector", "inventory"));

    // Log lines inside the saga's spans carry the trace id and the correlation id.
    let rested = lines
        .json()
        .into_iter()
        .find(|line| {
            line["message"] == "saga at rest" && line["trace_id"] == order.trace_id.to_string()
        })
        .expect("a JSON log line of the saga at rest, with the checkout's trace id");
    assert_eq!(rested["outcome"], "completed");
    assert_eq!(rested["span"], "saga.drive");
    assert_eq!(rested["correlation_id"], rested["order_id"]);
    let drive = spans
        .0
        .values()
        .find(|span| span.span_context.span_id().to_string() == rested["span_id"])
        .expect("the log line names its span");
    assert_eq!(drive.name, "saga.drive");
}

/// The checkout request's span, its order command and that command's append, all in one
/// trace.
fn checkout_trace(spans: &Spans) -> Option<OrderTrace> {
    // The one order command a request sent: the checkout's.
    let command = spans.named("command").find(|span| {
        has(span, "aggregate_type", "order")
            && spans
                .0
                .get(&span.parent_span_id)
                .is_some_and(|parent| parent.name == "graphql.request")
    })?;
    let request = &spans.0[&command.parent_span_id];
    let append = spans
        .named("append")
        .find(|span| span.parent_span_id == command.span_context.span_id())?;
    assert_eq!(
        append.span_context.trace_id(),
        request.span_context.trace_id()
    );
    Some(OrderTrace {
        trace_id: request.span_context.trace_id(),
        append: append.span_context.span_id(),
    })
}

/// The saga's reserving step in the order's trace.
fn saga_step<'a>(spans: &'a Spans, order: &OrderTrace) -> Option<&'a SpanData> {
    spans.named("saga.step").find(|span| {
        has(span, "phase", "reserving") && span.span_context.trace_id() == order.trace_id
    })
}
