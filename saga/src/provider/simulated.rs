//! A payment provider simulated in PostgreSQL, the default when no real provider is set up.
//!
//! Its ledger lives in the schema `payment_simulator`, so it survives a SIGKILL of the saga
//! process, several saga replicas share it, and tests can check it. Every call runs in one
//! transaction that locks the rows of its idempotency key, so concurrent calls with the
//! same key (two replicas retrying) still take effect once.
//!
//! Outcomes are decided by the card token, like real providers' test cards:
//!
//! | token              | outcome                                                          |
//! |--------------------|------------------------------------------------------------------|
//! | `tok_declined`     | declined, "card declined"                                        |
//! | `tok_fail_<N>`     | transient failure for the first N authorise calls of a key      |
//! | `tok_hang`         | pending for `hang_for`, then authorised unless voided meanwhile  |
//! | `tok_refund_fails` | authorise and capture work; every refund and void is transient   |
//! | anything else      | authorised as `sim_<uuid>`, unless the failure injection hits    |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::ids::{OrderId, PaymentId};
use domain::money::{Currency, Money};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use tracing::{debug, instrument};
use uuid::Uuid;

use crate::provider::{
    Authorisation, AuthoriseRequest, CaptureRequest, PaymentProvider, ProviderError, RefundRequest,
    VoidOutcome, VoidRequest,
};

/// The tables of the simulator's ledger; every statement is `IF NOT EXISTS`.
const SCHEMA: &str = include_str!("simulator_schema.sql");

/// How the simulator behaves beyond what the card tokens decide.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulatorConfig {
    /// Slept before every call, to make load tests feel a provider's round trip.
    pub latency: Duration,
    /// How long an authorise with `tok_hang` stays pending before it authorises.
    pub hang_for: Duration,
    /// The share (0.0 to 1.0) of authorisations with ordinary tokens that are declined as
    /// injected failures, for load tests. The special test cards are never affected.
    pub failure_rate: f64,
    /// Picks which idempotency keys the failure injection hits; the same seed and key
    /// always give the same answer.
    pub seed: u64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            hang_for: Duration::from_secs(30),
            failure_rate: 0.0,
            seed: 0,
        }
    }
}

/// The simulated payment provider; cheap to clone (it shares the pool).
#[derive(Debug, Clone)]
pub struct SimulatedProvider {
    pool: PgPool,
    config: SimulatorConfig,
}

/// Where an authorisation stands in the simulator's ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// A `tok_hang` authorisation still in flight.
    Pending,
    /// The money is held on the card.
    Authorised,
    /// The card was declined (or the failure injection hit).
    Declined,
    /// The hold was released, or the key was voided before any authorise arrived.
    Voided,
    /// The money was taken; refunds do not change this state.
    Captured,
}

impl EntryState {
    /// The name stored in the ledger.
    pub fn as_str(&self) -> &'static str {
        match self {
            EntryState::Pending => "pending",
            EntryState::Authorised => "authorised",
            EntryState::Declined => "declined",
            EntryState::Voided => "voided",
            EntryState::Captured => "captured",
        }
    }
}

impl fmt::Display for EntryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of the ledger's states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a payment simulator state")]
pub struct UnknownEntryState(String);

impl FromStr for EntryState {
    type Err = UnknownEntryState;

    fn from_str(state: &str) -> Result<Self, Self::Err> {
        match state {
            "pending" => Ok(EntryState::Pending),
            "authorised" => Ok(EntryState::Authorised),
            "declined" => Ok(EntryState::Declined),
            "voided" => Ok(EntryState::Voided),
            "captured" => Ok(EntryState::Captured),
            other => Err(UnknownEntryState(other.to_owned())),
        }
    }
}

/// Totals over the whole simulator ledger, in minor units of whatever currency was used
/// (the simulator does not convert: keep to one currency when reading the sums).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Ledger {
    /// Held on cards: authorised, not captured, not voided.
    pub authorised_held_minor: i64,
    /// Taken from cards, refunds not deducted.
    pub captured_minor: i64,
    /// Given back to cards.
    pub refunded_minor: i64,
    /// Declined authorisations, the injected ones included.
    pub declined: u64,
    /// Declined authorisations caused by the failure injection.
    pub injected_failures: u64,
    /// Authorisations (held or pending) that a void released; tombstones are not counted.
    pub voided: u64,
}

/// One authorisation in the simulator ledger, with what was captured and refunded on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    /// The idempotency key of the authorise call.
    pub idempotency_key: String,
    /// The payment being authorised.
    pub payment_id: PaymentId,
    /// The order being paid.
    pub order_id: OrderId,
    /// The card token that decided the outcome.
    pub card_token: String,
    /// Where the authorisation stands.
    pub state: EntryState,
    /// The amount asked for.
    pub amount: Money,
    /// The amount taken.
    pub captured: Money,
    /// The amount given back.
    pub refunded: Money,
    /// The provider reference, when the authorisation succeeded.
    pub reference: Option<String>,
    /// Why it was declined, when it was.
    pub decline_reason: Option<String>,
    /// Whether the failure injection declined it.
    pub injected: bool,
    /// How many authorise calls arrived with the key, failed and repeated ones included.
    pub authorise_attempts: u32,
    /// When the first authorise (or a void before it) arrived.
    pub created_at: DateTime<Utc>,
    /// When the entry last changed.
    pub updated_at: DateTime<Utc>,
}

/// The card tokens with a scripted outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TestCard {
    Declined,
    FailFirst(u32),
    Hang,
    RefundFails,
    Ordinary,
}

impl TestCard {
    fn of(token: &str) -> Self {
        match token {
            "tok_declined" => TestCard::Declined,
            "tok_hang" => TestCard::Hang,
            "tok_refund_fails" => TestCard::RefundFails,
            _ => match token.strip_prefix("tok_fail_").map(str::parse) {
                Some(Ok(failures)) => TestCard::FailFirst(failures),
                _ => TestCard::Ordinary,
            },
        }
    }
}

/// A new authorisation row, as the first authorise call with a key decided it.
enum Decision {
    Authorised {
        reference: String,
    },
    Declined {
        reason: &'static str,
        injected: bool,
    },
    Pending {
        hang_for: Duration,
    },
}

/// The columns of `payment_simulator.authorisations` that the calls decide on.
#[derive(Debug, sqlx::FromRow)]
struct AuthorisationRow {
    state: String,
    card_token: Option<String>,
    amount_minor: i64,
    currency: Option<String>,
    reference: Option<String>,
    decline_reason: Option<String>,
    injected: bool,
    pending_over: bool,
    void_outcome: Option<String>,
    captured_minor: i64,
    refunded_minor: i64,
}

impl AuthorisationRow {
    fn state(&self) -> Result<EntryState, sqlx::Error> {
        self.state
            .parse()
            .map_err(|e: UnknownEntryState| sqlx::Error::Decode(Box::new(e)))
    }

    fn card(&self) -> TestCard {
        self.card_token
            .as_deref()
            .map_or(TestCard::Ordinary, TestCard::of)
    }

    /// The answer an authorise call with this row's key gets, once the row is decided.
    fn authorise_answer(&self) -> Result<Result<Authorisation, ProviderError>, sqlx::Error> {
        // A key that was ever authorised keeps answering with its reference, even after a
        // void or capture: the same key always gets the first answer.
        if let Some(reference) = &self.reference {
            return Ok(Ok(Authorisation {
                reference: reference.clone(),
            }));
        }
        Ok(match self.state()? {
            EntryState::Declined => Err(ProviderError::Declined {
                reason: self.decline_reason.clone().unwrap_or_default(),
                injected: self.injected,
            }),
            EntryState::Pending => Err(ProviderError::Transient(
                "authorisation in progress".to_owned(),
            )),
            EntryState::Voided if self.void_outcome.as_deref() == Some(VOIDED) => {
                Err(ProviderError::Refused("voided while pending".to_owned()))
            }
            // A tombstone: the void came first. Authorised and captured rows always have a
            // reference, so they were answered above.
            EntryState::Voided | EntryState::Authorised | EntryState::Captured => {
                Err(ProviderError::Refused("voided".to_owned()))
            }
        })
    }

    fn amount_matches_currency(&self, amount: &Money) -> bool {
        self.currency.as_deref() == Some(amount.currency.code())
    }
}

/// The captures and refunds tables share a shape: an operation on an authorisation.
#[derive(Debug, sqlx::FromRow)]
struct OperationRow {
    authorisation_key: String,
    amount_minor: i64,
    currency: String,
}

impl OperationRow {
    fn is_same(&self, authorisation_key: &str, amount: &Money) -> bool {
        self.authorisation_key == authorisation_key
            && self.amount_minor == amount.amount_minor
            && self.currency == amount.currency.code()
    }
}

/// The columns of a ledger entry as stored; only rows with an order are entries.
#[derive(Debug, sqlx::FromRow)]
struct EntryRow {
    idempotency_key: String,
    payment_id: Uuid,
    order_id: Uuid,
    card_token: String,
    state: String,
    amount_minor: i64,
    currency: String,
    captured_minor: i64,
    refunded_minor: i64,
    reference: Option<String>,
    decline_reason: Option<String>,
    injected: bool,
    attempts: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<EntryRow> for LedgerEntry {
    type Error = sqlx::Error;

    fn try_from(row: EntryRow) -> Result<Self, Self::Error> {
        let currency: Currency = row
            .currency
            .parse()
            .map_err(|e: domain::money::MoneyError| sqlx::Error::Decode(Box::new(e)))?;
        Ok(LedgerEntry {
            idempotency_key: row.idempotency_key,
            payment_id: PaymentId::from_uuid(row.payment_id),
            order_id: OrderId::from_uuid(row.order_id),
            card_token: row.card_token,
            state: row
                .state
                .parse()
                .map_err(|e: UnknownEntryState| sqlx::Error::Decode(Box::new(e)))?,
            amount: Money::new(row.amount_minor, currency),
            captured: Money::new(row.captured_minor, currency),
            refunded: Money::new(row.refunded_minor, currency),
            reference: row.reference,
            decline_reason: row.decline_reason,
            injected: row.injected,
            // Attempts start at one and only grow.
            authorise_attempts: u32::try_from(row.attempts).unwrap_or_default(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// `void_outcome` of a void that released something.
const VOIDED: &str = "voided";
/// `void_outcome` of a void that found nothing to release.
const NOTHING_TO_VOID: &str = "nothing_to_void";

const SELECT_AUTHORISATION_FOR_UPDATE: &str = "
    SELECT state, card_token, amount_minor, currency, reference, decline_reason, injected,
           COALESCE(pending_until <= now(), FALSE) AS pending_over, void_outcome,
           captured_minor, refunded_minor
    FROM payment_simulator.authorisations
    WHERE idempotency_key = $1
    FOR UPDATE";

impl SimulatedProvider {
    /// Creates the schema `payment_simulator` and its tables if absent, then returns the
    /// provider. Safe to call from several processes at once.
    ///
    /// # Errors
    /// When PostgreSQL is unreachable or refuses the DDL.
    pub async fn install(pool: PgPool, config: SimulatorConfig) -> Result<Self, sqlx::Error> {
        let mut tx = pool.begin().await?;
        // `CREATE ... IF NOT EXISTS` still races in the catalog (a unique violation), so
        // installers take turns; the lock ends with the transaction.
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended('payment_simulator.install', 0))",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Self { pool, config })
    }

    /// The settings this provider was installed with.
    pub fn config(&self) -> &SimulatorConfig {
        &self.config
    }

    /// Ends the refund and void outage of an order paid with `tok_refund_fails` (as when a
    /// provider fixes its side); returns how many authorisations it changed.
    ///
    /// # Errors
    /// When PostgreSQL is unreachable.
    pub async fn end_refund_outage(&self, order_id: OrderId) -> Result<u64, sqlx::Error> {
        let ended = sqlx::query(
            "UPDATE payment_simulator.authorisations SET card_token = 'tok_visa', updated_at = now()
              WHERE order_id = $1 AND card_token = 'tok_refund_fails'",
        )
        .bind(order_id.as_uuid())
        .execute(&self.pool)
        .await?;
        Ok(ended.rows_affected())
    }

    /// Totals over the whole ledger.
    ///
    /// # Errors
    /// When PostgreSQL is unreachable.
    pub async fn ledger(&self) -> Result<Ledger, sqlx::Error> {
        let (held, captured, refunded, declined, injected, voided): (i64, i64, i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT
                    COALESCE(SUM(amount_minor) FILTER (WHERE state = 'authorised'), 0)::BIGINT,
                    COALESCE(SUM(captured_minor), 0)::BIGINT,
                    COALESCE(SUM(refunded_minor), 0)::BIGINT,
                    COUNT(*) FILTER (WHERE state = 'declined'),
                    COUNT(*) FILTER (WHERE state = 'declined' AND injected),
                    COUNT(*) FILTER (WHERE void_outcome = 'voided')
                 FROM payment_simulator.authorisations",
            )
            .fetch_one(&self.pool)
            .await?;
        // Counts are never negative.
        let count = |n: i64| u64::try_from(n).unwrap_or_default();
        Ok(Ledger {
            authorised_held_minor: held,
            captured_minor: captured,
            refunded_minor: refunded,
            declined: count(declined),
            injected_failures: count(injected),
            voided: count(voided),
        })
    }

    /// The latest authorisation for an order, if an authorise call for it ever arrived.
    ///
    /// # Errors
    /// When PostgreSQL is unreachable.
    pub async fn entry(&self, order_id: OrderId) -> Result<Option<LedgerEntry>, sqlx::Error> {
        let row: Option<EntryRow> = sqlx::query_as(
            "SELECT a.idempotency_key, a.payment_id, a.order_id, a.card_token, a.state,
                    a.amount_minor, a.currency, a.captured_minor, a.refunded_minor, a.reference,
                    a.decline_reason, a.injected, COALESCE(t.attempts, 0) AS attempts,
                    a.created_at, a.updated_at
             FROM payment_simulator.authorisations a
             LEFT JOIN payment_simulator.authorise_attempts t USING (idempotency_key)
             WHERE a.order_id = $1
             ORDER BY a.created_at DESC, a.idempotency_key DESC
             LIMIT 1",
        )
        .bind(order_id.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        row.map(LedgerEntry::try_from).transpose()
    }

    async fn simulate_latency(&self) {
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
    }

    /// Whether the failure injection declines this key; a pure function of seed and key.
    fn injects_failure(&self, idempotency_key: &str) -> bool {
        self.config.failure_rate > 0.0
            && uniform_roll(self.config.seed, idempotency_key) < self.config.failure_rate
    }

    async fn try_authorise(
        &self,
        request: &AuthoriseRequest,
    ) -> Result<Result<Authorisation, ProviderError>, sqlx::Error> {
        let key = &request.idempotency_key;
        let mut tx = self.pool.begin().await?;
        // The attempts row counts calls durably and, locked until commit, makes concurrent
        // authorise calls with the same key take turns.
        let attempts: i32 = sqlx::query_scalar(
            "INSERT INTO payment_simulator.authorise_attempts (idempotency_key, attempts)
             VALUES ($1, 1)
             ON CONFLICT (idempotency_key)
             DO UPDATE SET attempts = payment_simulator.authorise_attempts.attempts + 1
             RETURNING attempts",
        )
        .bind(key)
        .fetch_one(&mut *tx)
        .await?;

        if let Some(row) = lock_authorisation(&mut tx, key).await? {
            let answer = self.answer_repeat(&mut tx, key, request, &row).await?;
            tx.commit().await?;
            return Ok(answer);
        }

        let decision = match TestCard::of(&request.card_token) {
            TestCard::FailFirst(failures) if i64::from(attempts) <= i64::from(failures) => {
                tx.commit().await?;
                return Ok(Err(ProviderError::Transient(format!(
                    "simulated outage, attempt {attempts} of {failures} failing"
                ))));
            }
            TestCard::Declined => Decision::Declined {
                reason: "card declined",
                injected: false,
            },
            TestCard::Hang => Decision::Pending {
                hang_for: self.config.hang_for,
            },
            TestCard::Ordinary if self.injects_failure(key) => Decision::Declined {
                reason: "injected failure",
                injected: true,
            },
            TestCard::FailFirst(_) | TestCard::RefundFails | TestCard::Ordinary => {
                Decision::Authorised {
                    reference: new_reference(),
                }
            }
        };
        if !insert_authorisation(&mut tx, request, &decision).await? {
            // A void got in first and left a tombstone; answer from it.
            let row = lock_authorisation(&mut tx, key)
                .await?
                .ok_or(sqlx::Error::RowNotFound)?;
            let answer = self.answer_repeat(&mut tx, key, request, &row).await?;
            tx.commit().await?;
            return Ok(answer);
        }
        tx.commit().await?;
        debug!(attempts, "authorisation decided");

        match decision {
            Decision::Authorised { reference } => Ok(Ok(Authorisation { reference })),
            Decision::Declined { reason, injected } => Ok(Err(ProviderError::Declined {
                reason: reason.to_owned(),
                injected,
            })),
            Decision::Pending { .. } => {
                // No transaction or connection is held while hanging: a void must get through.
                tokio::time::sleep(self.config.hang_for).await;
                self.finish_pending(key).await
            }
        }
    }

    /// Answers an authorise call whose key already has a row.
    async fn answer_repeat(
        &self,
        conn: &mut PgConnection,
        key: &str,
        request: &AuthoriseRequest,
        row: &AuthorisationRow,
    ) -> Result<Result<Authorisation, ProviderError>, sqlx::Error> {
        match row.state()? {
            // The hanging call died with its process, or is late: the provider has
            // finished processing by now.
            EntryState::Pending if row.pending_over => {
                let reference = authorise_pending(conn, key).await?;
                Ok(Ok(Authorisation { reference }))
            }
            EntryState::Voided if row.card_token.is_none() => {
                // The late authorise of a tombstone: record what it asked for, for
                // operators, and refuse it.
                sqlx::query(
                    "UPDATE payment_simulator.authorisations
                     SET payment_id = $2, order_id = $3, card_token = $4, amount_minor = $5,
                         currency = $6, updated_at = now()
                     WHERE idempotency_key = $1",
                )
                .bind(key)
                .bind(request.payment_id.as_uuid())
                .bind(request.order_id.as_uuid())
                .bind(&request.card_token)
                .bind(request.amount.amount_minor)
                .bind(request.amount.currency.code())
                .execute(conn)
                .await?;
                row.authorise_answer()
            }
            _ => row.authorise_answer(),
        }
    }

    /// After the hang: authorise unless a void (or a retry) decided the row meanwhile.
    async fn finish_pending(
        &self,
        key: &str,
    ) -> Result<Result<Authorisation, ProviderError>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let row = lock_authorisation(&mut tx, key)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        let answer = if row.state()? == EntryState::Pending {
            let reference = authorise_pending(&mut tx, key).await?;
            Ok(Authorisation { reference })
        } else {
            row.authorise_answer()?
        };
        tx.commit().await?;
        Ok(answer)
    }

    async fn try_capture(
        &self,
        request: &CaptureRequest,
    ) -> Result<Result<(), ProviderError>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // Locking the authorisation first makes every capture and refund on it take turns.
        let Some(authorisation) = lock_authorisation(&mut tx, &request.authorisation_key).await?
        else {
            return Ok(Err(refused("no authorisation with this key")));
        };
        let earlier: Option<OperationRow> = sqlx::query_as(
            "SELECT authorisation_key, amount_minor, currency
             FROM payment_simulator.captures WHERE idempotency_key = $1",
        )
        .bind(&request.idempotency_key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(earlier) = earlier {
            return Ok(
                if earlier.is_same(&request.authorisation_key, &request.amount) {
                    Ok(())
                } else {
                    Err(refused("idempotency key reused for a different capture"))
                },
            );
        }
        match authorisation.state()? {
            EntryState::Authorised => {}
            EntryState::Captured => return Ok(Err(refused("already captured"))),
            EntryState::Voided => return Ok(Err(refused("authorisation voided"))),
            EntryState::Declined => return Ok(Err(refused("authorisation declined"))),
            EntryState::Pending => return Ok(Err(refused("authorisation still pending"))),
        }
        if !authorisation.amount_matches_currency(&request.amount) {
            return Ok(Err(refused("currency differs from the authorisation")));
        }
        if request.amount.amount_minor > authorisation.amount_minor {
            return Ok(Err(refused("capture above the authorised amount")));
        }
        insert_operation(
            &mut tx,
            "captures",
            &request.idempotency_key,
            &request.authorisation_key,
            &request.amount,
        )
        .await?;
        sqlx::query(
            "UPDATE payment_simulator.authorisations
             SET state = 'captured', captured_minor = $2, updated_at = now()
             WHERE idempotency_key = $1",
        )
        .bind(&request.authorisation_key)
        .bind(request.amount.amount_minor)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    async fn try_void(
        &self,
        request: &VoidRequest,
    ) -> Result<Result<VoidOutcome, ProviderError>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let tombstone = sqlx::query(
            "INSERT INTO payment_simulator.authorisations
                 (idempotency_key, state, void_key, void_outcome)
             VALUES ($1, 'voided', $2, $3)
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(&request.authorisation_key)
        .bind(&request.idempotency_key)
        .bind(NOTHING_TO_VOID)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if tombstone {
            tx.commit().await?;
            return Ok(Ok(VoidOutcome::NothingToVoid));
        }
        let row = lock_authorisation(&mut tx, &request.authorisation_key)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        if row.card() == TestCard::RefundFails {
            return Ok(Err(refund_outage()));
        }
        let outcome = match row.state()? {
            EntryState::Pending | EntryState::Authorised => {
                sqlx::query(
                    "UPDATE payment_simulator.authorisations
                     SET state = 'voided', void_key = $2, void_outcome = $3, updated_at = now()
                     WHERE idempotency_key = $1",
                )
                .bind(&request.authorisation_key)
                .bind(&request.idempotency_key)
                .bind(VOIDED)
                .execute(&mut *tx)
                .await?;
                VoidOutcome::Voided
            }
            EntryState::Declined => VoidOutcome::NothingToVoid,
            EntryState::Voided if row.void_outcome.as_deref() == Some(VOIDED) => {
                VoidOutcome::Voided
            }
            EntryState::Voided => VoidOutcome::NothingToVoid,
            EntryState::Captured => VoidOutcome::AlreadyCaptured,
        };
        tx.commit().await?;
        Ok(Ok(outcome))
    }

    async fn try_refund(
        &self,
        request: &RefundRequest,
    ) -> Result<Result<(), ProviderError>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let Some(authorisation) = lock_authorisation(&mut tx, &request.authorisation_key).await?
        else {
            return Ok(Err(refused("no authorisation with this key")));
        };
        if authorisation.card() == TestCard::RefundFails {
            return Ok(Err(refund_outage()));
        }
        let earlier: Option<OperationRow> = sqlx::query_as(
            "SELECT authorisation_key, amount_minor, currency
             FROM payment_simulator.refunds WHERE idempotency_key = $1",
        )
        .bind(&request.idempotency_key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(earlier) = earlier {
            return Ok(
                if earlier.is_same(&request.authorisation_key, &request.amount) {
                    Ok(())
                } else {
                    Err(refused("idempotency key reused for a different refund"))
                },
            );
        }
        if authorisation.state()? != EntryState::Captured {
            return Ok(Err(refused("nothing captured to refund")));
        }
        if !authorisation.amount_matches_currency(&request.amount) {
            return Ok(Err(refused("currency differs from the authorisation")));
        }
        let refundable = authorisation.captured_minor - authorisation.refunded_minor;
        if request.amount.amount_minor > refundable {
            return Ok(Err(refused("refund above the captured amount")));
        }
        insert_operation(
            &mut tx,
            "refunds",
            &request.idempotency_key,
            &request.authorisation_key,
            &request.amount,
        )
        .await?;
        sqlx::query(
            "UPDATE payment_simulator.authorisations
             SET refunded_minor = refunded_minor + $2, updated_at = now()
             WHERE idempotency_key = $1",
        )
        .bind(&request.authorisation_key)
        .bind(request.amount.amount_minor)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }
}

#[async_trait::async_trait]
impl PaymentProvider for SimulatedProvider {
    #[instrument(skip_all, fields(idempotency_key = %request.idempotency_key, order_id = %request.order_id))]
    async fn authorise(&self, request: &AuthoriseRequest) -> Result<Authorisation, ProviderError> {
        self.simulate_latency().await;
        if !request.amount.is_positive() {
            return Err(refused("amount must be positive"));
        }
        let answer = self
            .try_authorise(request)
            .await
            .unwrap_or_else(|e| Err(ledger_unavailable(e)));
        debug!(?answer, "authorise answered");
        answer
    }

    #[instrument(skip_all, fields(idempotency_key = %request.idempotency_key, authorisation_key = %request.authorisation_key))]
    async fn capture(&self, request: &CaptureRequest) -> Result<(), ProviderError> {
        self.simulate_latency().await;
        if !request.amount.is_positive() {
            return Err(refused("amount must be positive"));
        }
        let answer = self
            .try_capture(request)
            .await
            .unwrap_or_else(|e| Err(ledger_unavailable(e)));
        debug!(?answer, "capture answered");
        answer
    }

    #[instrument(skip_all, fields(idempotency_key = %request.idempotency_key, authorisation_key = %request.authorisation_key))]
    async fn void(&self, request: &VoidRequest) -> Result<VoidOutcome, ProviderError> {
        self.simulate_latency().await;
        let answer = self
            .try_void(request)
            .await
            .unwrap_or_else(|e| Err(ledger_unavailable(e)));
        debug!(?answer, "void answered");
        answer
    }

    #[instrument(skip_all, fields(idempotency_key = %request.idempotency_key, authorisation_key = %request.authorisation_key))]
    async fn refund(&self, request: &RefundRequest) -> Result<(), ProviderError> {
        self.simulate_latency().await;
        if !request.amount.is_positive() {
            return Err(refused("amount must be positive"));
        }
        let answer = self
            .try_refund(request)
            .await
            .unwrap_or_else(|e| Err(ledger_unavailable(e)));
        debug!(?answer, "refund answered");
        answer
    }
}

async fn lock_authorisation(
    conn: &mut PgConnection,
    key: &str,
) -> Result<Option<AuthorisationRow>, sqlx::Error> {
    sqlx::query_as(SELECT_AUTHORISATION_FOR_UPDATE)
        .bind(key)
        .fetch_optional(conn)
        .await
}

/// Inserts the first decision for a key; false when a row (a void's tombstone) exists.
async fn insert_authorisation(
    conn: &mut PgConnection,
    request: &AuthoriseRequest,
    decision: &Decision,
) -> Result<bool, sqlx::Error> {
    let (state, reference, decline_reason, injected, pending_secs) = match decision {
        Decision::Authorised { reference } => {
            ("authorised", Some(reference.as_str()), None, false, None)
        }
        Decision::Declined { reason, injected } => {
            ("declined", None, Some(*reason), *injected, None)
        }
        Decision::Pending { hang_for } => {
            ("pending", None, None, false, Some(hang_for.as_secs_f64()))
        }
    };
    let inserted = sqlx::query(
        "INSERT INTO payment_simulator.authorisations
             (idempotency_key, state, payment_id, order_id, card_token, amount_minor, currency,
              reference, decline_reason, injected, pending_until)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                 now() + make_interval(secs => $11::DOUBLE PRECISION))
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(&request.idempotency_key)
    .bind(state)
    .bind(request.payment_id.as_uuid())
    .bind(request.order_id.as_uuid())
    .bind(&request.card_token)
    .bind(request.amount.amount_minor)
    .bind(request.amount.currency.code())
    .bind(reference)
    .bind(decline_reason)
    .bind(injected)
    .bind(pending_secs)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Turns a locked pending row into an authorisation and returns its new reference.
async fn authorise_pending(conn: &mut PgConnection, key: &str) -> Result<String, sqlx::Error> {
    let reference = new_reference();
    sqlx::query(
        "UPDATE payment_simulator.authorisations
         SET state = 'authorised', reference = $2, updated_at = now()
         WHERE idempotency_key = $1",
    )
    .bind(key)
    .bind(&reference)
    .execute(conn)
    .await?;
    Ok(reference)
}

/// Records a capture or refund under its own idempotency key.
async fn insert_operation(
    conn: &mut PgConnection,
    table: &'static str,
    idempotency_key: &str,
    authorisation_key: &str,
    amount: &Money,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO payment_simulator.{table}
             (idempotency_key, authorisation_key, amount_minor, currency)
         VALUES ($1, $2, $3, $4)"
    ))
    .bind(idempotency_key)
    .bind(authorisation_key)
    .bind(amount.amount_minor)
    .bind(amount.currency.code())
    .execute(conn)
    .await?;
    Ok(())
}

fn new_reference() -> String {
    format!("sim_{}", Uuid::new_v4().simple())
}

fn refused(reason: &str) -> ProviderError {
    ProviderError::Refused(reason.to_owned())
}

fn refund_outage() -> ProviderError {
    ProviderError::Transient("simulated outage on refunds and voids (tok_refund_fails)".to_owned())
}

/// The ledger being unreachable looks like a provider 5xx: each call is one transaction,
/// so a retry with the same key is safe. A unique violation from two calls racing on a
/// capture or refund key lands here too, and the retry then finds the winner's row.
fn ledger_unavailable(error: sqlx::Error) -> ProviderError {
    ProviderError::Transient(format!("simulator ledger unavailable: {error}"))
}

/// A number in [0, 1) that depends only on the seed and the key.
///
/// FNV-1a over both, then the splitmix64 finaliser to spread the bits; unlike
/// `DefaultHasher`, it is stable across Rust versions and platforms.
fn uniform_roll(seed: u64, key: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed.to_le_bytes().iter().chain(key.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    // The top 53 bits fill an f64 mantissa exactly.
    (hash >> 11) as f64 / (1_u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards_are_recognised_by_token() {
        assert_eq!(TestCard::of("tok_declined"), TestCard::Declined);
        assert_eq!(TestCard::of("tok_fail_2"), TestCard::FailFirst(2));
        assert_eq!(TestCard::of("tok_hang"), TestCard::Hang);
        assert_eq!(TestCard::of("tok_refund_fails"), TestCard::RefundFails);
        assert_eq!(TestCard::of("tok_fail_x"), TestCard::Ordinary);
        assert_eq!(TestCard::of("tok_visa"), TestCard::Ordinary);
    }

    #[test]
    fn the_failure_roll_is_uniform_enough_and_depends_on_the_seed() {
        let rolls: Vec<f64> = (0..10_000)
            .map(|i| uniform_roll(7, &format!("key-{i}")))
            .collect();
        assert!(rolls.iter().all(|roll| (0.0..1.0).contains(roll)));
        let below_half = rolls.iter().filter(|roll| **roll < 0.5).count();
        assert!(
            (4_700..5_300).contains(&below_half),
            "{below_half} of 10000 below 0.5"
        );
        assert_eq!(uniform_roll(7, "key-1"), rolls[1]);
        assert_ne!(uniform_roll(8, "key-1"), rolls[1]);
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for state in [
            EntryState::Pending,
            EntryState::Authorised,
            EntryState::Declined,
            EntryState::Voided,
            EntryState::Captured,
        ] {
            assert_eq!(state.as_str().parse(), Ok(state));
        }
    }
}
