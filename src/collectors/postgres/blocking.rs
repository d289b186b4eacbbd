//! `postgres.blocking`: the blocking tree from `pg_blocking_pids`, with lock modes and relations.
//!
//! It tells the root holder from a victim that itself blocks others: in a chain A <- B <- C
//! (C waits for B, B waits for A) the root is A, the session that waits for nobody; B is a
//! victim, however many sessions queue behind it.

use super::activity::{Row, Session, sessions};
use super::{Databases, PgAnswer, ask};
use crate::tool::{RiskClass, Tool, ToolError};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Arguments of `postgres.blocking`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockingArgs {
    /// Which configured database to ask. May be omitted when only one is configured.
    #[serde(default)]
    pub database: Option<String>,
}

/// A session that waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Victim {
    pub pid: i32,
    pub application: String,
    /// The sessions it waits for directly.
    pub waits_for: Vec<i32>,
    /// Seconds it has been waiting (since its query began).
    pub wait_s: f64,
    /// The lock it waits for, e.g. "ShareLock on transactionid".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for_lock: Option<String>,
    /// Sessions waiting behind this one (it is a victim that blocks others).
    pub blocks: usize,
    /// Distance from the root (1: waits for the root directly).
    pub depth: usize,
    pub query: String,
}

/// A session that blocks others and waits for nobody.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootBlocker {
    pub session: Session,
    /// Relation locks it holds, e.g. "RowExclusiveLock on orders".
    pub holds: Vec<String>,
    /// Every session waiting behind it, directly or through others.
    pub victims: Vec<Victim>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocking {
    pub waiting_sessions: usize,
    pub longest_wait_s: f64,
    pub roots: Vec<RootBlocker>,
}

const LOCKS_SQL: &str = "/* oncall */ SELECT l.pid, l.mode, l.locktype, c.relname, l.granted \
    FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation \
    WHERE l.pid = ANY($1) AND (NOT l.granted OR (c.relkind IN ('r', 'p') AND c.relnamespace <> 'pg_catalog'::regnamespace))";

/// (pid, mode, locktype, relation, granted)
type LockRow = (i32, String, String, Option<String>, bool);

/// Builds the tree from sessions and their locks.
pub fn tree(rows: &[Row], locks: &[LockRow]) -> Blocking {
    let waiting: HashMap<i32, &Row> = rows
        .iter()
        .filter(|r| !r.blocked_by.is_empty())
        .map(|r| (r.session.pid, r))
        .collect();
    let by_pid: HashMap<i32, &Row> = rows.iter().map(|r| (r.session.pid, r)).collect();
    // Who waits directly for whom.
    let mut waiters: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for r in waiting.values() {
        for b in &r.blocked_by {
            waiters.entry(*b).or_default().push(r.session.pid);
        }
    }
    let roots: Vec<i32> = waiters
        .keys()
        .copied()
        .filter(|b| !waiting.contains_key(b))
        .collect();
    let describe = |pid: i32, granted: bool| -> Vec<String> {
        locks
            .iter()
            .filter(|l| l.0 == pid && l.4 == granted)
            .map(|l| format!("{} on {}", l.1, l.3.clone().unwrap_or_else(|| l.2.clone())))
            .collect()
    };
    let mut out = vec![];
    for root in roots {
        let mut victims = vec![];
        let mut seen = HashSet::from([root]);
        let mut queue = VecDeque::from([(root, 0usize)]);
        while let Some((pid, depth)) = queue.pop_front() {
            for w in waiters.get(&pid).cloned().unwrap_or_default() {
                if !seen.insert(w) {
                    continue;
                }
                if let Some(r) = waiting.get(&w) {
                    victims.push(Victim {
                        pid: w,
                        application: r.session.application.clone(),
                        waits_for: r.blocked_by.clone(),
                        wait_s: r.session.query_age_s.unwrap_or(0.0),
                        waiting_for_lock: describe(w, false).into_iter().next(),
                        blocks: 0,
                        depth: depth + 1,
                        query: r.session.query.clone(),
                    });
                }
                queue.push_back((w, depth + 1));
            }
        }
        for v in &mut victims {
            v.blocks = count_behind(v.pid, &waiters);
        }
        let session = by_pid
            .get(&root)
            .map(|r| r.session.clone())
            .unwrap_or(Session {
                pid: root,
                user: String::new(),
                application: "(not a client session)".into(),
                state: String::new(),
                wait: None,
                xact_age_s: None,
                query_age_s: None,
                query: String::new(),
            });
        out.push(RootBlocker {
            session,
            holds: describe(root, true),
            victims,
        });
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.victims.len()));
    Blocking {
        waiting_sessions: waiting.len(),
        longest_wait_s: waiting
            .values()
            .filter_map(|r| r.session.query_age_s)
            .fold(0.0, f64::max),
        roots: out,
    }
}

fn count_behind(pid: i32, waiters: &BTreeMap<i32, Vec<i32>>) -> usize {
    let mut seen = HashSet::from([pid]);
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        for w in waiters.get(&p).into_iter().flatten() {
            if seen.insert(*w) {
                stack.push(*w);
            }
        }
    }
    seen.len() - 1
}

pub struct BlockingTool {
    pub dbs: Databases,
}

#[async_trait]
impl Tool for BlockingTool {
    const NAME: &'static str = "postgres.blocking";
    const DESCRIPTION: &'static str = "PostgreSQL blocking tree (pg_blocking_pids + pg_locks): each ROOT holder (waits for nobody, blocks others) with its transaction age, state, held relation locks and every victim behind it, direct or chained. Name the root, not a victim in the middle of a chain.";
    const RISK: RiskClass = RiskClass::Read;
    type Args = BlockingArgs;
    type Output = PgAnswer<Blocking>;

    crate::collectors::postgres::database_tool!();

    async fn call(&self, a: BlockingArgs) -> Result<Self::Output, ToolError> {
        Ok(
            ask(&self.dbs, a.database.as_deref(), |client, _| async move {
                let rows = sessions(&client).await?;
                let pids: Vec<i32> = rows
                    .iter()
                    .flat_map(|r| r.blocked_by.iter().copied().chain([r.session.pid]))
                    .collect();
                let locks: Vec<LockRow> = client
                    .query(LOCKS_SQL, &[&pids])
                    .await?
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
                    .collect();
                Ok(tree(&rows, &locks))
            })
            .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pid: i32, app: &str, state: &str, blocked_by: &[i32], age: f64) -> Row {
        Row {
            session: Session {
                pid,
                user: "u".into(),
                application: app.into(),
                state: state.into(),
                wait: None,
                xact_age_s: Some(age),
                query_age_s: Some(age),
                query: "q".into(),
            },
            blocked_by: blocked_by.to_vec(),
        }
    }

    #[test]
    fn a_chain_names_the_root_not_the_middle_victim() {
        // A(10) idle in transaction <- B(20) <- C(30); D(40) runs freely.
        let rows = vec![
            row(10, "billing-worker", "idle in transaction", &[], 600.0),
            row(20, "checkout", "active", &[10], 30.0),
            row(30, "checkout", "active", &[20], 20.0),
            row(40, "report", "active", &[], 1.0),
        ];
        let locks = vec![
            (
                10,
                "RowExclusiveLock".to_string(),
                "relation".to_string(),
                Some("orders".to_string()),
                true,
            ),
            (
                20,
                "ShareLock".to_string(),
                "transactionid".to_string(),
                None,
                false,
            ),
        ];
        let b = tree(&rows, &locks);
        assert_eq!(b.roots.len(), 1);
        let root = &b.roots[0];
        assert_eq!(root.session.pid, 10);
        assert_eq!(root.session.application, "billing-worker");
        assert_eq!(root.holds, vec!["RowExclusiveLock on orders"]);
        assert_eq!(root.victims.len(), 2);
        let mid = root.victims.iter().find(|v| v.pid == 20).unwrap();
        assert_eq!(
            (mid.depth, mid.blocks),
            (1, 1),
            "B waits for A and blocks C"
        );
        assert_eq!(
            mid.waiting_for_lock.as_deref(),
            Some("ShareLock on transactionid")
        );
        assert_eq!(root.victims.iter().find(|v| v.pid == 30).unwrap().depth, 2);
        assert_eq!(b.waiting_sessions, 2);
        assert_eq!(b.longest_wait_s, 30.0);
    }

    #[test]
    fn no_waiters_no_roots() {
        let b = tree(&[row(1, "a", "active", &[], 1.0)], &[]);
        assert!(b.roots.is_empty());
        assert_eq!(b.waiting_sessions, 0);
    }
}
