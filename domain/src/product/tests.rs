use cqrs_es::test::TestFramework;
use cqrs_es::{Aggregate, DomainEvent};
use uuid::Uuid;

use super::*;

type ProductTest = TestFramework<Product>;

fn product_id() -> ProductId {
    ProductId(Uuid::from_u128(1))
}

fn sku(text: &str) -> Sku {
    Sku::parse(text).unwrap()
}

fn eur(cents: i64) -> Money {
    Money::new(cents, Currency::EUR)
}

fn new_variant(code: &str, cents: i64) -> NewVariant {
    NewVariant {
        sku: sku(code),
        name: format!("{code} variant"),
        price: eur(cents),
    }
}

fn details(code: &str, cents: i64) -> VariantDetails {
    VariantDetails {
        sku: sku(code),
        name: format!("{code} variant"),
        price: eur(cents),
    }
}

fn create(variants: Vec<NewVariant>) -> ProductCommand {
    ProductCommand::CreateProduct {
        product_id: product_id(),
        name: "T-shirt".into(),
        description: "Organic cotton".into(),
        category: "apparel".into(),
        variants,
    }
}

/// A T-shirt in two sizes, `TS-M` at 19.99 EUR and `TS-L` at 21.99 EUR.
fn created() -> ProductEvent {
    ProductEvent::ProductCreated {
        product_id: product_id(),
        name: "T-shirt".into(),
        description: "Organic cotton".into(),
        category: "apparel".into(),
        currency: Currency::EUR,
        variants: vec![details("TS-M", 1999), details("TS-L", 2199)],
    }
}

fn retired(code: &str) -> ProductEvent {
    ProductEvent::VariantRetired {
        product_id: product_id(),
        sku: sku(code),
    }
}

fn published() -> ProductEvent {
    ProductEvent::ProductPublished {
        product_id: product_id(),
    }
}

fn state(events: Vec<ProductEvent>) -> Product {
    let mut product = Product::default();
    for event in events {
        product.apply(event);
    }
    product
}

#[test]
fn creating_a_product_records_its_variants_and_currency() {
    ProductTest::with(())
        .given_no_previous_events()
        .when(create(vec![
            new_variant("TS-M", 1999),
            new_variant("TS-L", 2199),
        ]))
        .then_expect_events(vec![created()]);
}

#[test]
fn creating_a_product_trims_its_texts() {
    let command = ProductCommand::CreateProduct {
        product_id: product_id(),
        name: "  T-shirt ".into(),
        description: " Organic cotton\n".into(),
        category: " apparel".into(),
        variants: vec![new_variant("TS-M", 1999), new_variant("TS-L", 2199)],
    };
    ProductTest::with(())
        .given_no_previous_events()
        .when(command)
        .then_expect_events(vec![created()]);
}

#[test]
fn creating_a_product_twice_is_rejected() {
    ProductTest::with(())
        .given(vec![created()])
        .when(create(vec![new_variant("TS-S", 1999)]))
        .then_expect_error(ProductError::AlreadyExists);
}

#[test]
fn creating_a_product_without_variants_is_rejected() {
    ProductTest::with(())
        .given_no_previous_events()
        .when(create(vec![]))
        .then_expect_error(ProductError::NoVariants);
}

#[test]
fn creating_a_product_with_a_blank_name_is_rejected() {
    let command = ProductCommand::CreateProduct {
        product_id: product_id(),
        name: "  ".into(),
        description: String::new(),
        category: "apparel".into(),
        variants: vec![new_variant("TS-M", 1999)],
    };
    ProductTest::with(())
        .given_no_previous_events()
        .when(command)
        .then_expect_error(ProductError::EmptyName);
}

#[test]
fn creating_a_product_with_a_blank_category_is_rejected() {
    let command = ProductCommand::CreateProduct {
        product_id: product_id(),
        name: "T-shirt".into(),
        description: String::new(),
        category: String::new(),
        variants: vec![new_variant("TS-M", 1999)],
    };
    ProductTest::with(())
        .given_no_previous_events()
        .when(command)
        .then_expect_error(ProductError::EmptyCategory);
}

#[test]
fn creating_a_product_with_mixed_currencies_is_rejected() {
    let mut in_dollars = new_variant("TS-L", 2199);
    in_dollars.price = Money::new(2199, Currency::USD);
    ProductTest::with(())
        .given_no_previous_events()
        .when(create(vec![new_variant("TS-M", 1999), in_dollars]))
        .then_expect_error(ProductError::CurrencyMismatch {
            expected: Currency::EUR,
            found: Currency::USD,
        });
}

#[test]
fn creating_a_product_with_a_repeated_sku_is_rejected() {
    ProductTest::with(())
        .given_no_previous_events()
        .when(create(vec![
            new_variant("TS-M", 1999),
            new_variant("TS-M", 2199),
        ]))
        .then_expect_error(ProductError::DuplicateSku { sku: sku("TS-M") });
}

#[test]
fn creating_a_product_with_a_free_variant_is_rejected() {
    ProductTest::with(())
        .given_no_previous_events()
        .when(create(vec![new_variant("TS-M", 0)]))
        .then_expect_error(ProductError::NonPositivePrice { sku: sku("TS-M") });
}

#[test]
fn creating_a_product_with_an_unnamed_variant_is_rejected() {
    let mut unnamed = new_variant("TS-M", 1999);
    unnamed.name = " ".into();
    ProductTest::with(())
        .given_no_previous_events()
        .when(create(vec![unnamed]))
        .then_expect_error(ProductError::EmptyVariantName { sku: sku("TS-M") });
}

#[test]
fn changing_a_product_that_does_not_exist_is_rejected() {
    ProductTest::with(())
        .given_no_previous_events()
        .when(ProductCommand::RenameProduct { name: "Mug".into() })
        .then_expect_error(ProductError::NotFound);
}

#[test]
fn publishing_a_product_that_does_not_exist_is_rejected() {
    ProductTest::with(())
        .given_no_previous_events()
        .when(ProductCommand::PublishProduct)
        .then_expect_error(ProductError::NotFound);
}

#[test]
fn renaming_a_product_records_the_new_name() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::RenameProduct { name: "Tee".into() })
        .then_expect_events(vec![ProductEvent::ProductRenamed {
            product_id: product_id(),
            name: "Tee".into(),
        }]);
}

#[test]
fn renaming_a_product_to_a_blank_name_is_rejected() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::RenameProduct { name: "".into() })
        .then_expect_error(ProductError::EmptyName);
}

#[test]
fn renaming_a_product_to_its_current_name_records_nothing() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::RenameProduct {
            name: "T-shirt".into(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn describing_a_product_records_the_new_description() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::DescribeProduct {
            description: "Recycled cotton".into(),
        })
        .then_expect_events(vec![ProductEvent::ProductDescriptionChanged {
            product_id: product_id(),
            description: "Recycled cotton".into(),
        }]);
}

#[test]
fn describing_a_product_with_its_current_description_records_nothing() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::DescribeProduct {
            description: "Organic cotton".into(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn changing_the_category_records_it() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::ChangeCategory {
            category: "sale".into(),
        })
        .then_expect_events(vec![ProductEvent::ProductCategoryChanged {
            product_id: product_id(),
            category: "sale".into(),
        }]);
}

#[test]
fn changing_to_a_blank_category_is_rejected() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::ChangeCategory {
            category: "\t".into(),
        })
        .then_expect_error(ProductError::EmptyCategory);
}

#[test]
fn changing_a_variant_price_records_it() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::ChangeVariantPrice {
            sku: sku("TS-M"),
            price: eur(1499),
        })
        .then_expect_events(vec![ProductEvent::VariantPriceChanged {
            product_id: product_id(),
            sku: sku("TS-M"),
            price: eur(1499),
        }]);
}

#[test]
fn changing_a_variant_price_to_the_same_price_records_nothing() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::ChangeVariantPrice {
            sku: sku("TS-M"),
            price: eur(1999),
        })
        .then_expect_events(vec![]);
}

#[test]
fn changing_a_variant_price_to_another_currency_is_rejected() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::ChangeVariantPrice {
            sku: sku("TS-M"),
            price: Money::new(1999, Currency::USD),
        })
        .then_expect_error(ProductError::CurrencyMismatch {
            expected: Currency::EUR,
            found: Currency::USD,
        });
}

#[test]
fn changing_a_variant_price_to_a_negative_amount_is_rejected() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::ChangeVariantPrice {
            sku: sku("TS-M"),
            price: eur(-1),
        })
        .then_expect_error(ProductError::NonPositivePrice { sku: sku("TS-M") });
}

#[test]
fn changing_the_price_of_an_unknown_variant_is_rejected() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::ChangeVariantPrice {
            sku: sku("TS-XL"),
            price: eur(2499),
        })
        .then_expect_error(ProductError::UnknownVariant { sku: sku("TS-XL") });
}

#[test]
fn changing_the_price_of_a_retired_variant_is_rejected() {
    ProductTest::with(())
        .given(vec![created(), retired("TS-L")])
        .when(ProductCommand::ChangeVariantPrice {
            sku: sku("TS-L"),
            price: eur(999),
        })
        .then_expect_error(ProductError::VariantRetired { sku: sku("TS-L") });
}

#[test]
fn adding_a_variant_records_it() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::AddVariant {
            variant: new_variant("TS-XL", 2399),
        })
        .then_expect_events(vec![ProductEvent::VariantAdded {
            product_id: product_id(),
            variant: details("TS-XL", 2399),
        }]);
}

#[test]
fn adding_a_variant_with_a_retired_sku_is_rejected() {
    ProductTest::with(())
        .given(vec![created(), retired("TS-L")])
        .when(ProductCommand::AddVariant {
            variant: new_variant("TS-L", 2399),
        })
        .then_expect_error(ProductError::DuplicateSku { sku: sku("TS-L") });
}

#[test]
fn adding_a_variant_in_another_currency_is_rejected() {
    let mut in_dollars = new_variant("TS-XL", 2399);
    in_dollars.price = Money::new(2399, Currency::USD);
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::AddVariant {
            variant: in_dollars,
        })
        .then_expect_error(ProductError::CurrencyMismatch {
            expected: Currency::EUR,
            found: Currency::USD,
        });
}

#[test]
fn adding_a_free_variant_is_rejected() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::AddVariant {
            variant: new_variant("TS-XL", 0),
        })
        .then_expect_error(ProductError::NonPositivePrice { sku: sku("TS-XL") });
}

#[test]
fn retiring_a_variant_records_it() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::RetireVariant { sku: sku("TS-L") })
        .then_expect_events(vec![retired("TS-L")]);
}

#[test]
fn retiring_the_last_active_variant_is_rejected() {
    ProductTest::with(())
        .given(vec![created(), retired("TS-L")])
        .when(ProductCommand::RetireVariant { sku: sku("TS-M") })
        .then_expect_error(ProductError::LastActiveVariant { sku: sku("TS-M") });
}

#[test]
fn retiring_a_retired_variant_records_nothing() {
    ProductTest::with(())
        .given(vec![created(), retired("TS-L")])
        .when(ProductCommand::RetireVariant { sku: sku("TS-L") })
        .then_expect_events(vec![]);
}

#[test]
fn retiring_an_unknown_variant_is_rejected() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::RetireVariant { sku: sku("TS-XS") })
        .then_expect_error(ProductError::UnknownVariant { sku: sku("TS-XS") });
}

#[test]
fn publishing_a_product_records_it() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::PublishProduct)
        .then_expect_events(vec![published()]);
}

#[test]
fn publishing_a_published_product_records_nothing() {
    ProductTest::with(())
        .given(vec![created(), published()])
        .when(ProductCommand::PublishProduct)
        .then_expect_events(vec![]);
}

#[test]
fn publishing_a_product_without_active_variants_is_rejected() {
    // Such a history predates the last-active-variant rule; it cannot be made today.
    ProductTest::with(())
        .given(vec![created(), retired("TS-M"), retired("TS-L")])
        .when(ProductCommand::PublishProduct)
        .then_expect_error(ProductError::NoActiveVariant);
}

#[test]
fn unpublishing_a_published_product_records_it() {
    ProductTest::with(())
        .given(vec![created(), published()])
        .when(ProductCommand::UnpublishProduct)
        .then_expect_events(vec![ProductEvent::ProductUnpublished {
            product_id: product_id(),
        }]);
}

#[test]
fn unpublishing_an_unpublished_product_records_nothing() {
    ProductTest::with(())
        .given(vec![created()])
        .when(ProductCommand::UnpublishProduct)
        .then_expect_events(vec![]);
}

#[test]
fn skus_lists_every_variant_including_retired_ones() {
    let product = state(vec![
        created(),
        ProductEvent::VariantAdded {
            product_id: product_id(),
            variant: details("TS-XL", 2399),
        },
        retired("TS-L"),
    ]);
    assert_eq!(
        product.skus(),
        vec![&sku("TS-M"), &sku("TS-L"), &sku("TS-XL")]
    );
    assert!(product.variants()[1].retired);
}

#[test]
fn applying_events_tracks_prices_and_publication() {
    let product = state(vec![
        created(),
        ProductEvent::VariantPriceChanged {
            product_id: product_id(),
            sku: sku("TS-M"),
            price: eur(1499),
        },
        published(),
    ]);
    assert_eq!(product.variants()[0].price, eur(1499));
    assert!(product.is_published());
    assert_eq!(product.currency(), Some(Currency::EUR));
}

#[test]
fn new_skus_names_the_skus_a_command_would_claim() {
    let command = create(vec![new_variant("TS-M", 1999), new_variant("TS-L", 2199)]);
    assert_eq!(command.new_skus(), vec![&sku("TS-M"), &sku("TS-L")]);
    assert!(ProductCommand::PublishProduct.new_skus().is_empty());
}

#[test]
fn product_events_are_externally_tagged() {
    let json = serde_json::to_value(published()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"ProductPublished": {"product_id": product_id()}})
    );
    assert_eq!(published().event_type(), "ProductPublished");
}
