//! API tokens: their sha256 with the name and grant they stand for (never the token itself).

use super::backend;
use crate::incidents::{Grant, StoreError, TokenHolder, grant_str, parse_grant, ts};
use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, params};

/// `Store::put_grant`: replaces the name's token.
pub(super) fn put_grant(
    c: &Connection,
    name: &str,
    grant: Grant,
    sha: &str,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO tokens (name, role, sha256, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET role = excluded.role, sha256 = excluded.sha256,
         created_at = excluded.created_at",
        params![name, grant_str(grant), sha, ts(Utc::now())],
    )
    .map_err(backend)?;
    Ok(())
}

/// `Store::token`.
pub(super) fn token(c: &Connection, sha: &str) -> Result<Option<TokenHolder>, StoreError> {
    let row: Option<(String, String)> = c
        .query_row(
            "SELECT name, role FROM tokens WHERE sha256 = ?1",
            params![sha],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(backend)?;
    Ok(row.and_then(|(name, g)| parse_grant(&g).map(|grant| TokenHolder { name, grant })))
}

/// `Store::token_count`.
pub(super) fn count(c: &Connection) -> Result<i64, StoreError> {
    c.query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get(0))
        .map_err(backend)
}
