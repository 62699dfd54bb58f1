//! Live updates over WebSocket (`graphql-transport-ws`): an order's status changes and a
//! SKU's stock, each pushed once the read model shows it.
//!
//! Each subscription follows its aggregate's subject in the log with an ordered
//! consumer; for every commit it waits until the read model has applied it, then reads
//! the read model and pushes what is new. Dropping the subscription drops the consumer.

use std::collections::VecDeque;
use std::sync::Arc;

use async_graphql::{Context, Object, Subscription, ID};
use domain::{OrderId, Sku};
use futures::stream::{BoxStream, Stream, StreamExt};
use infra_nats::{RecordedCommit, StoreError};
use projections::orders as orders_model;

use super::context::{ContextExt, Services};
use super::error::ApiError;
use super::ids::GlobalId;
use super::inventory::InventoryLevel;
use super::orders::{Order, OrderStatusChange};
use super::text::{check_text, Limit};
use crate::auth::Role;
use crate::consistency::ReadModel;

/// One status change of an order, with the order as it is after it.
#[derive(Clone)]
pub struct OrderStatusUpdate {
    change: OrderStatusChange,
    order: Order,
}

/// One status change of an order.
#[Object]
impl OrderStatusUpdate {
    /// The change.
    async fn change(&self) -> &OrderStatusChange {
        &self.change
    }

    /// The order after the change (as the read model shows it now).
    async fn order(&self) -> &Order {
        &self.order
    }
}

/// Live updates.
#[derive(Default)]
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Every status of one order, from `PLACED` on (past ones first), each once the
    /// read model shows it. Its owner or an admin.
    async fn order_status_changed(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<OrderStatusUpdate>>> {
        let viewer = ctx.require(&[Role::Customer, Role::Admin])?.clone();
        let order_id = OrderId::from_global(&order_id)?;
        let services = ctx.services().clone();
        // The command side's own state decides who may watch: the read model may not
        // show an order placed a moment ago.
        let owner = match services.shop.load_order(order_id).await {
            Ok(order) => order.customer_id().map(|id| id.as_uuid()),
            Err(application::AppError::NotFound(_)) => None,
            Err(error) => return Err(ApiError::from(error).into()),
        };
        if owner.is_none() || (viewer.role != Role::Admin && owner != Some(viewer.account_id)) {
            return Err(ApiError::NotFound("order").into());
        }
        let commits = follow(&services, "order", &order_id.to_string(), 1).await?;
        let state = OrderWatch {
            commits,
            services,
            order_id,
            emitted: 0,
            pending: VecDeque::new(),
        };
        Ok(futures::stream::unfold(state, OrderWatch::next).boxed())
    }

    /// The stock of one SKU after every change from now on, once the inventory read
    /// model shows it (admins).
    async fn inventory_level_changed(
        &self,
        ctx: &Context<'_>,
        sku: String,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<InventoryLevel>>> {
        ctx.require(&[Role::Admin])?;
        let sku = check_text(&sku, "sku", Limit::NAME)?;
        let sku = Sku::parse(sku).map_err(|error| ApiError::bad_input(error.to_string()))?;
        let services = ctx.services().clone();
        let from = infra_nats::stream_last_position(&services.jetstream)
            .await
            .map_err(ApiError::store)?
            + 1;
        let commits = follow(&services, "inventory", sku.as_str(), from).await?;
        Ok(commits
            .then(move |commit| {
                let services = services.clone();
                let sku = sku.clone();
                async move {
                    let commit = commit.map_err(ApiError::store)?;
                    wait_until_shown(&services, ReadModel::Inventory, commit.position).await?;
                    projections::inventory::stock_level(&services.db, sku.as_str())
                        .await
                        .map_err(ApiError::from)?
                        .map(InventoryLevel::from)
                        .ok_or(ApiError::NotFound("inventory"))
                        .map_err(async_graphql::Error::from)
                }
            })
            .boxed())
    }
}

type Commits = BoxStream<'static, Result<RecordedCommit, StoreError>>;

async fn follow(
    services: &Services,
    aggregate_type: &str,
    aggregate_id: &str,
    from: u64,
) -> Result<Commits, ApiError> {
    let subject = infra_nats::subjects::aggregate_subject(aggregate_type, aggregate_id);
    infra_nats::read_all(&services.jetstream, from, Some(subject))
        .await
        .map_err(ApiError::store)
}

/// Waits as long as it takes (in bounded rounds) until `read_model` shows `position`.
async fn wait_until_shown(
    services: &Services,
    read_model: ReadModel,
    position: u64,
) -> Result<(), ApiError> {
    loop {
        match services.positions.wait_for(read_model, position).await {
            Err(ApiError::ReadModelBehind { .. }) => continue,
            other => return other,
        }
    }
}

struct OrderWatch {
    commits: Commits,
    services: Arc<Services>,
    order_id: OrderId,
    emitted: usize,
    pending: VecDeque<OrderStatusUpdate>,
}

impl OrderWatch {
    async fn next(mut self) -> Option<(async_graphql::Result<OrderStatusUpdate>, Self)> {
        loop {
            if let Some(update) = self.pending.pop_front() {
                return Some((Ok(update), self));
            }
            let commit = match self.commits.next().await? {
                Ok(commit) => commit,
                Err(error) => return Some((Err(ApiError::store(error).into()), self)),
            };
            if let Err(error) = self.catch_up(commit.position).await {
                return Some((Err(error.into()), self));
            }
        }
    }

    /// Queues the statuses the read model shows beyond those already sent.
    async fn catch_up(&mut self, position: u64) -> Result<(), ApiError> {
        wait_until_shown(&self.services, ReadModel::Orders, position).await?;
        let Some(detail) = orders_model::order(&self.services.db, self.order_id).await? else {
            return Ok(());
        };
        let fresh: Vec<OrderStatusChange> = detail
            .timeline
            .iter()
            .skip(self.emitted)
            .map(OrderStatusChange::from)
            .collect();
        self.emitted = detail.timeline.len().max(self.emitted);
        let order = Order::from_detail(detail);
        self.pending
            .extend(fresh.into_iter().map(|change| OrderStatusUpdate {
                change,
                order: order.clone(),
            }));
        Ok(())
    }
}
