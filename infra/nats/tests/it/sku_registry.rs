use infra_nats::{SkuRegistry, SkuReservationError};
use testkit::NatsServer;

use crate::provisioned;

#[tokio::test]
async fn only_one_of_many_racing_products_gets_a_sku() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let js = async_nats::jetstream::new(client);
    let registry = SkuRegistry::open(&js).await.unwrap();
    let racers = (0..20).map(|product| {
        let registry = registry.clone();
        tokio::spawn(async move {
            registry
                .reserve("TSHIRT.RED-M", &format!("p{product}"))
                .await
        })
    });
    let results = futures::future::join_all(racers).await;
    let winners = results.iter().filter(|r| matches!(r, Ok(Ok(true)))).count();
    let taken = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(SkuReservationError::Taken { .. }))))
        .count();
    assert_eq!((winners, taken), (1, 19), "{results:?}");
}

#[tokio::test]
async fn reserving_again_for_the_same_product_is_a_no_op() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let registry = SkuRegistry::open(&async_nats::jetstream::new(client))
        .await
        .unwrap();
    assert!(registry.reserve("SKU-1", "p1").await.unwrap());
    assert!(!registry.reserve("SKU-1", "p1").await.unwrap());
    assert_eq!(
        registry.owner("SKU-1").await.unwrap().as_deref(),
        Some("p1")
    );
}

#[tokio::test]
async fn reserving_several_skus_is_all_or_nothing() {
    let server = NatsServer::start();
    let client = provisioned(&server).await;
    let registry = SkuRegistry::open(&async_nats::jetstream::new(client))
        .await
        .unwrap();
    registry.reserve("B", "other").await.unwrap();
    let skus = ["A".to_owned(), "B".to_owned(), "C".to_owned()];
    let error = registry.reserve_all(&skus, "p1").await.unwrap_err();
    assert!(
        matches!(error, SkuReservationError::Taken { ref sku, ref owner } if sku == "B" && owner == "other")
    );
    assert_eq!(
        registry.owner("A").await.unwrap(),
        None,
        "A was released again"
    );
    assert_eq!(registry.owner("C").await.unwrap(), None);
    // Once free, the SKU can be reserved by the next product.
    registry
        .reserve_all(&["A".to_owned(), "C".to_owned()], "p2")
        .await
        .unwrap();
    assert_eq!(registry.owner("A").await.unwrap().as_deref(), Some("p2"));
}
