//! Folds inventory events into `sku_stock`, the stock per SKU that product
//! availability joins.

use std::collections::HashMap;

use domain::inventory::InventoryEvent;
use sqlx::{PgConnection, Row};

use crate::inventory::StockTally;
use crate::projection::ApplyError;

/// The SKUs a batch touches, loaded, then changed in stream order, then written.
#[derive(Debug, Default)]
pub(super) struct StockFold {
    /// Each SKU's stock, and whether the batch changed it.
    tallies: HashMap<String, (StockTally, bool)>,
}

impl StockFold {
    /// Loads the stock of `skus`.
    pub(super) async fn load(conn: &mut PgConnection, skus: &[String]) -> Result<Self, ApplyError> {
        let rows = sqlx::query(
            "SELECT sku, on_hand, reserved, last_sequence FROM sku_stock WHERE sku = ANY($1)",
        )
        .bind(skus)
        .fetch_all(&mut *conn)
        .await?;
        let mut fold = Self::default();
        for row in rows {
            let tally = StockTally {
                on_hand: row.try_get("on_hand")?,
                reserved: row.try_get("reserved")?,
                last_sequence: row.try_get("last_sequence")?,
            };
            fold.tallies.insert(row.try_get("sku")?, (tally, false));
        }
        Ok(fold)
    }

    /// Applies the event at aggregate version `sequence` of inventory `sku`.
    ///
    /// # Errors
    /// [`ApplyError::Inconsistent`] as [`StockTally::record`] says.
    pub(super) fn apply(
        &mut self,
        sku: &str,
        sequence: usize,
        event: &InventoryEvent,
    ) -> Result<(), ApplyError> {
        let (tally, changed) = self.tallies.entry(sku.to_owned()).or_default();
        if tally.record(sku, sequence, event)?.is_some() {
            *changed = true;
        }
        Ok(())
    }

    /// Upserts the stock of every SKU the batch changed.
    pub(super) async fn write(self, conn: &mut PgConnection) -> Result<(), ApplyError> {
        let (skus, tallies): (Vec<String>, Vec<StockTally>) = self
            .tallies
            .into_iter()
            .filter(|(_, (_, changed))| *changed)
            .map(|(sku, (tally, _))| (sku, tally))
            .unzip();
        if skus.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO sku_stock (sku, on_hand, reserved, last_sequence)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
             ON CONFLICT (sku) DO UPDATE SET
                 on_hand = EXCLUDED.on_hand,
                 reserved = EXCLUDED.reserved,
                 last_sequence = EXCLUDED.last_sequence",
        )
        .bind(&skus)
        .bind(tallies.iter().map(|t| t.on_hand).collect::<Vec<_>>())
        .bind(tallies.iter().map(|t| t.reserved).collect::<Vec<_>>())
        .bind(tallies.iter().map(|t| t.last_sequence).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
