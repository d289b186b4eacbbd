//! The behaviour both store backends must have: the SQLite unit test and the PostgreSQL
//! integration test (`tests/store.rs`) run it. Test support, not API.

use super::*;
use serde_json::json;

pub async fn behaves(store: &dyn Store) {
    let (inc, first) = store
        .create(NewIncident {
            title: "checkout slow".into(),
            source: "api".into(),
            actor: "ana".into(),
            report: json!({"text": "checkout slow"}),
            owner: Some("r1".into()),
        })
        .await
        .expect("create");
    assert_eq!(first.seq, 1);
    assert_eq!(first.kind, EventKind::Report);
    assert_eq!(inc.status, Status::Investigating);
    assert!(inc.id.len() == 13, "{}", inc.id);
    let (second, _) = store
        .create(NewIncident {
            title: "second".into(),
            source: "web".into(),
            actor: "bo".into(),
            report: json!({"text": "x"}),
            owner: None,
        })
        .await
        .expect("create 2");
    assert_ne!(inc.id, second.id);
    for i in 0..5 {
        let e = store
            .append(&inc.id, EventKind::Notice, "oncall", json!({"i": i}))
            .await
            .expect("append");
        assert_eq!(e.seq, i + 2);
    }
    let after = store.events(&inc.id, 3, 100).await.expect("events");
    assert_eq!(
        after.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![4, 5, 6]
    );
    assert_eq!(after[0].data, json!({"i": 2}));
    assert!(matches!(
        store
            .append("1999-01-01-01", EventKind::Notice, "y", json!({}))
            .await,
        Err(StoreError::NoSuchIncident(_))
    ));
    assert_eq!(
        store
            .owned("r1", Status::Investigating)
            .await
            .expect("owned")[0]
            .id,
        inc.id
    );
    store
        .set_status(&inc.id, Status::Waiting, Some("P1"), None)
        .await
        .expect("status");
    let got = store.incident(&inc.id).await.expect("get").expect("some");
    assert_eq!(got.status, Status::Waiting);
    assert_eq!(got.severity, "P1");
    assert!(
        store
            .owned("r1", Status::Investigating)
            .await
            .expect("owned")
            .is_empty()
    );
    let last = store.events(&inc.id, 0, 100).await.expect("events");
    assert_eq!(
        last.last().map(|e| &e.kind),
        Some(&EventKind::StatusChanged)
    );
    let list = store.list(10).await.expect("list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, second.id, "newest first");
    store
        .set_slack_thread(&second.id, "C1/1700000000.000100")
        .await
        .expect("thread");
    assert_eq!(
        store
            .by_slack_thread("C1/1700000000.000100")
            .await
            .expect("by thread")
            .map(|i| i.id),
        Some(second.id.clone())
    );
    assert_eq!(store.token_count().await.expect("count"), 0);
    store
        .put_token("ana", crate::policy::Role::Approver, "ab12")
        .await
        .expect("put");
    store
        .put_token("ana", crate::policy::Role::Viewer, "cd34")
        .await
        .expect("replace");
    assert!(store.token("ab12").await.expect("token").is_none());
    assert_eq!(
        store.token("cd34").await.expect("token"),
        Some(TokenHolder {
            name: "ana".into(),
            grant: Grant::Person(crate::policy::Role::Viewer)
        })
    );
    // An ingest token is stored and read back as one, never as a person's role.
    store
        .put_grant("otel", Grant::Ingest, "ef56")
        .await
        .expect("put ingest");
    assert_eq!(
        store.token("ef56").await.expect("token"),
        Some(TokenHolder {
            name: "otel".into(),
            grant: Grant::Ingest
        })
    );
    store.ping().await.expect("ping");
    // Memory rows: one per (incident, embedder), replaced in place, oldest first.
    assert!(store.memory_rows().await.expect("rows").is_empty());
    let row = |embedder: &str, vector: &str, secs: i64| MemoryRow {
        incident: inc.id.clone(),
        embedder: embedder.into(),
        doc: "{\"cause\": \"lock\"}".into(),
        vector: vector.into(),
        created_at: DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("time"),
    };
    store.memory_put(&row("e1", "00", 0)).await.expect("put");
    store.memory_put(&row("e2", "11", 1)).await.expect("put");
    store
        .memory_put(&row("e1", "22", 2))
        .await
        .expect("replace");
    let rows = store.memory_rows().await.expect("rows");
    assert_eq!(rows, vec![row("e2", "11", 1), row("e1", "22", 2)]);
}

/// What replicas share: approvals move once, one in flight per incident, keys are seen
/// once until they expire, heartbeats, and an investigation is interrupted once.
pub async fn shared_by_replicas(store: &dyn Store) {
    let (inc, _) = store
        .create(NewIncident {
            title: "shared".into(),
            source: "api".into(),
            actor: "ana".into(),
            report: json!({"text": "shared"}),
            owner: Some("r1".into()),
        })
        .await
        .expect("create");
    let row = |id: &str| ApprovalRow {
        id: id.into(),
        incident: inc.id.clone(),
        request: json!({"tool": "t.live", "args": {"pid": 7}}),
        created_at: DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
        phase: "pending".into(),
        state: json!({"state": "pending"}),
        approval: None,
        replica: None,
        in_flight: false,
    };
    assert!(store.approval_put(&row("q1")).await.expect("put"));
    assert!(!store.approval_put(&row("q1")).await.expect("put again"));
    assert!(store.approval_put(&row("q2")).await.expect("put"));
    let to = |phase: &str, in_flight: bool| ApprovalMove {
        phase: phase.into(),
        state: json!({"state": phase}),
        approval: (phase == "approved").then(|| json!({"approved_by": "bo"})),
        replica: in_flight.then(|| "r2".to_string()),
        in_flight,
    };
    for q in ["q1", "q2"] {
        assert_eq!(
            store
                .approval_move(q, &["pending"], &to("approved", false))
                .await
                .expect("move"),
            Moved::Moved
        );
    }
    assert_eq!(
        store
            .approval_move("q1", &["pending"], &to("denied", false))
            .await
            .expect("move"),
        Moved::Stale(Some("approved".into())),
        "a decided request is not decided again"
    );
    assert_eq!(
        store
            .approval_move("nope", &["pending"], &to("denied", false))
            .await
            .expect("move"),
        Moved::Stale(None)
    );
    assert_eq!(
        store
            .approval_move("q1", &["approved"], &to("executing", true))
            .await
            .expect("claim"),
        Moved::Moved
    );
    assert_eq!(
        store
            .approval_move("q1", &["approved"], &to("executing", true))
            .await
            .expect("claim again"),
        Moved::Stale(Some("executing".into())),
        "a request is claimed once"
    );
    assert_eq!(
        store
            .approval_move("q2", &["approved"], &to("executing", true))
            .await
            .expect("claim"),
        Moved::Busy("q1".into()),
        "one action in flight per incident"
    );
    store.approval_release("q1").await.expect("release");
    assert_eq!(
        store
            .approval_move("q2", &["approved"], &to("executing", true))
            .await
            .expect("claim"),
        Moved::Moved
    );
    let rows = store.approval_rows().await.expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].phase, "executing");
    assert!(!rows[0].in_flight && rows[1].in_flight);
    assert_eq!(rows[1].replica.as_deref(), Some("r2"));
    assert_eq!(rows[1].approval, Some(json!({"approved_by": "bo"})));
    assert_eq!(rows[1].request, row("q2").request);
    // Seen keys: once within their time, again after it.
    assert!(store.seen_first("k1", 60).await.expect("seen"));
    assert!(!store.seen_first("k1", 60).await.expect("seen"));
    assert!(store.seen_first("k2", 1).await.expect("seen"));
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert!(store.seen_purge().await.expect("purge") >= 1);
    assert!(store.seen_first("k2", 60).await.expect("seen after expiry"));
    assert!(!store.seen_first("k1", 60).await.expect("still remembered"));
    store.seen_forget("k1").await.expect("forget");
    assert!(
        store
            .seen_first("k1", 60)
            .await
            .expect("seen after forgetting")
    );
    // Heartbeats.
    let beat = ReplicaRow {
        name: "r1".into(),
        heartbeat: 100,
        audit_file: Some("/a".into()),
        audit_seq: 3,
        audit_head: Some("abc".into()),
    };
    store.heartbeat(&beat).await.expect("beat");
    store
        .heartbeat(&ReplicaRow {
            heartbeat: 200,
            ..beat.clone()
        })
        .await
        .expect("beat");
    assert_eq!(
        store.replicas().await.expect("replicas"),
        vec![ReplicaRow {
            heartbeat: 200,
            ..beat
        }]
    );
    // Interrupted once, and only under its owner.
    assert!(
        !store
            .interrupt(&inc.id, "r9", "dead", "r2")
            .await
            .expect("not its owner")
    );
    assert!(
        store
            .interrupt(&inc.id, "r1", "dead", "r2")
            .await
            .expect("interrupt")
    );
    assert!(
        !store
            .interrupt(&inc.id, "r1", "dead", "r3")
            .await
            .expect("once")
    );
    let got = store.incident(&inc.id).await.expect("get").expect("some");
    assert_eq!(got.status, Status::Interrupted);
    let kinds: Vec<EventKind> = store
        .events(&inc.id, 0, 100)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::Report,
            EventKind::Interrupted,
            EventKind::StatusChanged
        ]
    );
}

/// Concurrent appends to one incident get distinct, gapless sequence numbers.
pub async fn concurrent_appends(store: Arc<dyn Store>) {
    let (inc, _) = store
        .create(NewIncident {
            title: "t".into(),
            source: "api".into(),
            actor: "a".into(),
            report: json!({}),
            owner: None,
        })
        .await
        .expect("create");
    let mut tasks = vec![];
    for i in 0..40 {
        let s = store.clone();
        let id = inc.id.clone();
        tasks.push(tokio::spawn(async move {
            s.append(&id, EventKind::Notice, "t", json!({"i": i})).await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("append");
    }
    let seqs: Vec<i64> = store
        .events(&inc.id, 0, 1000)
        .await
        .expect("events")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (1..=41).collect::<Vec<_>>());
}
