//! Accounts: registering, signing in and out, and `me`.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::cart::Cart;
use super::context::ContextExt;
use super::error::ApiError;
use super::ids::{AccountId, GlobalId};
use super::orders::{customer_orders, OrderConnection};
use super::relay::UserError;
use crate::auth::{self, AuthError, Role};

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "crate::auth::Role")]
pub enum AccountRole {
    /// Shops: own cart, orders and payments.
    Customer,
    /// Runs the shop: catalog, stock, all orders, refunds, analytics.
    Admin,
    /// Reads history, read-only.
    Auditor,
    /// Handles dead letters, sagas and projections.
    Operator,
}

/// An account.
#[derive(Clone, SimpleObject)]
pub struct Account {
    /// The account's opaque id.
    pub id: ID,
    /// The email it signs in with.
    pub email: String,
    /// What it may do.
    pub role: AccountRole,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<auth::Account> for Account {
    fn from(account: auth::Account) -> Self {
        Account {
            id: AccountId(account.id).to_global(),
            email: account.email,
            role: account.role.into(),
            created_at: account.created_at,
        }
    }
}

/// The signed-in caller.
pub struct Me {
    account: auth::Account,
}

/// The signed-in caller.
#[Object]
impl Me {
    /// The account.
    async fn account(&self) -> Account {
        self.account.clone().into()
    }

    /// The caller's orders, newest first.
    #[graphql(complexity = "super::relay::page_cost(first, last, child_complexity)")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<OrderConnection> {
        customer_orders(ctx, self.account.id, first, after, last, before).await
    }

    /// The caller's cart (customers).
    async fn cart(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Cart>> {
        if self.account.role != Role::Customer {
            return Ok(None);
        }
        Ok(Some(
            super::cart::CartQuery.cart_of(ctx, self.account.id).await?,
        ))
    }
}

/// Account reads.
#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The signed-in caller; null for anonymous requests.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Me>> {
        let Some(viewer) = ctx.viewer() else {
            return Ok(None);
        };
        let account = ctx
            .services()
            .accounts
            .account(viewer.account_id)
            .await
            .map_err(ApiError::auth)?
            .ok_or(ApiError::Unauthenticated)?;
        Ok(Some(Me { account }))
    }
}

/// A new customer account.
#[derive(Debug, InputObject)]
pub struct CustomerRegisterInput {
    /// The email to sign in with.
    pub email: String,
    /// At least 8 characters.
    pub password: String,
}

/// Credentials.
#[derive(Debug, InputObject)]
pub struct SessionCreateInput {
    /// The account's email.
    pub email: String,
    /// Its password.
    pub password: String,
}

/// A refresh token.
#[derive(Debug, InputObject)]
pub struct SessionRefreshInput {
    /// The refresh token from `sessionCreate` or the last `sessionRefresh`.
    pub refresh_token: String,
}

/// The answer to `customerRegister`.
#[derive(SimpleObject)]
pub struct CustomerRegisterPayload {
    /// The new account.
    pub account: Option<Account>,
    /// Rules the input broke.
    pub user_errors: Vec<UserError>,
}

/// A signed-in session.
#[derive(SimpleObject)]
pub struct Session {
    /// Send as `Authorization: Bearer <token>`; short-lived.
    pub access_token: String,
    /// When the access token expires.
    pub access_token_expires_at: DateTime<Utc>,
    /// Trade for a new session with `sessionRefresh`; usable once.
    pub refresh_token: String,
    /// When the refresh token expires.
    pub refresh_token_expires_at: DateTime<Utc>,
    /// The account.
    pub account: Account,
}

impl From<auth::Session> for Session {
    fn from(session: auth::Session) -> Self {
        Session {
            access_token: session.access_token,
            access_token_expires_at: session.access_expires_at,
            refresh_token: session.refresh_token,
            refresh_token_expires_at: session.refresh_expires_at,
            account: session.account.into(),
        }
    }
}

/// The answer to `sessionCreate` and `sessionRefresh`.
#[derive(SimpleObject)]
pub struct SessionPayload {
    /// The session; null when refused.
    pub session: Option<Session>,
    /// Why it was refused.
    pub user_errors: Vec<UserError>,
}

/// The answer to `sessionRevoke`.
#[derive(SimpleObject)]
pub struct SessionRevokePayload {
    /// Whether the refresh token (and every token rotated from it) is now void.
    pub revoked: bool,
    /// Why it was refused.
    pub user_errors: Vec<UserError>,
}

/// Account changes.
#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Opens a customer account.
    async fn customer_register(
        &self,
        ctx: &Context<'_>,
        input: CustomerRegisterInput,
    ) -> async_graphql::Result<CustomerRegisterPayload> {
        match ctx
            .services()
            .accounts
            .register(&input.email, &input.password)
            .await
        {
            Ok(account) => Ok(CustomerRegisterPayload {
                account: Some(account.into()),
                user_errors: Vec::new(),
            }),
            Err(error) => Ok(CustomerRegisterPayload {
                account: None,
                user_errors: vec![auth_user_error(error)?],
            }),
        }
    }

    /// Signs in: a short-lived access token and a refresh token.
    async fn session_create(
        &self,
        ctx: &Context<'_>,
        input: SessionCreateInput,
    ) -> async_graphql::Result<SessionPayload> {
        session(
            ctx.services()
                .accounts
                .login(&input.email, &input.password)
                .await,
        )
    }

    /// Trades a refresh token for a new session; the old refresh token is spent.
    async fn session_refresh(
        &self,
        ctx: &Context<'_>,
        input: SessionRefreshInput,
    ) -> async_graphql::Result<SessionPayload> {
        session(ctx.services().accounts.refresh(&input.refresh_token).await)
    }

    /// Signs out: voids the refresh token and every token rotated from it.
    async fn session_revoke(
        &self,
        ctx: &Context<'_>,
        input: SessionRefreshInput,
    ) -> async_graphql::Result<SessionRevokePayload> {
        match ctx.services().accounts.logout(&input.refresh_token).await {
            Ok(()) => Ok(SessionRevokePayload {
                revoked: true,
                user_errors: Vec::new(),
            }),
            Err(error) => Ok(SessionRevokePayload {
                revoked: false,
                user_errors: vec![auth_user_error(error)?],
            }),
        }
    }
}

fn session(result: Result<auth::Session, AuthError>) -> async_graphql::Result<SessionPayload> {
    match result {
        Ok(session) => Ok(SessionPayload {
            session: Some(session.into()),
            user_errors: Vec::new(),
        }),
        Err(error) => Ok(SessionPayload {
            session: None,
            user_errors: vec![auth_user_error(error)?],
        }),
    }
}

/// An account error the caller can fix, as a user error; an internal one as an error.
fn auth_user_error(error: AuthError) -> Result<UserError, ApiError> {
    let field: &[&str] = match &error {
        AuthError::InvalidEmail | AuthError::EmailTaken => &["email"],
        AuthError::WeakPassword { .. } | AuthError::PasswordTooLong { .. } => &["password"],
        AuthError::InvalidCredentials => &[],
        AuthError::InvalidToken(_) => &["refreshToken"],
        _ => return Err(ApiError::auth(error)),
    };
    let message = match &error {
        AuthError::InvalidToken(_) => "the token is invalid, expired or already used".to_owned(),
        other => other.to_string(),
    };
    Ok(if field.is_empty() {
        UserError::general(error.user_error_code(), message)
    } else {
        UserError::on(field, error.user_error_code(), message)
    })
}
