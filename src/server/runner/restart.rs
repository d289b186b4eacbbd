//! What a restart finds: the investigations this replica was running, now interrupted, and the
//! actions that may or may not have run, each announced in its incident.

use crate::incidents::{EventKind, StoreError};
use crate::server::{AppState, replicas};
use serde_json::json;
use std::sync::Arc;

/// After a restart: each request whose action may or may not have run (oncall stopped between
/// its `executing` record and its result) is announced once in its incident, with what to check
/// by hand. Returns how many were announced.
pub async fn announce_unknown_outcomes(st: &Arc<AppState>) -> Result<usize, StoreError> {
    use crate::desk::State;
    let mut n = 0;
    replicas::sync(st).await?;
    for e in st.desk.entries() {
        let State::OutcomeUnknown { verify, .. } = &e.state else {
            continue;
        };
        let events = st.store.events(&e.incident, 0, 100_000).await?;
        let told = events.iter().any(|ev| {
            ev.kind == EventKind::ActionOutcomeUnknown && ev.data["request"] == json!(e.request.id)
        });
        if told {
            continue;
        }
        st.publish(
            &e.incident,
            EventKind::ActionOutcomeUnknown,
            "oncall",
            json!({"request": e.request.id, "tool": e.request.tool, "verify": verify}),
        )
        .await?;
        n += 1;
    }
    Ok(n)
}

/// After a restart: every investigation this replica was running is marked interrupted, and
/// its executions cut in flight become `outcome_unknown` (as a live replica does for a dead one).
pub async fn mark_interrupted(st: &Arc<AppState>) -> Result<usize, StoreError> {
    let me = st.replica.clone();
    replicas::take_over(
        st,
        &me,
        "oncall stopped during this investigation; resume it to run it again",
    )
    .await
}
