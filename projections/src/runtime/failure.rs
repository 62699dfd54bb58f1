//! Telling a failure that will pass (PostgreSQL restarting) from one that will not.

use crate::projection::ApplyError;

/// Whether `error` is worth retrying unchanged after a pause: the database or the
/// connection to it is unavailable, or the transaction lost a race. Everything else is
/// a property of the commit or of the projection code, and retrying will not fix it.
pub fn is_transient(error: &ApplyError) -> bool {
    match error {
        ApplyError::Database(error) => is_transient_sql(error),
        ApplyError::Decode(_) | ApplyError::Inconsistent(_) => false,
    }
}

/// The sqlx half of [`is_transient`].
pub fn is_transient_sql(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(error) => error.code().is_some_and(|code| {
            let code = code.as_ref();
            // 08: connection exception; 53: insufficient resources; 57P0x: shutdown in
            // progress, cannot connect now; 40001/40P01: serialization failure, deadlock;
            // 55P03: lock not available; 57014: statement cancelled (timeout).
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P0")
                || matches!(code, "40001" | "40P01" | "55P03" | "57014")
        }),
        _ => false,
    }
}

/// A short, stable label for grouping dead letters by cause: the error text with the
/// digits, quoted values and ids that differ between occurrences removed.
pub fn fingerprint(error: &str) -> String {
    let mut label = String::with_capacity(error.len().min(120));
    let mut in_quote = false;
    let mut last_was_hole = false;
    for ch in error.chars() {
        if ch == '"' || ch == '`' || ch == '\'' {
            in_quote = !in_quote;
            if !last_was_hole {
                label.push('_');
                last_was_hole = true;
            }
            continue;
        }
        if in_quote || ch.is_ascii_digit() || ch.is_ascii_hexdigit() && last_was_hole {
            if !last_was_hole {
                label.push('_');
                last_was_hole = true;
            }
            continue;
        }
        last_was_hole = false;
        label.push(ch);
        if label.len() >= 120 {
            break;
        }
    }
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_transient_and_decode_failures_are_not() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(is_transient(&ApplyError::Database(io)));
        assert!(is_transient(&ApplyError::Database(
            sqlx::Error::PoolTimedOut
        )));
        assert!(!is_transient(&ApplyError::Decode("missing field".into())));
        assert!(!is_transient(&ApplyError::Inconsistent("no order".into())));
        assert!(!is_transient(&ApplyError::Database(
            sqlx::Error::RowNotFound
        )));
    }

    #[test]
    fn fingerprints_ignore_the_values_that_differ_between_occurrences() {
        let a = fingerprint("missing field `sku` at line 1 column 42 of order/\"0190-ab\"");
        let b = fingerprint("missing field `qty` at line 7 column 9 of order/\"0190-cd\"");
        assert_eq!(a, b);
        assert_ne!(a, fingerprint("unknown variant `Foo`"));
    }
}
