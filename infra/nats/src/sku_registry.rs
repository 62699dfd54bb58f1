//! Catalog-wide SKU uniqueness, which no single product aggregate can see.
//!
//! Before a product is created (or a variant added), each SKU is reserved with a
//! create-only key in the `skus` bucket, valued with the product id. The server accepts
//! only the first create of a key, so two products racing for one SKU cannot both win.
//! Reserving again for the same product is a no-op, so a retried command is safe.

use async_nats::jetstream::{self, kv};
use tracing::warn;

use crate::error::StoreError;
use crate::subjects::{escape_token, SKUS_BUCKET};

/// Why a SKU could not be reserved.
#[derive(Debug, thiserror::Error)]
pub enum SkuReservationError {
    #[error("SKU {sku} already belongs to product {owner}")]
    Taken { sku: String, owner: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The `skus` bucket.
#[derive(Clone)]
pub struct SkuRegistry {
    bucket: kv::Store,
}

impl SkuRegistry {
    /// Opens the provisioned bucket.
    ///
    /// # Errors
    /// [`StoreError::Nats`] when the bucket is missing.
    pub async fn open(js: &jetstream::Context) -> Result<Self, StoreError> {
        let bucket = js
            .get_key_value(SKUS_BUCKET)
            .await
            .map_err(StoreError::nats)?;
        Ok(Self { bucket })
    }

    /// Reserves every SKU for `product_id`, all or nothing: on a clash the ones reserved
    /// by this call are released again. Returns the SKUs this call newly reserved (those
    /// the product already held are not repeated), so a caller can undo exactly them.
    ///
    /// # Errors
    /// [`SkuReservationError::Taken`] naming the SKU and its owner.
    pub async fn reserve_all(
        &self,
        skus: &[String],
        product_id: &str,
    ) -> Result<Vec<String>, SkuReservationError> {
        let mut reserved_now = Vec::new();
        for sku in skus {
            match self.reserve(sku, product_id).await {
                Ok(newly) => {
                    if newly {
                        reserved_now.push(sku.clone());
                    }
                }
                Err(error) => {
                    for sku in &reserved_now {
                        self.release(sku, product_id).await?;
                    }
                    return Err(error);
                }
            }
        }
        Ok(reserved_now)
    }

    /// Reserves one SKU; returns whether this call created the reservation.
    ///
    /// # Errors
    /// [`SkuReservationError::Taken`] when another product holds it.
    pub async fn reserve(&self, sku: &str, product_id: &str) -> Result<bool, SkuReservationError> {
        let key = escape_token(sku);
        match self.bucket.create(&key, product_id.to_owned().into()).await {
            Ok(_) => Ok(true),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                let owner = self.owner(sku).await?.unwrap_or_default();
                if owner == product_id {
                    Ok(false)
                } else {
                    Err(SkuReservationError::Taken {
                        sku: sku.to_owned(),
                        owner,
                    })
                }
            }
            Err(error) => Err(StoreError::nats(error).into()),
        }
    }

    /// The product holding a SKU, if any.
    ///
    /// # Errors
    /// [`StoreError::Nats`] when the bucket cannot be read.
    pub async fn owner(&self, sku: &str) -> Result<Option<String>, StoreError> {
        let value = self
            .bucket
            .get(escape_token(sku))
            .await
            .map_err(StoreError::nats)?;
        Ok(value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Releases a SKU if `product_id` holds it (after a failed create).
    ///
    /// # Errors
    /// [`StoreError::Nats`] when the bucket cannot be written.
    pub async fn release(&self, sku: &str, product_id: &str) -> Result<(), StoreError> {
        let key = escape_token(sku);
        let Some(entry) = self.bucket.entry(&key).await.map_err(StoreError::nats)? else {
            return Ok(());
        };
        if entry.value.as_ref() != product_id.as_bytes() {
            warn!(
                sku,
                product_id, "not releasing a SKU held by another product"
            );
            return Ok(());
        }
        // Only delete the revision we read, so a concurrent re-reservation survives.
        self.bucket
            .delete_expect_revision(&key, Some(entry.revision))
            .await
            .map_err(StoreError::nats)
    }
}
