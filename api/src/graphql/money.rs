//! Money as clients see it: `{ amount: "12.50", currencyCode: "EUR" }`, a decimal string
//! in the currency's own precision, never a float.

use async_graphql::{InputObject, SimpleObject};
use std::str::FromStr;

use domain::{Currency, Money};

use super::error::ApiError;

/// An amount of money.
#[derive(Debug, Clone, PartialEq, Eq, SimpleObject)]
#[graphql(name = "Money")]
pub struct MoneyV2 {
    /// The amount as a decimal string in the currency's precision (`"12.50"`, `"1200"` for JPY).
    pub amount: String,
    /// ISO 4217 code.
    pub currency_code: String,
}

/// An amount of money sent by a client.
#[derive(Debug, Clone, InputObject, serde::Serialize)]
pub struct MoneyInput {
    /// A decimal string with at most the currency's decimals (`"12.5"`, `"12.50"`).
    pub amount: String,
    /// ISO 4217 code.
    pub currency_code: String,
}

/// How many decimals a currency's minor unit has (ISO 4217).
fn decimals(currency: Currency) -> u32 {
    match currency.code() {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

impl From<Money> for MoneyV2 {
    fn from(money: Money) -> Self {
        let places = decimals(money.currency);
        let minor = money.amount_minor;
        let amount = if places == 0 {
            minor.to_string()
        } else {
            let scale = 10_i64.pow(places);
            let sign = if minor < 0 { "-" } else { "" };
            let whole = (minor / scale).unsigned_abs();
            let fraction = (minor % scale).unsigned_abs();
            format!("{sign}{whole}.{fraction:0width$}", width = places as usize)
        };
        MoneyV2 {
            amount,
            currency_code: money.currency.code().to_owned(),
        }
    }
}

impl MoneyInput {
    /// The amount in minor units, checked: a known currency shape, at most its decimals,
    /// no exponent, no overflow.
    ///
    /// # Errors
    /// [`ApiError::BadUserInput`] naming `field`.
    pub fn to_money(&self, field: &str) -> Result<Money, ApiError> {
        let bad = |why: &str| ApiError::bad_input(format!("{field}: {why}"));
        let currency = Currency::from_str(self.currency_code.trim())
            .map_err(|_| bad("currencyCode must be an ISO 4217 code such as EUR"))?;
        let places = decimals(currency);
        let text = self.amount.trim();
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let well_formed = !whole.is_empty()
            && whole.len() <= 15
            && whole.bytes().all(|b| b.is_ascii_digit())
            && fraction.bytes().all(|b| b.is_ascii_digit())
            && (fraction.len() as u32) <= places
            && !(digits.contains('.') && fraction.is_empty());
        if !well_formed {
            return Err(bad(&format!(
                "amount must be a decimal with at most {places} decimals, such as \"12.50\""
            )));
        }
        let scale = 10_i64.pow(places);
        let padded = format!("{fraction:0<width$}", width = places as usize);
        let minor = whole
            .parse::<i64>()
            .ok()
            .and_then(|whole| whole.checked_mul(scale))
            .and_then(|whole| {
                let fraction = if padded.is_empty() {
                    0
                } else {
                    padded.parse::<i64>().ok()?
                };
                whole.checked_add(fraction)
            })
            .ok_or_else(|| bad("amount is too large"))?;
        Ok(Money::new(if negative { -minor } else { minor }, currency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(amount: &str, currency: &str) -> MoneyInput {
        MoneyInput {
            amount: amount.into(),
            currency_code: currency.into(),
        }
    }

    #[test]
    fn amounts_print_in_the_currency_precision() {
        let eur = Currency::from_str("EUR").unwrap();
        let jpy = Currency::from_str("JPY").unwrap();
        assert_eq!(MoneyV2::from(Money::new(1250, eur)).amount, "12.50");
        assert_eq!(MoneyV2::from(Money::new(5, eur)).amount, "0.05");
        assert_eq!(MoneyV2::from(Money::new(-5, eur)).amount, "-0.05");
        assert_eq!(MoneyV2::from(Money::new(1200, jpy)).amount, "1200");
    }

    #[test]
    fn decimal_strings_parse_to_minor_units() {
        assert_eq!(
            input("12.5", "EUR").to_money("x").unwrap().amount_minor,
            1250
        );
        assert_eq!(input("12", "EUR").to_money("x").unwrap().amount_minor, 1200);
        assert_eq!(
            input(" 0.05 ", "EUR").to_money("x").unwrap().amount_minor,
            5
        );
        assert_eq!(
            input("1200", "JPY").to_money("x").unwrap().amount_minor,
            1200
        );
        assert_eq!(
            input("-1.00", "EUR").to_money("x").unwrap().amount_minor,
            -100
        );
    }

    #[test]
    fn malformed_amounts_are_bad_input() {
        for (amount, currency) in [
            ("12.505", "EUR"),
            ("1e3", "EUR"),
            ("12.", "EUR"),
            ("", "EUR"),
            ("abc", "EUR"),
            ("12.5", "JPY"),
            ("999999999999999999999", "EUR"),
            ("10", "euro"),
        ] {
            let error = input(amount, currency).to_money("price").unwrap_err();
            assert_eq!(error.code(), "BAD_USER_INPUT", "{amount} {currency}");
        }
    }
}
