use domain::product::{NewVariant, Product, ProductCommand, ProductError};
use domain::{Currency, Money, ProductId, Sku};
use infra_nats::{
    CommandError, EventStoreConfig, ProductCommandError, ProductCommands, SkuRegistry, SkuTaken,
};
use testkit::NatsServer;

use crate::{bus, metadata, provisioned};

fn create(product_id: ProductId, name: &str, skus: &[&str]) -> ProductCommand {
    ProductCommand::CreateProduct {
        product_id,
        name: name.to_owned(),
        description: String::new(),
        category: "mugs".to_owned(),
        variants: skus
            .iter()
            .map(|sku| NewVariant {
                sku: Sku::parse(*sku).unwrap(),
                name: (*sku).to_owned(),
                price: Money::new(1_250, Currency::EUR),
            })
            .collect(),
    }
}

async fn catalog(client: &async_nats::Client) -> ProductCommands {
    let js = async_nats::jetstream::new(client.clone());
    ProductCommands::new(
        bus::<Product>(client, EventStoreConfig::default()).await,
        SkuRegistry::open(&js).await.unwrap(),
    )
}

#[tokio::test]
async fn a_sku_sold_by_one_product_cannot_be_created_by_another() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let catalog = catalog(&client).await;
    let (first, second) = (
        ProductId::from_uuid(uuid::Uuid::now_v7()),
        ProductId::from_uuid(uuid::Uuid::now_v7()),
    );
    catalog
        .execute(first, create(first, "Mug", &["MUG-1"]), &metadata())
        .await
        .unwrap();

    let clash = catalog
        .execute(
            second,
            create(second, "Other mug", &["MUG-2", "MUG-1"]),
            &metadata(),
        )
        .await;
    assert!(
        matches!(clash, Err(ProductCommandError::SkuTaken(SkuTaken { ref sku, ref owner })) if sku == "MUG-1" && *owner == first.to_string()),
        "{clash:?}"
    );
    assert!(catalog
        .bus()
        .store()
        .history(&second.to_string())
        .await
        .unwrap()
        .is_empty());
    let registry = SkuRegistry::open(&async_nats::jetstream::new(client))
        .await
        .unwrap();
    assert_eq!(
        registry.owner("MUG-2").await.unwrap(),
        None,
        "the clash released MUG-2"
    );
}

#[tokio::test]
async fn a_rejected_product_command_gives_its_skus_back() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let catalog = catalog(&client).await;
    let product = ProductId::from_uuid(uuid::Uuid::now_v7());
    let rejected = catalog
        .execute(product, create(product, "  ", &["CUP-1"]), &metadata())
        .await;
    assert!(
        matches!(
            rejected,
            Err(ProductCommandError::Command(CommandError::Rejected(
                ProductError::EmptyName
            )))
        ),
        "{rejected:?}"
    );
    let other = ProductId::from_uuid(uuid::Uuid::now_v7());
    catalog
        .execute(other, create(other, "Cup", &["CUP-1"]), &metadata())
        .await
        .unwrap();
}

#[tokio::test]
async fn retrying_a_product_creation_is_idempotent() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let catalog = catalog(&client).await;
    let product = ProductId::from_uuid(uuid::Uuid::now_v7());
    let meta = metadata();
    let first = catalog
        .execute(product, create(product, "Mug", &["MUG-9"]), &meta)
        .await
        .unwrap();
    let retry = catalog
        .execute(product, create(product, "Mug", &["MUG-9"]), &meta)
        .await
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.position, first.position);
}
