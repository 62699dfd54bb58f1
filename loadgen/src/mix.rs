//! What the load is made of: the operations, their weights, and a seeded generator so
//! that the same seed gives the same sequence of choices.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// One kind of request a shopper or the shop's admin makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// A page of `products`, by category or stock, in some order.
    Browse,
    /// `products` with a search.
    Search,
    /// One `product` with its variants.
    Detail,
    /// `cartLinesAdd`.
    CartAdd,
    /// `cartLinesUpdate` of a line the cart holds.
    CartUpdate,
    /// `orderPlace`, from the cart or from lines.
    Checkout,
    /// `order(id)` of one of the customer's orders.
    OrderStatus,
    /// `orderCancel` of one of the customer's orders.
    Cancel,
    /// `inventoryReceive` by the admin.
    Restock,
}

impl Operation {
    /// Every operation, in report order.
    pub const ALL: [Operation; 9] = [
        Operation::Browse,
        Operation::Search,
        Operation::Detail,
        Operation::CartAdd,
        Operation::CartUpdate,
        Operation::Checkout,
        Operation::OrderStatus,
        Operation::Cancel,
        Operation::Restock,
    ];

    /// The name used in `--mix` and the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Browse => "browse",
            Operation::Search => "search",
            Operation::Detail => "detail",
            Operation::CartAdd => "cart_add",
            Operation::CartUpdate => "cart_update",
            Operation::Checkout => "checkout",
            Operation::OrderStatus => "order_status",
            Operation::Cancel => "cancel",
            Operation::Restock => "restock",
        }
    }

    /// The weights without `--mix`: mostly browsing, one request in eight a checkout.
    fn default_weight(self) -> u32 {
        match self {
            Operation::Browse => 30,
            Operation::Search => 14,
            Operation::Detail => 20,
            Operation::CartAdd => 10,
            Operation::CartUpdate => 4,
            Operation::Checkout => 12,
            Operation::OrderStatus => 7,
            Operation::Cancel => 2,
            Operation::Restock => 1,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Weights of the operations; an operation is drawn with probability weight / total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(Operation, u32)>,
    total: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Self::from_weights(
            Operation::ALL
                .iter()
                .map(|op| (*op, op.default_weight()))
                .collect(),
        )
    }
}

impl Mix {
    fn from_weights(weights: Vec<(Operation, u32)>) -> Self {
        let total = weights.iter().map(|(_, w)| w).sum();
        Self { weights, total }
    }

    /// The operation a uniform draw `roll` picks.
    pub fn pick(&self, roll: u64) -> Operation {
        let mut point = u32::try_from(roll % u64::from(self.total)).unwrap_or(0);
        for (op, weight) in &self.weights {
            if point < *weight {
                return *op;
            }
            point -= weight;
        }
        // The weights sum to `total`, so the loop always returns; `Browse` keeps the
        // compiler content.
        Operation::Browse
    }

    /// Each operation's share of the load, in report order.
    pub fn shares(&self) -> Vec<(Operation, f64)> {
        self.weights
            .iter()
            .filter(|(_, w)| *w > 0)
            .map(|(op, w)| (*op, f64::from(*w) / f64::from(self.total)))
            .collect()
    }
}

impl FromStr for Mix {
    type Err = String;

    /// `browse=30,checkout=10,...`: operations left out get no share.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut weights: Vec<(Operation, u32)> = Operation::ALL.iter().map(|op| (*op, 0)).collect();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected name=weight, as checkout=10"))?;
            let slot = weights
                .iter_mut()
                .find(|(op, _)| op.as_str() == name.trim())
                .ok_or_else(|| {
                    let known: Vec<&str> = Operation::ALL.iter().map(|op| op.as_str()).collect();
                    format!("`{name}` is no operation (known: {})", known.join(", "))
                })?;
            slot.1 = weight
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: the weight must be a whole number"))?;
        }
        let mix = Self::from_weights(weights);
        if mix.total == 0 {
            return Err("the mix needs at least one operation with a weight above 0".to_owned());
        }
        Ok(mix)
    }
}

/// SplitMix64: small, fast and good enough to pick requests; not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The generator of request `n` of a run with `seed`: every request draws from its
    /// own stream, so the choices do not depend on which task runs first.
    pub fn for_request(seed: u64, n: u64) -> Self {
        let mut rng = Self(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rng.next_u64();
        rng
    }

    /// A generator from `seed` alone.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        // The modulo bias is negligible for the small `n` used here.
        usize::try_from(self.next_u64() % n.max(1) as u64).unwrap_or(0)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u32, high: u32) -> u32 {
        low + u32::try_from(self.next_u64() % u64::from(high - low + 1)).unwrap_or(0)
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        // 53 random bits as a fraction in [0, 1).
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// One of `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_names_weights_and_leaves_out_the_rest() {
        let mix: Mix = "checkout=3, browse=1".parse().unwrap();
        let shares = mix.shares();
        assert_eq!(
            shares,
            vec![(Operation::Browse, 0.25), (Operation::Checkout, 0.75)]
        );
    }

    #[test]
    fn an_unknown_operation_is_refused_naming_the_known_ones() {
        let error = "shopping=3".parse::<Mix>().unwrap_err();
        assert!(
            error.contains("shopping") && error.contains("checkout"),
            "{error}"
        );
    }

    #[test]
    fn a_mix_of_zero_weights_is_refused() {
        assert!("checkout=0".parse::<Mix>().is_err());
    }

    #[test]
    fn the_same_seed_picks_the_same_operations() {
        let mix = Mix::default();
        let picks = |seed| {
            (0..100)
                .map(|n| mix.pick(Rng::for_request(seed, n).next_u64()))
                .collect::<Vec<_>>()
        };
        assert_eq!(picks(7), picks(7));
        assert_ne!(picks(7), picks(8));
    }

    #[test]
    fn picks_follow_the_weights() {
        let mix: Mix = "browse=1,checkout=3".parse().unwrap();
        let mut rng = Rng::new(1);
        let checkouts = (0..10_000)
            .filter(|_| mix.pick(rng.next_u64()) == Operation::Checkout)
            .count();
        assert!((7_000..8_000).contains(&checkouts), "{checkouts}");
    }
}
