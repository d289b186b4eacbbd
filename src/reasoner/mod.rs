//! The offline reasoner: a [`ChatModel`] made of rules. It needs no network and no key, and it
//! works through exactly the interface a model uses: it asks for the same tools, reads their
//! fenced answers from the conversation, proposes hypotheses on the board, cites the tool call
//! that decides each, and concludes. So the loop, the board's rules and the token accounting
//! are the same whichever reasoner runs.
//!
//! It is stateless: each turn it reads the conversation and takes the next step of the protocol
//! (measure, propose, cite, conclude). Rules live per area: [`host`], [`postgres`], [`traces`],
//! [`fleet`], [`changes`].
//!
//! It is a peer of the model transport in [`crate::llm`], behind the same [`ChatModel`] trait:
//! it never calls a collector, it reads tool outputs from the conversation as data (through the
//! tools' published output types).

pub mod changes;
pub mod fleet;
pub mod host;
pub mod postgres;
pub mod traces;

use crate::agent::board_tools::{CONCLUDE, EVIDENCE, PROPOSE};
use crate::agent::evidence::{SeenCall, transcript};
use crate::agent::triage::{ReportHints, read_report};
use crate::collectors::host::UseSnapshot;
use crate::config::Thresholds;
use crate::llm::{ChatModel, ChatReply, ChatRequest, LlmError, Role, ToolCallRequest};
use crate::taxonomy::Category;
use async_trait::async_trait;
use serde_json::{Value, json};

/// Investigates `report` with `model`, this offline reasoner standing by: if the model endpoint
/// fails, the reasoner answers instead and the log says why. With `model` itself offline, no
/// fallback is needed.
pub async fn investigate(
    report: &str,
    registry: &crate::registry::Registry,
    config: &crate::config::Config,
    model: &dyn ChatModel,
    events: &dyn crate::agent::events::EventSink,
) -> Result<crate::agent::Investigation, crate::agent::AgentError> {
    let offline = OfflineModel::new(config.thresholds.clone());
    crate::agent::investigate(report, registry, config, model, &offline, events).await
}

/// A citation of one tool call for or against a hypothesis.
#[derive(Debug, Clone, PartialEq)]
pub struct Citation {
    pub call: String,
    pub supports: bool,
    pub strength: crate::agent::board::Strength,
    pub note: String,
}

pub fn cite(
    call: &str,
    supports: bool,
    strength: crate::agent::board::Strength,
    note: impl Into<String>,
) -> Citation {
    Citation {
        call: call.to_string(),
        supports,
        strength,
        note: note.into(),
    }
}

/// What a rule concluded about one hypothesis: how to state it, what it blames, and the calls
/// that decide it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub statement: String,
    pub component: String,
    pub culprit: Option<crate::agent::board::Culprit>,
    pub citations: Vec<Citation>,
}

impl Finding {
    /// A hypothesis that the answer of `call` rules out: stated as the hypothesis, blaming
    /// nothing, with that answer cited strongly against it.
    pub fn ruled_out(
        statement: impl Into<String>,
        component: impl Into<String>,
        call: &str,
        note: impl Into<String>,
    ) -> Finding {
        Finding {
            statement: statement.into(),
            component: component.into(),
            culprit: None,
            citations: vec![cite(
                call,
                false,
                crate::agent::board::Strength::Strong,
                note,
            )],
        }
    }
}

/// The host categories in the order the USE sweep checks them, with the report's suspects first.
pub fn host_order(hints: &ReportHints) -> Vec<Category> {
    let mut order: Vec<Category> = hints
        .suspects
        .iter()
        .copied()
        .filter(|c| host::COVERS.contains(c))
        .collect();
    for c in host::COVERS {
        if !order.contains(&c) {
            order.push(c);
        }
    }
    order
}

/// The incident-memory tool.
const MEMORY: &str = "memory.similar";
/// The fleet tools (offered when Prometheus is configured).
const FLEET_USE: &str = "fleet.use_by_instance";
const FLEET_RED: &str = "fleet.red_by_service";

/// What the fleet tools answered.
fn fleet_evidence(seen: &[SeenCall]) -> fleet::FleetEvidence {
    let mut e = fleet::FleetEvidence::default();
    for c in seen {
        let Some(f) = c.result.as_ref().filter(|f| f.status == "ok") else {
            continue;
        };
        let v = serde_json::from_str::<Value>(&f.body)
            .ok()
            .map(|v| (f.call.clone(), v));
        match c.name.as_str() {
            FLEET_USE => e.instances = v,
            FLEET_RED => e.services = v,
            _ => {}
        }
    }
    e
}

/// The built-in reasoner.
pub struct OfflineModel {
    thresholds: Thresholds,
}

impl OfflineModel {
    pub fn new(thresholds: Thresholds) -> OfflineModel {
        OfflineModel { thresholds }
    }
}

fn report_of(req: &ChatRequest) -> String {
    req.messages
        .iter()
        .filter(|m| m.role == Role::User)
        .find_map(|m| {
            let c = m.content.as_deref()?;
            let start = c.find("<report>")? + "<report>".len();
            let end = c[start..].find("</report>")? + start;
            Some(c[start..end].trim().to_string())
        })
        .unwrap_or_default()
}

fn calls_named<'a>(seen: &'a [SeenCall], name: &str) -> Vec<&'a SeenCall> {
    seen.iter().filter(|c| c.name == name).collect()
}

fn reply(content: Option<String>, calls: Vec<(&str, Value)>, seen: usize) -> ChatReply {
    ChatReply {
        content,
        tool_calls: calls
            .into_iter()
            .enumerate()
            .map(|(i, (name, args))| ToolCallRequest {
                id: format!("offline-{}", seen + i + 1),
                name: name.to_string(),
                arguments: args.to_string(),
            })
            .collect(),
        usage: None,
        finish_reason: Some("tool_calls".into()),
    }
}

/// The snapshot (and the id of the call that took it), or why there is none.
fn snapshot_of(seen: &[SeenCall]) -> Result<(String, UseSnapshot), String> {
    let call = seen
        .iter()
        .rev()
        .find(|c| c.name == "host.use_snapshot")
        .ok_or("host.use_snapshot was not called")?;
    let f = call
        .result
        .as_ref()
        .ok_or("host.use_snapshot has not answered")?;
    if f.status != "ok" {
        return Err(format!("host.use_snapshot failed: {}", f.body));
    }
    let snap = crate::agent::evidence::read_snapshot(&f.body)
        .map_err(|e| format!("the snapshot could not be read: {e}"))?;
    Ok((f.call.clone(), snap))
}

/// Databases offered through the postgres tools' `database` enum.
fn offered_databases(req: &ChatRequest) -> Vec<String> {
    req.tools
        .iter()
        .find(|t| t.name == "postgres.top_queries")
        .and_then(|t| t.parameters.pointer("/properties/database/enum"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

const DB_TOOLS: [&str; 4] = [
    "postgres.top_queries",
    "postgres.activity",
    "postgres.blocking",
    "postgres.connections",
];

/// What the postgres tools said about one database, read from the conversation.
fn db_evidence(seen: &[SeenCall], db: &str) -> postgres::DbEvidence {
    let mut e = postgres::DbEvidence {
        database: db.to_string(),
        ..Default::default()
    };
    for c in seen {
        let Some(f) = c.result.as_ref().filter(|f| f.status == "ok") else {
            continue;
        };
        let args: Value = serde_json::from_str(&c.arguments).unwrap_or(Value::Null);
        if args
            .get("database")
            .and_then(Value::as_str)
            .is_some_and(|d| d != db)
        {
            continue;
        }
        match c.name.as_str() {
            "postgres.top_queries" => e.top_queries = postgres::parse(&f.call, &f.body),
            "postgres.activity" => e.activity = postgres::parse(&f.call, &f.body),
            "postgres.blocking" => e.blocking = postgres::parse(&f.call, &f.body),
            "postgres.connections" => e.connections = postgres::parse(&f.call, &f.body),
            "postgres.explain" => e.explain = postgres::parse(&f.call, &f.body),
            "postgres.table_stats" => e.tables = postgres::parse(&f.call, &f.body),
            _ => {}
        }
    }
    e
}

/// What one hypothesis is about.
#[derive(Debug, Clone, PartialEq)]
enum Subject {
    Host(Category),
    Db(Category, String),
    Traces(Category),
    /// A recent change blamed for what the other subjects found.
    Change(Category),
    /// The fleet through Prometheus (instances or services).
    Fleet(Category),
}

impl Subject {
    fn category(&self) -> Category {
        match self {
            Subject::Host(c)
            | Subject::Db(c, _)
            | Subject::Traces(c)
            | Subject::Change(c)
            | Subject::Fleet(c) => *c,
        }
    }

    /// Reads a proposal back: the component says which kind of subject it was.
    fn of(category: Category, component: &str) -> Subject {
        if matches!(
            category,
            Category::ChangeBadDeploy | Category::ChangeBadConfig
        ) {
            Subject::Change(category)
        } else if component.starts_with("instance") || component.starts_with("fleet-service") {
            Subject::Fleet(category)
        } else if let Some(db) = component.strip_prefix("postgres:") {
            Subject::Db(category, db.to_string())
        } else if component == "traces" || component.starts_with("service:") {
            Subject::Traces(category)
        } else {
            Subject::Host(category)
        }
    }
}

/// The subjects in the order the report suggests.
fn subjects(
    hints: &ReportHints,
    report: &str,
    dbs: &[postgres::DbEvidence],
    tr: Option<&traces::TraceEvidence>,
    fleet: Option<&fleet::FleetEvidence>,
) -> Vec<Subject> {
    // With Prometheus, the fleet is swept instead of this host.
    let host: Vec<Subject> = match fleet {
        Some(_) => host_order(hints)
            .into_iter()
            .filter(|c| fleet::COVERS.contains(c))
            .chain([Category::AppErrorSpike])
            .map(Subject::Fleet)
            .collect(),
        None => host_order(hints).into_iter().map(Subject::Host).collect(),
    };
    let mut db: Vec<Subject> = vec![];
    for e in dbs {
        if postgres::unreachable(e).is_some() {
            db.push(Subject::Db(Category::DependencyErrors, e.database.clone()));
        }
        for c in postgres::COVERS {
            db.push(Subject::Db(c, e.database.clone()));
        }
    }
    let low = report.to_lowercase();
    let db_first = [
        "db",
        "database",
        "postgres",
        "sql",
        "query",
        "queries",
        "lock",
        "deadlock",
        "connection",
        "transaction",
    ]
    .iter()
    .any(|w| {
        low.split(|c: char| !c.is_alphanumeric())
            .any(|x| x == *w || x == format!("{w}s"))
    });
    // Requests that are slow or failing are what traces see first.
    let mut out: Vec<Subject> = match tr {
        Some(t) => traces::COVERS
            .into_iter()
            .filter(|c| traces::applies(*c, t))
            .map(Subject::Traces)
            .collect(),
        None => vec![],
    };
    if db_first {
        out.extend(db);
        out.extend(host);
    } else {
        out.extend(host);
        out.extend(db);
    }
    out
}

/// What the rules conclude for one subject: the proposal's fields and the citations.
struct Judged {
    statement: String,
    component: String,
    culprit: Option<String>,
    citations: Vec<(String, bool, crate::agent::board::Strength, String)>,
}

fn culprit_text(c: Option<crate::agent::board::Culprit>) -> Option<String> {
    c.map(|c| match c.pid {
        Some(p) => format!("{} (pid {p})", c.name),
        None => c.name,
    })
}

fn judge(
    subject: &Subject,
    snapshot: &Result<(String, UseSnapshot), String>,
    dbs: &[postgres::DbEvidence],
    tr: Option<&traces::TraceEvidence>,
    fl: Option<&fleet::FleetEvidence>,
    th: &Thresholds,
    report: &host::Report<'_>,
) -> Judged {
    let untested = |title: &str, component: String, why: String| Judged {
        statement: format!("{title} (untested: {why})"),
        component,
        culprit: None,
        citations: vec![],
    };
    let cited = |v: Vec<Citation>| {
        v.into_iter()
            .map(|c| (c.call, c.supports, c.strength, c.note))
            .collect()
    };
    match subject {
        Subject::Host(category) => {
            let title = host::title(*category);
            match snapshot {
                Ok((call, s)) => match host::judge(*category, s, th, report) {
                    // A rejected hypothesis is still stated as the hypothesis, not its negation.
                    Ok(v) => Judged {
                        statement: if v.supports {
                            v.statement
                        } else {
                            title.to_string()
                        },
                        component: v.component,
                        culprit: culprit_text(v.culprit),
                        citations: vec![(call.clone(), v.supports, v.strength, v.note)],
                    },
                    Err(why) => untested(title, "host".into(), why),
                },
                Err(why) => untested(title, "host".into(), why.clone()),
            }
        }
        Subject::Db(category, db) => {
            let e = dbs.iter().find(|e| &e.database == db);
            let component = format!("postgres:{db}");
            match (category, e) {
                (Category::DependencyErrors, Some(e)) => match postgres::unreachable(e) {
                    Some((call, why)) => Judged {
                        statement: format!("Database {db} cannot be reached: {why}"),
                        component,
                        culprit: Some(db.clone()),
                        citations: vec![(call, true, crate::agent::board::Strength::Strong, why)],
                    },
                    None => untested("Database unreachable", component, "it answered".into()),
                },
                (c, Some(e)) => match postgres::judge(*c, e, th) {
                    Ok(v) => Judged {
                        statement: v.statement,
                        component: v.component,
                        culprit: culprit_text(v.culprit),
                        citations: cited(v.citations),
                    },
                    Err(why) => untested(
                        &c.label().replace("db.", "database ").replace('_', " "),
                        component,
                        why,
                    ),
                },
                (c, None) => untested(c.label(), component, "no answers from this database".into()),
            }
        }
        Subject::Change(category) => untested(
            category.label(),
            "changes".into(),
            "judged against the other subjects".into(),
        ),
        Subject::Fleet(category) => match fl.map(|f| fleet::judge(*category, f)) {
            Some(Ok(v)) => Judged {
                statement: v.statement,
                component: v.component,
                culprit: culprit_text(v.culprit),
                citations: cited(v.citations),
            },
            Some(Err(why)) => untested(fleet::statement_of(*category), "instances".into(), why),
            None => untested(
                fleet::statement_of(*category),
                "instances".into(),
                "no fleet tools here".into(),
            ),
        },
        Subject::Traces(category) => match tr.map(|t| traces::judge(*category, t, th)) {
            Some(Ok(v)) => Judged {
                statement: v.statement,
                component: v.component,
                culprit: culprit_text(v.culprit),
                citations: cited(v.citations),
            },
            Some(Err(why)) => untested(category.label(), "traces".into(), why),
            None => untested(
                category.label(),
                "traces".into(),
                "no traces tools here".into(),
            ),
        },
    }
}

/// Database servers: when one of them is what keeps the CPU busy, the statements it runs are
/// the explanation, not the CPU.
const DB_SERVERS: [&str; 8] = [
    "postgres",
    "postmaster",
    "mysqld",
    "mariadbd",
    "mongod",
    "redis-server",
    "clickhouse-server",
    "sqlservr",
];

/// Ranks a database's own finding above the host saturation it causes: when the CPU is busy
/// with a database server's processes and a statement of that database is measured as taking
/// its time (`db.slow_query`, supported), the CPU hypothesis leans instead of settling and says
/// where its load comes from, and the host measurement corroborates the statement's hypothesis.
fn explain_by_database(judged: &mut [(Subject, Judged)]) {
    use crate::agent::board::Strength;
    let Some(q) = judged.iter().position(|(s, j)| {
        matches!(s, Subject::Db(Category::DbSlowQuery, _)) && j.citations.iter().any(|c| c.1)
    }) else {
        return;
    };
    let Some(h) = judged.iter().position(|(s, j)| {
        *s == Subject::Host(Category::HostCpuSaturation)
            && j.culprit
                .as_deref()
                .is_some_and(|c| DB_SERVERS.contains(&c.split([' ', ':']).next().unwrap_or(c)))
            && j.citations.iter().any(|c| c.1)
    }) else {
        return;
    };
    let db = match &judged[q].0 {
        Subject::Db(_, db) => db.clone(),
        _ => return,
    };
    let who = judged[h].1.culprit.clone().unwrap_or_default();
    let mut host_calls = vec![];
    for c in judged[h].1.citations.iter_mut().filter(|c| c.1) {
        if c.2 == Strength::Strong {
            c.2 = Strength::Moderate;
        }
        c.3 = format!(
            "{}; the CPU goes to the database server ({who}) running the statement that takes postgres:{db}'s time (the db.slow_query hypothesis): a symptom of that statement",
            c.3
        );
        host_calls.push(c.0.clone());
    }
    let q = &mut judged[q].1;
    for call in host_calls {
        if !q.citations.iter().any(|c| c.0 == call) {
            q.citations.push((
                call,
                true,
                Strength::Moderate,
                format!("the host's CPU is saturated by the database server ({who}): the statement's cost shows on the host"),
            ));
        }
    }
}

/// The change log's tool.
const CHANGES: &str = "changes.recent";

/// The suspect change judged against what the other subjects found, if there is one.
fn change_judged(
    seen: &[SeenCall],
    judged: &[(Subject, Judged)],
    th: &Thresholds,
) -> Option<(Subject, Judged)> {
    let f = seen
        .iter()
        .rev()
        .find(|c| c.name == CHANGES)?
        .result
        .as_ref()
        .filter(|f| f.status == "ok")?;
    let answer: crate::collectors::changes::ChangesAnswer = serde_json::from_str(&f.body).ok()?;
    let symptoms: Vec<changes::Symptom> = judged
        .iter()
        .map(|(_, j)| changes::Symptom {
            statement: &j.statement,
            component: &j.component,
            culprit: j.culprit.as_deref(),
            citations: j
                .citations
                .iter()
                .map(|c| (c.0.as_str(), c.1, c.2))
                .collect(),
        })
        .collect();
    let v = changes::judge(&f.call, &answer, &symptoms, th)?;
    Some((
        Subject::Change(v.category),
        Judged {
            statement: v.statement,
            component: v.component,
            culprit: Some(v.culprit),
            citations: v.citations,
        },
    ))
}

/// What the traces tools said, read from the conversation; None when they were not offered.
fn trace_evidence(seen: &[SeenCall], offered: bool) -> Option<traces::TraceEvidence> {
    if !offered {
        return None;
    }
    let mut e = traces::TraceEvidence::default();
    for c in seen {
        let Some(f) = c.result.as_ref().filter(|f| f.status == "ok") else {
            continue;
        };
        match c.name.as_str() {
            "traces.red" => {
                e.red = serde_json::from_str(&f.body)
                    .ok()
                    .map(|v| (f.call.clone(), v))
            }
            "traces.critical_path" => {
                e.path = serde_json::from_str(&f.body)
                    .ok()
                    .map(|v| (f.call.clone(), v))
            }
            "traces.errors" => {
                e.errors = serde_json::from_str(&f.body)
                    .ok()
                    .map(|v| (f.call.clone(), v))
            }
            _ => {}
        }
    }
    Some(e)
}

#[async_trait]
impl ChatModel for OfflineModel {
    fn name(&self) -> String {
        "offline".into()
    }

    fn is_offline(&self) -> bool {
        true
    }

    async fn complete(&self, req: &ChatRequest) -> Result<ChatReply, LlmError> {
        let seen = transcript(&req.messages);
        let n = seen.len();
        let report = report_of(req);
        let hints = read_report(&report);
        let th = &self.thresholds;
        let proposals = calls_named(&seen, PROPOSE);
        let summary = || conclusion(&seen, th.confidence);
        if req.tools.is_empty() {
            return Ok(ChatReply {
                content: Some(summary().0),
                ..Default::default()
            });
        }
        let databases = offered_databases(req);
        let traces_offered = req.tools.iter().any(|t| t.name == "traces.critical_path");
        let changes_offered = req.tools.iter().any(|t| t.name == CHANGES);
        let fleet_offered = req.tools.iter().any(|t| t.name == FLEET_USE);
        // 1. Measure: the USE sweep of this host (or of the fleet through Prometheus), and each
        // database's own views, in parallel.
        if calls_named(&seen, "host.use_snapshot").is_empty()
            && calls_named(&seen, FLEET_USE).is_empty()
        {
            let mut calls = if fleet_offered {
                vec![(FLEET_USE, json!({})), (FLEET_RED, json!({}))]
            } else {
                vec![("host.use_snapshot", json!({}))]
            };
            for db in &databases {
                calls.extend(DB_TOOLS.iter().map(|t| (*t, json!({"database": db}))));
            }
            if traces_offered {
                calls.extend(
                    ["traces.red", "traces.critical_path", "traces.errors"].map(|t| (t, json!({}))),
                );
            }
            if changes_offered {
                calls.push((CHANGES, json!({"since_minutes": 180})));
            }
            return Ok(reply(None, calls, n));
        }
        let snapshot = snapshot_of(&seen);
        let dbs: Vec<postgres::DbEvidence> =
            databases.iter().map(|d| db_evidence(&seen, d)).collect();
        // 2. Drill down once: the plan and the tables of a statement that dominates.
        if proposals.is_empty() && calls_named(&seen, "postgres.explain").is_empty() {
            let mut calls = vec![];
            for e in &dbs {
                if let Some(q) = e
                    .top_queries
                    .as_ref()
                    .and_then(|(_, a)| a.data.as_ref())
                    .and_then(|t| postgres::suspect(t, th))
                {
                    calls.push((
                        "postgres.explain",
                        json!({"database": e.database, "queryid": q.queryid}),
                    ));
                    calls.push(("postgres.table_stats", json!({"database": e.database, "tables": crate::collectors::postgres::tables_in(&q.query)})));
                }
            }
            if !calls.is_empty() {
                return Ok(reply(None, calls, n));
            }
        }
        let tr = trace_evidence(&seen, traces_offered);
        let fl = fleet_offered.then(|| fleet_evidence(&seen));
        let host_report = host::Report {
            text: &report,
            suspects: &hints.suspects,
        };
        let mut judged: Vec<(Subject, Judged)> =
            subjects(&hints, &report, &dbs, tr.as_ref(), fl.as_ref())
                .into_iter()
                .map(|s| {
                    let j = judge(
                        &s,
                        &snapshot,
                        &dbs,
                        tr.as_ref(),
                        fl.as_ref(),
                        th,
                        &host_report,
                    );
                    (s, j)
                })
                .collect();
        explain_by_database(&mut judged);
        if let Some(c) = change_judged(&seen, &judged, th) {
            judged.insert(0, c);
        }
        // 2b. Remember: past incidents like this one, searched with the report and what the
        // measurements found abnormal. A lead for the responder, never evidence on the board.
        if proposals.is_empty()
            && req.tools.iter().any(|t| t.name == MEMORY)
            && calls_named(&seen, MEMORY).is_empty()
        {
            let signals: Vec<String> = judged
                .iter()
                .filter(|(_, j)| j.citations.iter().any(|c| c.1))
                .take(4)
                .map(|(subject, j)| {
                    format!(
                        "{} {}: {}",
                        subject.category().label(),
                        j.component,
                        j.statement
                    )
                })
                .collect();
            let text = format!("{report}\n{}", signals.join("\n"));
            return Ok(reply(
                None,
                vec![(MEMORY, json!({"text": text, "limit": 3}))],
                n,
            ));
        }
        // 3. Hypothesize: one hypothesis per subject.
        if proposals.is_empty() {
            let calls = judged
                .iter()
                .map(|(subject, j)| {
                    (PROPOSE, json!({"statement": j.statement, "category": subject.category(), "component": j.component, "culprit": j.culprit}))
                })
                .collect();
            return Ok(reply(None, calls, n));
        }
        // 4. Cite: the calls that decide each hypothesis, for or against.
        if calls_named(&seen, EVIDENCE).is_empty() {
            let mut calls: Vec<(&str, Value)> = vec![];
            for p in &proposals {
                let (Some(args), Some(hyp)) = (
                    serde_json::from_str::<Value>(&p.arguments).ok(),
                    p.result
                        .as_ref()
                        .and_then(|r| serde_json::from_str::<Value>(&r.body).ok()),
                ) else {
                    continue;
                };
                let Some(category) = args
                    .get("category")
                    .and_then(|c| serde_json::from_value::<Category>(c.clone()).ok())
                else {
                    continue;
                };
                let subject = Subject::of(
                    category,
                    args.get("component").and_then(Value::as_str).unwrap_or(""),
                );
                let (Some(id), Some((_, j))) = (
                    hyp.get("hypothesis").cloned(),
                    judged.iter().find(|(s, _)| *s == subject),
                ) else {
                    continue;
                };
                for (call, supports, strength, note) in &j.citations {
                    calls.push((EVIDENCE, json!({"hypothesis": id, "call": call, "supports": supports, "strength": strength, "note": note})));
                }
            }
            if !calls.is_empty() {
                return Ok(reply(None, calls, n));
            }
        }
        // 5. Conclude.
        if calls_named(&seen, CONCLUDE).is_empty() {
            let (text, abstain) = summary();
            return Ok(reply(
                Some(text.clone()),
                vec![(CONCLUDE, json!({"summary": text, "abstain": abstain}))],
                n,
            ));
        }
        Ok(ChatReply {
            content: Some(summary().0),
            ..Default::default()
        })
    }
}

/// A summary from the board's answers in the conversation, and whether to abstain.
fn conclusion(seen: &[SeenCall], threshold: f64) -> (String, bool) {
    let statements: Vec<(String, String)> = calls_named(seen, PROPOSE)
        .iter()
        .filter_map(|p| {
            let args: Value = serde_json::from_str(&p.arguments).ok()?;
            let hyp: Value = serde_json::from_str(&p.result.as_ref()?.body).ok()?;
            Some((
                hyp.get("hypothesis")?.as_str()?.to_string(),
                args.get("statement")?.as_str()?.to_string(),
            ))
        })
        .collect();
    let mut best: Option<(f64, String, String)> = None;
    for e in calls_named(seen, EVIDENCE) {
        let Some(r) = e
            .result
            .as_ref()
            .and_then(|f| serde_json::from_str::<Value>(&f.body).ok())
        else {
            continue;
        };
        let (Some(id), Some(conf), Some(status)) = (
            r["hypothesis"].as_str(),
            r["confidence"].as_f64(),
            r["status"].as_str(),
        ) else {
            continue;
        };
        if conf >= threshold && best.as_ref().is_none_or(|b| conf > b.0) {
            best = Some((conf, id.to_string(), status.to_string()));
        }
    }
    match best {
        Some((conf, id, status)) => {
            let st = statements.iter().find(|(h, _)| *h == id).map(|(_, s)| s.as_str()).unwrap_or("");
            (format!("{id} is {status} at confidence {conf:.2}: {st}."), false)
        }
        None => ("No fault found on this host: every hypothesis was rejected or stayed below the confidence threshold.".into(), true),
    }
}
