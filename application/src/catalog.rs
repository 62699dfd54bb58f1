//! The catalog (staff): products, their variants and prices, and whether they are on
//! sale. SKUs are unique across the catalog (`infra_nats::ProductCommands`).

use domain::product::{NewVariant, ProductCommand};
use domain::{Actor, CommandMetadata, Money, ProductId, Sku};
use infra_nats::CommitOutcome;
use uuid::Uuid;

use crate::error::{product_committed, Refusal, Rejection, UseCaseResult};
use crate::Shop;

/// A new product, unpublished until it is published.
#[derive(Debug, Clone)]
pub struct CreateProduct {
    /// Its name.
    pub name: String,
    /// What it is.
    pub description: String,
    /// Where it is shelved.
    pub category: String,
    /// What is sold of it.
    pub variants: Vec<NewVariant>,
}

/// One change of a product's description; the field it came from names it in rejections.
#[derive(Debug, Clone)]
pub enum ProductEdit {
    /// A new name.
    Rename(String),
    /// A new description.
    Describe(String),
    /// Another category.
    Recategorise(String),
}

impl ProductEdit {
    fn field(&self) -> &'static str {
        match self {
            ProductEdit::Rename(_) => "name",
            ProductEdit::Describe(_) => "description",
            ProductEdit::Recategorise(_) => "category",
        }
    }

    fn command(self) -> ProductCommand {
        match self {
            ProductEdit::Rename(name) => ProductCommand::RenameProduct { name },
            ProductEdit::Describe(description) => ProductCommand::DescribeProduct { description },
            ProductEdit::Recategorise(category) => ProductCommand::ChangeCategory { category },
        }
    }
}

/// What a product change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductChanged {
    /// The product.
    pub product_id: ProductId,
    /// Where the last change was committed.
    pub outcome: CommitOutcome,
}

/// Edits applied before one was rejected, and the rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartlyEdited {
    /// The last edit that was committed, if any was.
    pub committed: Option<ProductChanged>,
    /// Why the next one was not.
    pub rejection: Rejection,
}

impl Shop {
    /// Creates a product with its variants, unpublished.
    ///
    /// # Errors
    /// A backing service's failure.
    pub async fn create_product(
        &self,
        staff: Uuid,
        input: CreateProduct,
    ) -> UseCaseResult<ProductChanged> {
        let product_id = ProductId(Uuid::now_v7());
        let command = ProductCommand::CreateProduct {
            product_id,
            name: input.name,
            description: input.description,
            category: input.category,
            variants: input.variants,
        };
        self.product_command(staff, product_id, command, "variants")
            .await
    }

    /// Applies `edits` in order, one command each, all caused by one request; stops at
    /// the first rejected, reporting what was committed before it.
    ///
    /// # Errors
    /// A backing service's failure.
    pub async fn edit_product(
        &self,
        staff: Uuid,
        product_id: ProductId,
        edits: Vec<ProductEdit>,
    ) -> Result<Result<Option<ProductChanged>, PartlyEdited>, crate::AppError> {
        let metadata = CommandMetadata::new(Actor::User(staff));
        let mut last = None;
        for edit in edits {
            let field = edit.field();
            let metadata = metadata.caused_by(metadata.command_id, Uuid::now_v7());
            let result = self
                .commands
                .products
                .execute(product_id, edit.command(), &metadata)
                .await;
            match product_committed(result, &[field])? {
                Ok(outcome) => {
                    last = Some(ProductChanged {
                        product_id,
                        outcome,
                    })
                }
                Err(rejection) => {
                    return Ok(Err(PartlyEdited {
                        committed: last,
                        rejection,
                    }))
                }
            }
        }
        Ok(Ok(last))
    }

    /// Sets the price of the variant sold under `sku`.
    ///
    /// # Errors
    /// A backing service's failure.
    pub async fn set_variant_price(
        &self,
        staff: Uuid,
        sku: &str,
        price: Money,
    ) -> UseCaseResult<ProductChanged> {
        let Ok(sku) = Sku::parse(sku.to_owned()) else {
            return Ok(Err(Rejection::refusal(
                &["sku"],
                Refusal::UnknownSku,
                "no variant has this SKU",
            )));
        };
        let Some(product_id) = self.owner_of(&sku).await? else {
            return Ok(Err(Rejection::refusal(
                &["sku"],
                Refusal::UnknownSku,
                format!("no variant has SKU {sku}"),
            )));
        };
        self.product_command(
            staff,
            product_id,
            ProductCommand::ChangeVariantPrice { sku, price },
            "price",
        )
        .await
    }

    /// Shows a product in the shop (`true`) or hides it.
    ///
    /// # Errors
    /// A backing service's failure.
    pub async fn publish_product(
        &self,
        staff: Uuid,
        product_id: ProductId,
        published: bool,
    ) -> UseCaseResult<ProductChanged> {
        let command = if published {
            ProductCommand::PublishProduct
        } else {
            ProductCommand::UnpublishProduct
        };
        self.product_command(staff, product_id, command, "id").await
    }

    /// One product command on behalf of `staff`, its rejection on `field`.
    async fn product_command(
        &self,
        staff: Uuid,
        product_id: ProductId,
        command: ProductCommand,
        field: &str,
    ) -> UseCaseResult<ProductChanged> {
        let result = self
            .commands
            .products
            .execute(
                product_id,
                command,
                &CommandMetadata::new(Actor::User(staff)),
            )
            .await;
        Ok(
            product_committed(result, &[field])?.map(|outcome| ProductChanged {
                product_id,
                outcome,
            }),
        )
    }
}
