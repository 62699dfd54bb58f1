//! The stable code of a broken rule, as clients see it in `userErrors { code }`.
//!
//! Codes are part of the API contract, so every error enum spells its codes out as
//! literals in one exhaustive `match`: renaming a variant changes no code, and a new
//! variant does not compile until it is given one. The tests pin each code.

/// A rule-breaking error that clients identify by a stable code.
pub trait ErrorCode {
    /// The code in `UPPER_SNAKE_CASE`, such as `ALREADY_SHIPPED`; it never changes once
    /// published, whatever the variant is called.
    fn code(&self) -> &'static str;
}

#[cfg(test)]
mod tests;
