//! Money as integer minor units plus an ISO 4217 currency code; never floating point.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An ISO 4217 currency code: three upper-case ASCII letters, such as `EUR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// The euro.
    pub const EUR: Currency = Currency(*b"EUR");
    /// The US dollar.
    pub const USD: Currency = Currency(*b"USD");

    /// The three-letter code.
    pub fn code(&self) -> &str {
        // The bytes are checked to be ASCII upper-case letters on construction.
        std::str::from_utf8(&self.0).expect("currency codes are ASCII")
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        match code.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|ch| ch.is_ascii_uppercase()) => {
                Ok(Currency([*a, *b, *c]))
            }
            _ => Err(MoneyError::InvalidCurrency(code.to_owned())),
        }
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(code: String) -> Result<Self, Self::Error> {
        code.parse()
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> Self {
        currency.code().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An amount of money in minor units (cents) of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Minor units; may be negative only as an intermediate result, never in a price.
    pub amount_minor: i64,
    /// The currency of the amount.
    pub currency: Currency,
}

/// Why a money value or operation was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The text is not three upper-case letters.
    #[error("`{0}` is not an ISO 4217 currency code (three upper-case letters)")]
    InvalidCurrency(String),
    /// The two amounts are in different currencies.
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(Currency, Currency),
    /// The result does not fit in `i64` minor units.
    #[error("amount overflow")]
    Overflow,
}

impl Money {
    /// An amount in minor units of a currency.
    pub fn new(amount_minor: i64, currency: Currency) -> Self {
        Self {
            amount_minor,
            currency,
        }
    }

    /// Nothing, in a currency.
    pub fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// Whether the amount is more than zero.
    pub fn is_positive(&self) -> bool {
        self.amount_minor > 0
    }

    /// Adds two amounts of the same currency.
    ///
    /// # Errors
    /// [`MoneyError::CurrencyMismatch`] for different currencies, [`MoneyError::Overflow`].
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    /// Subtracts an amount of the same currency.
    ///
    /// # Errors
    /// [`MoneyError::CurrencyMismatch`] for different currencies, [`MoneyError::Overflow`].
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount_minor
            .checked_sub(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    /// Multiplies by a quantity.
    ///
    /// # Errors
    /// [`MoneyError::Overflow`].
    pub fn checked_mul(self, quantity: u32) -> Result<Money, MoneyError> {
        let amount = self
            .amount_minor
            .checked_mul(i64::from(quantity))
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    fn same_currency(&self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        write!(f, "{sign}{}.{:02} {}", abs / 100, abs % 100, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes_must_be_three_upper_case_letters() {
        assert_eq!("EUR".parse::<Currency>(), Ok(Currency::EUR));
        assert!("eur".parse::<Currency>().is_err());
        assert!("EURO".parse::<Currency>().is_err());
        assert!("".parse::<Currency>().is_err());
    }

    #[test]
    fn adding_different_currencies_is_rejected() {
        let err = Money::new(1, Currency::EUR).checked_add(Money::new(1, Currency::USD));
        assert_eq!(
            err,
            Err(MoneyError::CurrencyMismatch(Currency::EUR, Currency::USD))
        );
    }

    #[test]
    fn multiplication_overflow_is_an_error_not_a_wrap() {
        assert_eq!(
            Money::new(i64::MAX, Currency::EUR).checked_mul(2),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::new(250, Currency::EUR).checked_mul(3),
            Ok(Money::new(750, Currency::EUR))
        );
    }

    #[test]
    fn money_serialises_with_a_plain_currency_code() {
        let json = serde_json::to_string(&Money::new(1999, Currency::EUR)).unwrap();
        assert_eq!(json, r#"{"amount_minor":1999,"currency":"EUR"}"#);
        assert_eq!(Money::new(-5, Currency::USD).to_string(), "-0.05 USD");
    }
}
