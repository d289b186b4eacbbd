//! The subjects of the hypotheses (this host, a database, the traces, the fleet, a change), the
//! order they are swept in, and the rules' verdict on each.

use super::{CHANGES, Citation, changes, fleet, host, host_order, postgres, traces};
use crate::agent::evidence::SeenCall;
use crate::agent::triage::ReportHints;
use crate::collectors::outputs::UseSnapshot;
use crate::config::Thresholds;
use crate::taxonomy::Category;

/// What one hypothesis is about.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Subject {
    Host(Category),
    Db(Category, String),
    Traces(Category),
    /// A recent change blamed for what the other subjects found.
    Change(Category),
    /// The fleet through Prometheus (instances or services).
    Fleet(Category),
}

impl Subject {
    pub(super) fn category(&self) -> Category {
        match self {
            Subject::Host(c)
            | Subject::Db(c, _)
            | Subject::Traces(c)
            | Subject::Change(c)
            | Subject::Fleet(c) => *c,
        }
    }

    /// Reads a proposal back: the component says which kind of subject it was.
    pub(super) fn of(category: Category, component: &str) -> Subject {
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
pub(super) fn subjects(
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
pub(super) struct Judged {
    pub(super) statement: String,
    pub(super) component: String,
    pub(super) culprit: Option<String>,
    pub(super) citations: Vec<(String, bool, crate::agent::board::Strength, String)>,
}

fn culprit_text(c: Option<crate::agent::board::Culprit>) -> Option<String> {
    c.map(|c| match c.pid {
        Some(p) => format!("{} (pid {p})", c.name),
        None => c.name,
    })
}

pub(super) fn judge(
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
pub(super) fn explain_by_database(judged: &mut [(Subject, Judged)]) {
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

/// The suspect change judged against what the other subjects found, if there is one.
pub(super) fn change_judged(
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
    let answer: crate::collectors::outputs::ChangesAnswer = serde_json::from_str(&f.body).ok()?;
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
