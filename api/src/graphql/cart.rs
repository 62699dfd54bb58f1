//! The customer's cart: lines kept by the storefront until an order is placed from it.

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use domain::ErrorCode;

use super::context::ContextExt;
use super::error::ApiError;
use super::ids::{truncated, CartId, GlobalId};
use super::money::MoneyV2;
use super::orders::{checked_lines, OrderLineInput};
use super::relay::UserError;
use crate::auth::Role;
use crate::consistency::ReadModel;
use application::storefront::{self, CartChange, CartError};

/// A customer's cart, priced at the catalog's current prices.
#[derive(Clone)]
pub struct Cart {
    cart: storefront::Cart,
}

/// A customer's cart, priced at the catalog's current prices.
#[Object]
impl Cart {
    /// The cart's opaque id; pass it to `orderPlace` as `cartId`.
    async fn id(&self) -> ID {
        CartId(self.cart.id).to_global()
    }

    /// The lines, in the order they were first added.
    async fn lines(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<CartLine>> {
        let skus: Vec<String> = self.cart.lines.iter().map(|(sku, _)| sku.clone()).collect();
        let db = ctx.read(ReadModel::Catalog).await?;
        let variants = projections::catalog::variants_by_sku(db, &skus)
            .await
            .map_err(ApiError::from)?;
        Ok(self
            .cart
            .lines
            .iter()
            .map(|(sku, quantity)| {
                let variant = variants.get(sku).map(|(_, variant)| variant);
                CartLine {
                    sku: sku.clone(),
                    quantity: i64::from(*quantity),
                    name: variant.map(|variant| variant.name.clone()),
                    unit_price: variant.map(|variant| variant.price.into()),
                    line_total: variant
                        .and_then(|variant| variant.price.checked_mul(*quantity).ok())
                        .map(MoneyV2::from),
                    available: variant.is_some_and(|variant| {
                        !variant.retired && variant.available >= i64::from(*quantity)
                    }),
                }
            })
            .collect())
    }

    /// When the cart last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.cart.updated_at
    }
}

/// One line of a cart.
#[derive(Clone, SimpleObject)]
pub struct CartLine {
    /// The variant.
    pub sku: String,
    /// Units.
    pub quantity: i64,
    /// The variant's name; null when the catalog no longer has it.
    pub name: Option<String>,
    /// The current unit price.
    pub unit_price: Option<MoneyV2>,
    /// `unitPrice × quantity`.
    pub line_total: Option<MoneyV2>,
    /// Whether the units can be ordered now.
    pub available: bool,
}

/// Lines to put in the cart.
#[derive(Debug, InputObject)]
pub struct CartLinesInput {
    /// SKUs and units.
    pub lines: Vec<OrderLineInput>,
}

/// Lines to take out of the cart.
#[derive(Debug, InputObject)]
pub struct CartLinesRemoveInput {
    /// The SKUs to remove.
    pub skus: Vec<String>,
}

/// The answer to a cart mutation.
#[derive(SimpleObject)]
pub struct CartPayload {
    /// The cart after the change.
    pub cart: Option<Cart>,
    /// Rules the input broke; empty when the change was made.
    pub user_errors: Vec<UserError>,
}

/// Cart reads (customers).
#[derive(Default)]
pub struct CartQuery;

#[Object]
impl CartQuery {
    /// The caller's cart (made empty on first use).
    async fn cart(&self, ctx: &Context<'_>) -> async_graphql::Result<Cart> {
        let customer = ctx.require(&[Role::Customer])?;
        self.cart_of(ctx, customer.account_id).await
    }
}

impl CartQuery {
    /// The cart of `customer`.
    ///
    /// # Errors
    /// When PostgreSQL fails.
    pub async fn cart_of(
        &self,
        ctx: &Context<'_>,
        customer: uuid::Uuid,
    ) -> async_graphql::Result<Cart> {
        let cart = ctx
            .services()
            .shop
            .carts
            .cart_of(customer)
            .await
            .map_err(ApiError::from)?;
        Ok(Cart { cart })
    }
}

/// Cart changes (customers).
#[derive(Default)]
pub struct CartMutation;

#[Object]
impl CartMutation {
    /// Adds units to lines (making lines as needed). Every SKU must be on sale.
    async fn cart_lines_add(
        &self,
        ctx: &Context<'_>,
        input: CartLinesInput,
    ) -> async_graphql::Result<CartPayload> {
        let lines = checked_lines(&input.lines)?;
        if let Some(error) = unsellable(ctx, &lines).await? {
            return Ok(CartPayload {
                cart: None,
                user_errors: vec![error],
            });
        }
        change(ctx, CartChange::Add(&lines)).await
    }

    /// Sets lines' units; 0 removes a line.
    async fn cart_lines_update(
        &self,
        ctx: &Context<'_>,
        input: CartLinesInput,
    ) -> async_graphql::Result<CartPayload> {
        let mut lines = Vec::with_capacity(input.lines.len());
        for (index, line) in input.lines.iter().enumerate() {
            let quantity = u32::try_from(line.quantity).map_err(|_| {
                ApiError::bad_input(format!(
                    "lines.{index}.quantity must not be negative, not {}",
                    line.quantity
                ))
            })?;
            lines.push((line.sku.trim().to_owned(), quantity));
        }
        let positive: Vec<(String, u32)> = lines.iter().filter(|(_, q)| *q > 0).cloned().collect();
        if let Some(error) = unsellable(ctx, &positive).await? {
            return Ok(CartPayload {
                cart: None,
                user_errors: vec![error],
            });
        }
        change(ctx, CartChange::Set(&lines)).await
    }

    /// Removes lines.
    async fn cart_lines_remove(
        &self,
        ctx: &Context<'_>,
        input: CartLinesRemoveInput,
    ) -> async_graphql::Result<CartPayload> {
        change(ctx, CartChange::Remove(&input.skus)).await
    }
}

async fn change(ctx: &Context<'_>, change: CartChange<'_>) -> async_graphql::Result<CartPayload> {
    let customer = ctx.require(&[Role::Customer])?;
    match ctx
        .services()
        .shop
        .carts
        .change(customer.account_id, change)
        .await
    {
        Ok(cart) => Ok(CartPayload {
            cart: Some(Cart { cart }),
            user_errors: Vec::new(),
        }),
        Err(error @ (CartError::TooManyLines | CartError::QuantityTooLarge)) => Ok(CartPayload {
            cart: None,
            user_errors: vec![UserError::on(&["lines"], error.code(), error.to_string())],
        }),
        Err(CartError::Database(error)) => Err(ApiError::from(error).into()),
    }
}

/// The first line whose SKU is not on sale (unknown, retired, unpublished), as a user
/// error, from the catalog read model.
async fn unsellable(
    ctx: &Context<'_>,
    lines: &[(String, u32)],
) -> async_graphql::Result<Option<UserError>> {
    ctx.require(&[Role::Customer])?;
    let skus: Vec<String> = lines.iter().map(|(sku, _)| sku.clone()).collect();
    let db = ctx.read(ReadModel::Catalog).await?;
    let variants = projections::catalog::variants_by_sku(db, &skus)
        .await
        .map_err(ApiError::from)?;
    for (index, (sku, _)) in lines.iter().enumerate() {
        let on_sale = variants
            .get(sku)
            .is_some_and(|(_, variant)| !variant.retired);
        if !on_sale {
            let index = index.to_string();
            return Ok(Some(UserError::on(
                &["lines", &index, "sku"],
                application::Refusal::UnknownSku.code(),
                format!("no product sells SKU {}", truncated(sku)),
            )));
        }
    }
    Ok(None)
}
