//! Every NATS name shopstream uses: streams, subjects, buckets and headers.
//!
//! **Invariant:** no other module spells a subject or a header by hand.

/// The one stream holding every domain event; its sequence is the global position.
pub const EVENTS_STREAM: &str = "EVENTS";
/// The subjects of [`EVENTS_STREAM`]: `events.<aggregate type>.<aggregate id>`.
pub const EVENTS_SUBJECTS: &str = "events.>";
/// Key-value bucket holding aggregate snapshots, keyed `<aggregate type>.<aggregate id>`.
pub const SNAPSHOTS_BUCKET: &str = "snapshots";
/// Key-value bucket reserving SKUs catalog-wide (create-only keys), valued with the product id.
pub const SKUS_BUCKET: &str = "skus";

/// Headers set on every commit message. The aggregate type and id are in the subject;
/// these let consumers route and trace without decoding the payload.
pub mod headers {
    pub const MSG_ID: &str = "Nats-Msg-Id";
    pub const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";
    pub const EVENT_TYPES: &str = "Shopstream-Event-Types";
    pub const CORRELATION_ID: &str = "Shopstream-Correlation-Id";
    pub const CAUSATION_ID: &str = "Shopstream-Causation-Id";
    /// W3C trace context of the span that appended the commit (present only when the
    /// appending process traces with OpenTelemetry); see [`crate::trace_context`].
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";
}

/// The subject of one aggregate instance.
///
/// Aggregate ids may hold characters that NATS reserves in subjects (`.`, `*`, `>`,
/// spaces); they are escaped reversibly as `=XX` so that every id maps to one token.
pub fn aggregate_subject(aggregate_type: &str, aggregate_id: &str) -> String {
    format!(
        "events.{}.{}",
        escape_token(aggregate_type),
        escape_token(aggregate_id)
    )
}

/// The filter matching every instance of one aggregate type.
pub fn aggregate_type_filter(aggregate_type: &str) -> String {
    format!("events.{}.*", escape_token(aggregate_type))
}

/// The snapshot key of one aggregate instance (KV keys allow the same escaped alphabet).
pub fn snapshot_key(aggregate_type: &str, aggregate_id: &str) -> String {
    format!(
        "{}.{}",
        escape_token(aggregate_type),
        escape_token(aggregate_id)
    )
}

/// Escapes every byte outside `[A-Za-z0-9_-]` as `=XX` (upper-case hex); the result is
/// valid both as a subject token and as a key-value key.
pub fn escape_token(raw: &str) -> String {
    let mut token = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            token.push(char::from(byte));
        } else {
            token.push_str(&format!("={byte:02X}"));
        }
    }
    if token.is_empty() {
        // An empty token is not a valid subject; `=` alone never results from escaping.
        token.push('=');
    }
    token
}

/// The inverse of [`escape_token`]; `None` when `token` was not produced by it.
pub fn unescape_token(token: &str) -> Option<String> {
    if token == "=" {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(token.len());
    let mut rest = token.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'=' {
            let hex = tail.get(..2)?;
            let hex = std::str::from_utf8(hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The aggregate type and id a subject of the `EVENTS` stream names, read from the
/// subject alone (so that even a commit whose payload is garbage can be attributed).
pub fn parse_aggregate_subject(subject: &str) -> Option<(String, String)> {
    let mut tokens = subject.split('.');
    if tokens.next()? != "events" {
        return None;
    }
    let aggregate_type = unescape_token(tokens.next()?)?;
    let aggregate_id = unescape_token(tokens.next()?)?;
    if tokens.next().is_some() {
        return None;
    }
    Some((aggregate_type, aggregate_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_parse_back_to_the_aggregate_they_name() {
        for id in ["plain-id_1", "a.b c*>", "", "=", "ünï"] {
            let subject = aggregate_subject("order", id);
            assert_eq!(
                parse_aggregate_subject(&subject),
                Some(("order".to_owned(), id.to_owned())),
                "{subject}"
            );
        }
        assert_eq!(parse_aggregate_subject("events.order"), None);
        assert_eq!(parse_aggregate_subject("other.order.x"), None);
        assert_eq!(parse_aggregate_subject("events.order.x.y"), None);
        assert_eq!(parse_aggregate_subject("events.order.=G1"), None);
    }

    #[test]
    fn plain_ids_are_used_as_they_are() {
        assert_eq!(
            aggregate_subject("order", "0190b6c2-0000-7000-8000-000000000001"),
            "events.order.0190b6c2-0000-7000-8000-000000000001"
        );
    }

    #[test]
    fn reserved_characters_cannot_split_or_widen_a_subject() {
        let subject = aggregate_subject("inventory", "TSHIRT.RED *>");
        assert_eq!(subject, "events.inventory.TSHIRT=2ERED=20=2A=3E");
        assert_eq!(subject.split('.').count(), 3);
    }

    #[test]
    fn distinct_ids_give_distinct_subjects() {
        assert_ne!(escape_token("a.b"), escape_token("a=2Eb="));
        assert_ne!(escape_token(""), escape_token("="));
    }
}
