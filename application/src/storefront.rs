//! The storefront's own tables (schema `storefront`): carts, and the idempotency keys
//! mutations were called with.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::ErrorCode;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// Most lines a cart holds.
pub const MAX_CART_LINES: usize = 100;
/// Most units of one SKU on a line.
pub const MAX_LINE_QUANTITY: u32 = 10_000;

/// A customer's cart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cart {
    /// The cart.
    pub id: Uuid,
    /// Whose it is.
    pub customer_id: Uuid,
    /// SKU and quantity, in the order they were added.
    pub lines: Vec<(String, u32)>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Why a cart change was refused.
#[derive(Debug, thiserror::Error)]
pub enum CartError {
    /// The change would leave more than [`MAX_CART_LINES`] lines.
    #[error("a cart holds at most {MAX_CART_LINES} lines")]
    TooManyLines,
    /// The change would put more than [`MAX_LINE_QUANTITY`] units on a line.
    #[error("a line holds at most {MAX_LINE_QUANTITY} units")]
    QuantityTooLarge,
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// The codes of the refusals are the client's contract (`userErrors { code }`). The
/// database's code is never sent: the edge reports that failure as an error.
impl ErrorCode for CartError {
    fn code(&self) -> &'static str {
        match self {
            CartError::TooManyLines => "TOO_MANY_LINES",
            CartError::QuantityTooLarge => "QUANTITY_TOO_LARGE",
            CartError::Database(_) => "DATABASE",
        }
    }
}

/// Carts in PostgreSQL.
#[derive(Clone)]
pub struct Carts {
    pool: PgPool,
}

impl Carts {
    /// Carts stored in `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The customer's cart, created empty on first use.
    ///
    /// # Errors
    /// When PostgreSQL fails.
    pub async fn cart_of(&self, customer_id: Uuid) -> Result<Cart, sqlx::Error> {
        let (cart_id, updated_at): (Uuid, DateTime<Utc>) = sqlx::query_as(
            "INSERT INTO storefront.carts (cart_id, customer_id) VALUES ($1, $2)
             ON CONFLICT (customer_id) DO UPDATE SET customer_id = EXCLUDED.customer_id
             RETURNING cart_id, updated_at",
        )
        .bind(Uuid::now_v7())
        .bind(customer_id)
        .fetch_one(&self.pool)
        .await?;
        let lines: Vec<(String, i32)> = sqlx::query_as(
            "SELECT sku, quantity FROM storefront.cart_lines
             WHERE cart_id = $1 ORDER BY line_no",
        )
        .bind(cart_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Cart {
            id: cart_id,
            customer_id,
            lines: lines
                .into_iter()
                .map(|(sku, quantity)| (sku, u32::try_from(quantity).unwrap_or(0)))
                .collect(),
            updated_at,
        })
    }

    /// Changes the customer's cart in one transaction: `add` adds units to a line (making
    /// it if needed), `set` sets a line's units (0 removes it), `remove` drops lines.
    ///
    /// # Errors
    /// [`CartError::TooManyLines`] or [`CartError::QuantityTooLarge`], and then nothing
    /// changed; [`CartError::Database`].
    pub async fn change(
        &self,
        customer_id: Uuid,
        change: CartChange<'_>,
    ) -> Result<Cart, CartError> {
        let cart = self.cart_of(customer_id).await?;
        let mut tx = self.pool.begin().await?;
        // Serialises concurrent changes of one cart.
        sqlx::query("SELECT 1 FROM storefront.carts WHERE cart_id = $1 FOR UPDATE")
            .bind(cart.id)
            .execute(&mut *tx)
            .await?;
        let current: Vec<(String, i32)> = sqlx::query_as(
            "SELECT sku, quantity FROM storefront.cart_lines WHERE cart_id = $1 ORDER BY line_no",
        )
        .bind(cart.id)
        .fetch_all(&mut *tx)
        .await?;
        let current: Vec<(String, u32)> = current
            .into_iter()
            .map(|(sku, quantity)| (sku, u32::try_from(quantity).unwrap_or(0)))
            .collect();
        let lines = apply_change(current, change)?;
        sqlx::query("DELETE FROM storefront.cart_lines WHERE cart_id = $1")
            .bind(cart.id)
            .execute(&mut *tx)
            .await?;
        for (index, (sku, quantity)) in lines.iter().enumerate() {
            sqlx::query(
                "INSERT INTO storefront.cart_lines (cart_id, sku, quantity, line_no)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(cart.id)
            .bind(sku)
            .bind(i32::try_from(*quantity).unwrap_or(i32::MAX))
            .bind(i32::try_from(index).unwrap_or(i32::MAX))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE storefront.carts SET updated_at = now() WHERE cart_id = $1")
            .bind(cart.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(self.cart_of(customer_id).await?)
    }

    /// Takes the ordered lines out of the cart: each line whose SKU and quantity are
    /// exactly what was ordered (a line changed since stays).
    ///
    /// # Errors
    /// When PostgreSQL fails.
    pub async fn check_out(
        &self,
        cart_id: Uuid,
        ordered: &[(String, u32)],
    ) -> Result<(), sqlx::Error> {
        let skus: Vec<&str> = ordered.iter().map(|(sku, _)| sku.as_str()).collect();
        let quantities: Vec<i32> = ordered
            .iter()
            .map(|(_, quantity)| i32::try_from(*quantity).unwrap_or(i32::MAX))
            .collect();
        sqlx::query(
            "DELETE FROM storefront.cart_lines l
             USING unnest($2::text[], $3::int[]) AS o(sku, quantity)
             WHERE l.cart_id = $1 AND l.sku = o.sku AND l.quantity = o.quantity",
        )
        .bind(cart_id)
        .bind(&skus)
        .bind(&quantities)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The lines after `change`, in their first-added order.
///
/// # Errors
/// [`CartError::TooManyLines`], [`CartError::QuantityTooLarge`].
fn apply_change(
    mut lines: Vec<(String, u32)>,
    change: CartChange<'_>,
) -> Result<Vec<(String, u32)>, CartError> {
    let mut quantities: HashMap<String, u32> = lines.iter().cloned().collect();
    match change {
        CartChange::Add(added) => {
            for (sku, quantity) in added {
                let line = quantities.entry(sku.clone()).or_insert_with(|| {
                    lines.push((sku.clone(), 0));
                    0
                });
                *line = line.saturating_add(*quantity);
            }
        }
        CartChange::Set(set) => {
            for (sku, quantity) in set {
                if !quantities.contains_key(sku) {
                    lines.push((sku.clone(), 0));
                }
                quantities.insert(sku.clone(), *quantity);
            }
        }
        CartChange::Remove(skus) => {
            for sku in skus {
                quantities.insert(sku.clone(), 0);
            }
        }
    }
    let lines: Vec<(String, u32)> = lines
        .into_iter()
        .map(|(sku, _)| {
            let quantity = quantities.get(&sku).copied().unwrap_or(0);
            (sku, quantity)
        })
        .filter(|(_, quantity)| *quantity > 0)
        .collect();
    if lines.len() > MAX_CART_LINES {
        return Err(CartError::TooManyLines);
    }
    if lines
        .iter()
        .any(|(_, quantity)| *quantity > MAX_LINE_QUANTITY)
    {
        return Err(CartError::QuantityTooLarge);
    }
    Ok(lines)
}

/// One change to a cart.
#[derive(Debug, Clone, Copy)]
pub enum CartChange<'a> {
    /// Add units to lines.
    Add(&'a [(String, u32)]),
    /// Set lines' units; 0 removes.
    Set(&'a [(String, u32)]),
    /// Remove lines.
    Remove(&'a [String]),
}

/// What an idempotency key was first used with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyUse {
    /// First use, or again with the same input: go ahead (commands are idempotent by the
    /// ids derived from the key).
    Proceed,
    /// Used before with other input.
    ReusedWithOtherInput,
}

/// Idempotency keys in PostgreSQL.
#[derive(Clone)]
pub struct IdempotencyKeys {
    pool: PgPool,
}

impl IdempotencyKeys {
    /// Keys stored in `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Records the first use of `key` by `principal` for `operation` with `request`, or
    /// compares a later use with the first.
    ///
    /// # Errors
    /// When PostgreSQL fails.
    pub async fn claim(
        &self,
        principal: Uuid,
        operation: &str,
        key: &str,
        request: &Value,
    ) -> Result<KeyUse, sqlx::Error> {
        let first: Value = sqlx::query_scalar(
            "WITH inserted AS (
                 INSERT INTO storefront.idempotency_keys (principal, operation, key, request)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING
                 RETURNING request)
             SELECT request FROM inserted
             UNION ALL
             SELECT request FROM storefront.idempotency_keys
              WHERE principal = $1 AND operation = $2 AND key = $3
             LIMIT 1",
        )
        .bind(principal)
        .bind(operation)
        .bind(key)
        .bind(request)
        .fetch_one(&self.pool)
        .await?;
        Ok(if &first == request {
            KeyUse::Proceed
        } else {
            KeyUse::ReusedWithOtherInput
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, quantity: u32) -> (String, u32) {
        (sku.to_owned(), quantity)
    }

    #[test]
    fn adding_sums_units_and_keeps_the_first_added_order() {
        let lines = vec![line("MUG", 1), line("CAP", 2)];
        let added = [line("TEE", 1), line("MUG", 2)];
        let after = apply_change(lines, CartChange::Add(&added)).unwrap();
        assert_eq!(after, vec![line("MUG", 3), line("CAP", 2), line("TEE", 1)]);
    }

    #[test]
    fn setting_zero_or_removing_drops_a_line() {
        let lines = vec![line("MUG", 1), line("CAP", 2), line("TEE", 3)];
        let after =
            apply_change(lines, CartChange::Set(&[line("MUG", 0), line("CAP", 5)])).unwrap();
        assert_eq!(after, vec![line("CAP", 5), line("TEE", 3)]);
        let after = apply_change(after, CartChange::Remove(&["TEE".to_owned()])).unwrap();
        assert_eq!(after, vec![line("CAP", 5)]);
    }

    #[test]
    fn cart_errors_keep_their_codes() {
        let codes = [
            (CartError::TooManyLines, "TOO_MANY_LINES"),
            (CartError::QuantityTooLarge, "QUANTITY_TOO_LARGE"),
            (CartError::Database(sqlx::Error::PoolTimedOut), "DATABASE"),
        ];
        for (error, code) in codes {
            assert_eq!(error.code(), code, "{error:?}");
        }
    }

    #[test]
    fn a_cart_past_its_limits_is_refused() {
        let too_many: Vec<_> = (0..=MAX_CART_LINES)
            .map(|i| line(&format!("SKU-{i}"), 1))
            .collect();
        assert!(matches!(
            apply_change(Vec::new(), CartChange::Add(&too_many)),
            Err(CartError::TooManyLines)
        ));
        assert!(matches!(
            apply_change(
                vec![line("MUG", MAX_LINE_QUANTITY)],
                CartChange::Add(&[line("MUG", 1)])
            ),
            Err(CartError::QuantityTooLarge)
        ));
    }
}
