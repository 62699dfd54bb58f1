//! Sales analytics for admins, from the `sales` read model.

use async_graphql::{Context, Enum, Object, SimpleObject};
use chrono::NaiveDate;
use projections::sales;

use super::context::ContextExt;
use super::error::ApiError;
use super::money::MoneyV2;
use super::orders::OrderStatusCode;
use crate::auth::Role;
use crate::consistency::ReadModel;

/// The longest span a report covers.
const MAX_REPORT_DAYS: i64 = 366 * 5;

/// How a sales report is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum SalesGroupBy {
    /// One row per day.
    Day,
    /// One row per SKU.
    Product,
}

/// One row of a sales report: a day or a SKU.
#[derive(Clone, SimpleObject)]
pub struct SalesReportRow {
    /// The day (`2026-11-24`) or the SKU.
    pub key: String,
    /// Orders placed (per day), or orders with this SKU (per SKU).
    pub orders: i64,
    /// Orders confirmed (per day only).
    pub orders_confirmed: Option<i64>,
    /// Orders cancelled (per day only).
    pub orders_cancelled: Option<i64>,
    /// Units sold.
    pub units_sold: i64,
    /// Revenue before refunds.
    pub gross_revenue: MoneyV2,
    /// Refunded (per day only).
    pub refunded: Option<MoneyV2>,
    /// Revenue after refunds (per day only).
    pub net_revenue: Option<MoneyV2>,
}

/// A best-selling SKU.
#[derive(Clone, SimpleObject)]
pub struct TopSeller {
    /// The SKU.
    pub sku: String,
    /// Units sold.
    pub units_sold: i64,
    /// Revenue.
    pub revenue: MoneyV2,
    /// Orders it was on.
    pub orders: i64,
}

/// Cancelled orders among placed ones.
#[derive(Clone, SimpleObject)]
pub struct CancellationRate {
    /// Orders placed in the span.
    pub placed: i64,
    /// Of those, cancelled.
    pub cancelled: i64,
    /// `cancelled / placed`; null when nothing was placed.
    pub rate: Option<f64>,
}

/// Orders per status now.
#[derive(Clone, SimpleObject)]
pub struct OrderStatusCount {
    /// The status.
    pub status: OrderStatusCode,
    /// Orders in it.
    pub orders: i64,
}

/// Sales reads (admins).
#[derive(Default)]
pub struct AnalyticsQuery;

fn span(from: NaiveDate, to: NaiveDate) -> Result<(), ApiError> {
    if to < from {
        return Err(ApiError::bad_input("`to` is before `from`"));
    }
    if (to - from).num_days() > MAX_REPORT_DAYS {
        return Err(ApiError::bad_input(format!(
            "a report spans at most {MAX_REPORT_DAYS} days"
        )));
    }
    Ok(())
}

#[Object]
impl AnalyticsQuery {
    /// Sales from `from` to `to` (both included, UTC days), per day or per SKU.
    async fn sales_report(
        &self,
        ctx: &Context<'_>,
        from: NaiveDate,
        to: NaiveDate,
        group_by: SalesGroupBy,
    ) -> async_graphql::Result<Vec<SalesReportRow>> {
        ctx.require(&[Role::Admin])?;
        span(from, to)?;
        let db = ctx.read(ReadModel::Sales).await?;
        Ok(match group_by {
            SalesGroupBy::Day => sales::daily_sales(db, from, to)
                .await
                .map_err(ApiError::from)?
                .into_iter()
                .map(|day| SalesReportRow {
                    key: day.day.to_string(),
                    orders: day.orders_placed,
                    orders_confirmed: Some(day.orders_confirmed),
                    orders_cancelled: Some(day.orders_cancelled),
                    units_sold: day.units_sold,
                    gross_revenue: day.gross_revenue.into(),
                    refunded: Some(day.refunded.into()),
                    net_revenue: Some(day.net_revenue.into()),
                })
                .collect(),
            SalesGroupBy::Product => sales::top_sellers(db, from, to, 10_000)
                .await
                .map_err(ApiError::from)?
                .into_iter()
                .map(|seller| SalesReportRow {
                    key: seller.sku,
                    orders: seller.orders,
                    orders_confirmed: None,
                    orders_cancelled: None,
                    units_sold: seller.units_sold,
                    gross_revenue: seller.revenue.into(),
                    refunded: None,
                    net_revenue: None,
                })
                .collect(),
        })
    }

    /// The SKUs that sold most units from `from` to `to`.
    async fn top_sellers(
        &self,
        ctx: &Context<'_>,
        from: NaiveDate,
        to: NaiveDate,
        #[graphql(default = 10, validator(minimum = 1, maximum = 100))] limit: u32,
    ) -> async_graphql::Result<Vec<TopSeller>> {
        ctx.require(&[Role::Admin])?;
        span(from, to)?;
        let db = ctx.read(ReadModel::Sales).await?;
        Ok(sales::top_sellers(db, from, to, limit)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(|seller| TopSeller {
                sku: seller.sku,
                units_sold: seller.units_sold,
                revenue: seller.revenue.into(),
                orders: seller.orders,
            })
            .collect())
    }

    /// How many orders placed from `from` to `to` were cancelled.
    async fn cancellation_rate(
        &self,
        ctx: &Context<'_>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> async_graphql::Result<CancellationRate> {
        ctx.require(&[Role::Admin])?;
        span(from, to)?;
        let db = ctx.read(ReadModel::Sales).await?;
        let rate = sales::cancellation_rate(db, from, to)
            .await
            .map_err(ApiError::from)?;
        Ok(CancellationRate {
            placed: rate.placed,
            cancelled: rate.cancelled,
            rate: rate.rate,
        })
    }

    /// How many orders are in each status now.
    async fn order_status_counts(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<OrderStatusCount>> {
        ctx.require(&[Role::Admin])?;
        let db = ctx.read(ReadModel::Sales).await?;
        Ok(sales::status_counts(db)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(|count| OrderStatusCount {
                status: count.status.into(),
                orders: count.orders,
            })
            .collect())
    }
}
