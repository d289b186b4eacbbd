//! API tokens: their sha256 with the name and grant they stand for (never the token itself).

use super::{PgStore, backend};
use crate::incidents::{Grant, StoreError, TokenHolder, grant_str, parse_grant, ts};
use chrono::Utc;

/// `Store::put_grant`: replaces the name's token.
pub(super) async fn put_grant(
    store: &PgStore,
    name: &str,
    grant: Grant,
    sha256_hex: &str,
) -> Result<(), StoreError> {
    let c = store.client().await?;
    c.execute(
        "INSERT INTO tokens (name, role, sha256, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET role = excluded.role, sha256 = excluded.sha256,
         created_at = excluded.created_at",
        &[&name, &grant_str(grant), &sha256_hex, &ts(Utc::now())],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

/// `Store::token`.
pub(super) async fn token(
    store: &PgStore,
    sha256_hex: &str,
) -> Result<Option<TokenHolder>, StoreError> {
    let c = store.client().await?;
    let row = c
        .query_opt(
            "SELECT name, role FROM tokens WHERE sha256 = $1",
            &[&sha256_hex],
        )
        .await
        .map_err(backend)?;
    Ok(row.and_then(|r| {
        let role: String = r.get(1);
        parse_grant(&role).map(|grant| TokenHolder {
            name: r.get(0),
            grant,
        })
    }))
}

/// `Store::token_count`.
pub(super) async fn count(store: &PgStore) -> Result<i64, StoreError> {
    let c = store.client().await?;
    Ok(c.query_one("SELECT COUNT(*) FROM tokens", &[])
        .await
        .map_err(backend)?
        .get(0))
}
