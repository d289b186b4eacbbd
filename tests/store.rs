//! The incident store against a real PostgreSQL: the same contract the SQLite store keeps (its
//! unit test runs it too), two replicas numbering incidents and appending to one log at once,
//! and two oncall servers sharing one database, where a stream on one sees what the other does.

mod common;

use common::pg::Pg;
use common::server::{OPERATOR, start, stream_until};
use oncall::config::Config;
use oncall::incidents::{NewIncident, Store};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn database(pg: &Pg) -> String {
    pg.sql("postgres", "CREATE DATABASE incidents OWNER app");
    pg.url("app", "incidents")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_keeps_the_same_contract_as_sqlite() {
    let pg = Pg::start(50);
    let url = database(&pg);
    let store = oncall::incidents::open(&url).await.expect("open");
    oncall::incidents::contract::behaves(store.as_ref()).await;
    oncall::incidents::contract::shared_by_replicas(store.as_ref()).await;
    oncall::incidents::contract::concurrent_appends(store.clone()).await;
    // Opening again (a second replica starting) runs no migration twice.
    let again = oncall::incidents::open(&url).await.expect("reopen");
    assert_eq!(again.list(100).await.unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_number_incidents_and_append_without_collisions() {
    let pg = Pg::start(50);
    let url = database(&pg);
    let (a, b) = tokio::join!(oncall::incidents::open(&url), oncall::incidents::open(&url));
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (a.unwrap(), b.unwrap());
    let new = |who: &str| NewIncident {
        title: who.into(),
        source: "api".into(),
        actor: who.into(),
        report: json!({"text": who}),
        owner: Some(who.into()),
    };
    let mut tasks = vec![];
    for i in 0..10 {
        for s in [a.clone(), b.clone()] {
            let n = new(&format!("r{i}"));
            tasks.push(tokio::spawn(async move { s.create(n).await }));
        }
    }
    let mut ids = vec![];
    for t in tasks {
        ids.push(t.await.unwrap().expect("create").0.id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "every incident got its own number");
    let target = ids[0].clone();
    let mut tasks = vec![];
    for i in 0..30 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let id = target.clone();
        tasks.push(tokio::spawn(async move {
            s.append(
                &id,
                oncall::incidents::EventKind::Notice,
                "t",
                json!({"i": i}),
            )
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("append");
    }
    let seqs: Vec<i64> = a
        .events(&target, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (1..=31).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_share_incidents_live() {
    let pg = Pg::start(50);
    let url = database(&pg);
    let cfg = |replica: &str| {
        let mut c = Config::default();
        c.server.database_url = Some(url.clone());
        c.server.replica = Some(replica.into());
        c
    };
    let one = start(cfg("one")).await;
    let two = start(cfg("two")).await;
    // A token made on one replica works on the other.
    let t = one.token("ana", oncall::policy::Role::Responder).await;
    let (s, v) = two
        .post(
            &t,
            "/api/v1/incidents",
            json!({"report": "users see slow pages"}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    // The other replica streams the investigation the first one runs.
    let seen = stream_until(
        &one.base,
        &t,
        &id,
        None,
        "investigation_finished",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        seen.last().map(|(_, e)| e["kind"].clone()),
        Some(json!("investigation_finished"))
    );
    let (_, inc) = one.get(OPERATOR, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(inc["incident"]["owner"], "two");
    // The store being down is a clear 503, not a crash; it comes back with the database.
    drop(pg);
    let (s, v) = one.get(OPERATOR, "/api/v1/incidents").await;
    assert_eq!(s, 503, "{v}");
    assert!(v["error"].as_str().unwrap().contains("store"), "{v}");
    let (s, _) = one.get(OPERATOR, "/readyz").await;
    assert_eq!(s, 503);
}
