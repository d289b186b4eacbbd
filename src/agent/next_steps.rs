//! Next steps from the protocol's decision table: what to run next, with exact commands for the
//! culprit, and what to stabilize first when users are affected. Only suggestions: nothing here
//! runs anything.

use super::board::{Hypothesis, HypothesisStatus};
use super::triage::{Impact, ReportHints};
use crate::taxonomy::Category;
use serde::{Deserialize, Serialize};

/// One step: why, and the commands to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextStep {
    pub why: String,
    pub commands: Vec<String>,
}

/// A stabilizing action oncall proposes. It needs a human approver; oncall never runs it alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposedAction {
    /// A registered tool (live_action class) or `manual` for a step only a person can take.
    pub tool: String,
    pub args: serde_json::Value,
    pub why: String,
    pub needs_approval: bool,
}

impl ProposedAction {
    /// One line for a person: the step itself when only a person can take it, else the request
    /// to file (`request deploy.rollback {...}: why`).
    pub fn line(&self) -> String {
        if self.tool == "manual" {
            self.why.clone()
        } else {
            format!("request {} {}: {}", self.tool, self.args, self.why)
        }
    }
}

fn step(why: impl Into<String>, commands: &[String]) -> NextStep {
    NextStep {
        why: why.into(),
        commands: commands.to_vec(),
    }
}

fn pid_of(h: &Hypothesis) -> Option<u32> {
    h.culprit.as_ref().and_then(|c| c.pid)
}

/// The runtime a process name suggests, for the heap-snapshot advice.
fn heap_diff_for(name: &str, pid: u32) -> Vec<String> {
    let n = name.to_lowercase();
    if n.contains("python") || n.contains("gunicorn") || n.contains("uwsgi") || n.contains("celery")
    {
        vec![
            "# Python: tracemalloc snapshots at T0 and T1, then the diff".into(),
            "import tracemalloc; tracemalloc.start(); snap1 = tracemalloc.take_snapshot()  # T0".into(),
            "snap2 = tracemalloc.take_snapshot(); [print(s) for s in snap2.compare_to(snap1, 'lineno')[:10]]  # T1".into(),
        ]
    } else if n.contains("node") {
        vec![
            format!("kill -USR1 {pid}  # opens the inspector; or restart with node --inspect"),
            "# Chrome devtools -> Memory -> heap snapshot at T0 and T1 -> Comparison view -> grow-only objects".into(),
        ]
    } else if n.contains("java") {
        vec![
            format!(
                "jcmd {pid} GC.class_histogram > histo-T0.txt; sleep 60; jcmd {pid} GC.class_histogram > histo-T1.txt"
            ),
            "diff histo-T0.txt histo-T1.txt | head -40".into(),
        ]
    } else {
        vec![
            format!(
                "cat /proc/{pid}/smaps_rollup > smaps-T0.txt; sleep 60; cat /proc/{pid}/smaps_rollup > smaps-T1.txt; diff smaps-T0.txt smaps-T1.txt"
            ),
            format!("pmap -x {pid} | sort -k3 -n | tail -15  # the mappings that grow"),
            "# then a heap snapshot at T0 and T1 with the runtime's own tool and their diff".into(),
        ]
    }
}

/// Next steps for the top finding and for the report's own hints.
pub fn next_steps(hints: &ReportHints, findings: &[Hypothesis]) -> Vec<NextStep> {
    let mut steps = vec![];
    if let Some(top) = findings.first() {
        let culprit = top
            .culprit
            .as_ref()
            .map(|c| c.name.as_str())
            .unwrap_or("the process");
        match (top.category, pid_of(top)) {
            (Category::HostCpuSaturation, Some(pid)) => steps.push(step(
                format!("Latency / CPU: an on-CPU flame graph of {culprit} (pid {pid}) shows where its cycles go"),
                &[
                    format!("perf record -F 99 -p {pid} -g -- sleep 30"),
                    "perf script | stackcollapse-perf.pl | flamegraph.pl > flame.svg".into(),
                    format!("pidstat -t -p {pid} 1 5  # which threads are hot"),
                ],
            )),
            (Category::HostCpuSaturation, None) => steps.push(step(
                "CPU saturation without one dominant process: see who runs, and the whole-system flame graph",
                &["pidstat 1 5".into(), "perf record -F 99 -a -g -- sleep 30; perf script | stackcollapse-perf.pl | flamegraph.pl > flame.svg".into()],
            )),
            (Category::HostMemoryPressure, Some(pid)) => steps.push(step(
                format!("Memory growth: heap snapshots of {culprit} (pid {pid}) at T0 and T1, and their diff"),
                &heap_diff_for(culprit, pid),
            )),
            (Category::HostMemoryPressure, None) => steps.push(step(
                "Memory pressure: who holds memory, and whether the kernel is reclaiming or killing",
                &["ps aux --sort=-rss | head -15".into(), "vmstat 1 5".into(), "dmesg -T | grep -i -E 'oom|killed process' | tail".into()],
            )),
            (Category::HostDiskFull, _) => {
                let mount = top.component.trim_start_matches("fs:");
                steps.push(step(
                    format!("Disk full: find what fills {mount}, including deleted files still held open"),
                    &[
                        format!("du -xh --max-depth=2 {mount} 2>/dev/null | sort -h | tail -15"),
                        "lsof -nP +L1 2>/dev/null | head  # deleted but still open".into(),
                        format!("df -i {mount}  # inodes"),
                    ],
                ))
            }
            (Category::HostDiskIoSaturation, _) => {
                let dev = top.component.trim_start_matches("disk:");
                steps.push(step(
                    format!("Disk I/O saturation on {dev}: which processes do the I/O, and its latency over time"),
                    &[format!("iostat -xz 1 5 {dev}"), "pidstat -d 1 5".into(), "iotop -obn 3 2>/dev/null".into()],
                ))
            }
            (Category::HostNetworkErrors, _) => steps.push(step(
                "Network errors: per-interface errors over time and the TCP counters that moved",
                &["sar -n DEV,EDEV 1 5".into(), "nstat -az | grep -E 'Retrans|ListenOverflows|ListenDrops'".into(), "ss -s; ss -ltn  # listen queues".into()],
            )),
            (Category::HostFdExhaustion, Some(pid)) => steps.push(step(
                format!("File descriptors: what {culprit} (pid {pid}) keeps open, against its limit"),
                &[
                    format!("ls /proc/{pid}/fd | wc -l; prlimit --pid {pid} --nofile"),
                    format!("lsof -nP -p {pid} | awk '{{print $5}}' | sort | uniq -c | sort -n | tail"),
                ],
            )),
            (Category::DbSlowQuery, _) => {
                let table = top.culprit.as_ref().map(|c| c.name.clone()).unwrap_or_else(|| "<table>".into());
                steps.push(step(
                    format!("Slow query on {table}: confirm the plan with real values, then index the filtered column (one change, then re-measure)"),
                    &[
                        "EXPLAIN (ANALYZE, BUFFERS) <the statement with real values>;  -- or request postgres.explain_analyze (needs approval)".into(),
                        format!("CREATE INDEX CONCURRENTLY ON {table} (<the column in the filter>);"),
                        "-- then run oncall triage again: the statement's mean time in the window should drop".into(),
                    ],
                ));
            }
            (Category::DbLockContention, Some(pid)) => steps.push(step(
                format!("Lock contention: see what the root holder pid {pid} is doing, then end its transaction (terminate only with approval)"),
                &[
                    format!("SELECT pid, state, xact_start, left(query, 200) FROM pg_stat_activity WHERE pid = {pid};"),
                    format!("SELECT pg_terminate_backend({pid});  -- request postgres.terminate_backend (needs approval)"),
                    "-- then fix the code path that leaves transactions open (idle_in_transaction_session_timeout guards it)".into(),
                ],
            )),
            (Category::DbConnectionExhaustion, _) => {
                let app = top.culprit.as_ref().map(|c| c.name.clone()).unwrap_or_else(|| "<application>".into());
                steps.push(step(
                    format!("Connections exhausted: see why {app} holds so many, and cap its pool"),
                    &[
                        format!("SELECT state, count(*) FROM pg_stat_activity WHERE application_name = '{app}' GROUP BY 1;"),
                        "-- idle connections: lower the pool's max size or add a pooler (PgBouncer); idle in transaction: a leak in the code".into(),
                    ],
                ));
            }
            _ => {}
        }
    }
    if hints.impact == Impact::Latency
        && !findings
            .iter()
            .any(|h| h.category == Category::HostCpuSaturation)
    {
        steps.push(step(
            "Latency spike: take a distributed trace of a slow request to see which span holds the time, then an on-CPU flame graph of the service that owns it",
            &["perf record -F 99 -p <PID of that service> -g -- sleep 30; perf script | stackcollapse-perf.pl | flamegraph.pl > flame.svg".into()],
        ));
    }
    let bad = hints
        .suspect_version
        .clone()
        .unwrap_or_else(|| "HEAD".into());
    let bisect = match (&hints.known_good_version, &hints.suspect_version) {
        (Some(g), _) => Some((
            format!(
                "Regression with a known good version ({g}): bisect it with a test that reproduces the symptom"
            ),
            g.clone(),
        )),
        (None, Some(b)) => Some((
            format!(
                "Regression since {b}: bisect between the last release before it and {b} with a test that reproduces the symptom"
            ),
            format!("<last release before {b}>"),
        )),
        (None, None) => None,
    };
    if let Some((why, good)) = bisect {
        steps.push(step(
            why,
            &[
                "git bisect start".into(),
                format!("git bisect bad {bad}"),
                format!("git bisect good {good}"),
                "git bisect run ./reproduce.sh  # exits non-zero when the symptom shows".into(),
                "git bisect reset".into(),
            ],
        ));
    }
    if hints.intermittent {
        steps.push(step(
            "Intermittent (a Heisenbug): trace in production with sampling rather than reproducing locally",
            &["# keep tracing on with a sampling rate high enough to catch it; record the next occurrence".into()],
        ));
    }
    if findings.is_empty() && steps.is_empty() {
        steps.push(step(
            "Nothing abnormal on this host: look beyond it (the service's RED metrics, its traces, its database)",
            &["# the next collectors to ask are the database and trace tools".into()],
        ));
    }
    steps
}

/// Stabilizing actions to propose first for user-facing impact. Never executed here.
pub fn stabilize(hints: &ReportHints, findings: &[Hypothesis]) -> Vec<ProposedAction> {
    if !hints.user_facing || hints.internal_env || hints.impact == Impact::None {
        return vec![];
    }
    let mut out = vec![];
    if let Some(top) = findings.iter().find(|h| {
        matches!(
            h.category,
            Category::ChangeBadDeploy | Category::ChangeBadConfig
        ) && h.status == HypothesisStatus::Confirmed
    }) {
        let what = top
            .culprit
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_else(|| top.statement.clone());
        let service = top.component.strip_prefix("service:").unwrap_or(&what);
        out.push(if top.category == Category::ChangeBadDeploy {
            ProposedAction {
                tool: "deploy.rollback".into(),
                args: serde_json::json!({"deployment": service}),
                why: format!(
                    "roll back {what}: the regression began right after it; diagnose after"
                ),
                needs_approval: true,
            }
        } else if top.statement.contains("flag change") {
            ProposedAction {
                tool: "flag.disable".into(),
                args: serde_json::json!({"flag": what}),
                why: format!(
                    "turn the flag back off ({what}): the regression began right after it"
                ),
                needs_approval: true,
            }
        } else {
            ProposedAction {
                tool: "manual".into(),
                args: serde_json::json!({"revert": what}),
                why: format!(
                    "revert the configuration change ({what}): the regression began right after it"
                ),
                needs_approval: true,
            }
        });
    }
    if hints.mentions_deploy && out.is_empty() {
        out.push(ProposedAction {
            tool: "manual".into(),
            args: serde_json::json!({}),
            why:
                "user-facing impact after a change: roll back the last deploy first, diagnose after"
                    .into(),
            needs_approval: true,
        });
    }
    if let Some(top) = findings
        .iter()
        .find(|h| h.status == HypothesisStatus::Confirmed)
        && let (Some(pid), Some(c)) = (pid_of(top), top.culprit.as_ref())
        && matches!(
            top.category,
            Category::HostCpuSaturation | Category::HostMemoryPressure | Category::HostFdExhaustion
        )
    {
        out.push(ProposedAction {
            tool: "host.signal_process".into(),
            args: serde_json::json!({"pid": pid, "signal": "TERM"}),
            why: format!(
                "stop {} (pid {pid}), which {}; its supervisor restarts it clean",
                c.name,
                match top.category {
                    Category::HostCpuSaturation => "saturates the CPU",
                    Category::HostMemoryPressure => "grows without bound",
                    _ => "is out of file descriptors",
                }
            ),
            needs_approval: true,
        });
    }
    if let Some(top) = findings.iter().find(|h| {
        h.category == Category::DbLockContention && h.status == HypothesisStatus::Confirmed
    }) && let Some(pid) = pid_of(top)
    {
        out.push(ProposedAction {
            tool: "postgres.terminate_backend".into(),
            args: serde_json::json!({"database": top.component.trim_start_matches("postgres:"), "pid": pid}),
            why: format!("end the transaction of pid {pid}, the root of the lock chain; every session behind it resumes"),
            needs_approval: true,
        });
    }
    if let Some(top) = findings
        .iter()
        .find(|h| h.category == Category::HostDiskFull && h.status == HypothesisStatus::Confirmed)
    {
        out.push(ProposedAction {
            tool: "manual".into(),
            args: serde_json::json!({"mount": top.component.trim_start_matches("fs:")}),
            why: "free space first (rotate or truncate logs, remove old artifacts), then find the writer".into(),
            needs_approval: true,
        });
    }
    out
}

/// The closest past incident `memory.similar` returned, as a lead to check now: its cause and
/// what fixed it. A lead, not evidence: nothing on the board moves because of it.
pub fn from_memory(calls: &[super::ToolCallRecord]) -> Vec<NextStep> {
    let Some(hit) = calls
        .iter()
        .filter(|c| c.tool == "memory.similar" && c.ok)
        .filter_map(|c| {
            c.output
                .as_ref()?
                .get("similar")?
                .as_array()?
                .first()
                .cloned()
        })
        .next()
    else {
        return vec![];
    };
    let s = |k: &str| hit[k].as_str().unwrap_or_default().to_string();
    let mut why = format!(
        "A similar past incident, {} (similarity {:.2}), was caused by: {}",
        s("incident"),
        hit["score"].as_f64().unwrap_or_default(),
        s("cause")
    );
    if !s("category").is_empty() {
        why.push_str(&format!(" [{} on {}]", s("category"), s("component")));
    }
    why.push_str(". Check whether the same cause is present now.");
    let commands: Vec<String> = hit["fixed_by"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .map(|x| format!("last time: {x}"))
                .collect()
        })
        .unwrap_or_default();
    vec![step(why, &commands)]
}
