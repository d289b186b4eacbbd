//! Benchmark: the cost of one `oncall` host USE snapshot next to the manual USE checklist.
//!
//! Not a criterion benchmark: it prints one Markdown table and a summary line. For each of
//! `BENCH_RUNS` runs (default 5) it measures, interleaved so that background load hits all of
//! them alike:
//!
//! - a full host investigation, `oncall triage --json "..."`, run as the release binary (process
//!   start-up, the snapshot, the rules, the answer): wall time and its CPU time
//!   (`getrusage(RUSAGE_CHILDREN)` deltas). This is what an engineer waits for;
//! - `oncall::collectors::host::take` with the configured window (what `oncall` does by
//!   default), wall time and the CPU time this process consumed meanwhile
//!   (`getrusage(RUSAGE_SELF)`, user + system);
//! - the same with a 100 ms window, which isolates the collection work from the sleep;
//! - the seed's manual checklist, run as child processes one after another: `mpstat -P ALL 1 1`,
//!   `free -m`, `vmstat 1 2`, `iostat -xz 1 2`, `sar -n DEV 1 1`; wall time and the children's CPU
//!   time (`getrusage(RUSAGE_CHILDREN)` deltas), per command and in total.
//!
//! Run with `cargo bench --bench host_snapshot` (`BENCH_RUNS=2` for a quick look).

use nix::errno::Errno;
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeVal;
use nix::sys::wait::waitpid;
use oncall::collectors::host;
use oncall::config::Config;
use std::hint::black_box;
use std::io::ErrorKind;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The checklist: (command line, the Debian package that provides it).
const CHECKLIST: [(&[&str], &str); 5] = [
    (&["mpstat", "-P", "ALL", "1", "1"], "sysstat"),
    (&["free", "-m"], "procps"),
    (&["vmstat", "1", "2"], "procps"),
    (&["iostat", "-xz", "1", "2"], "sysstat"),
    (&["sar", "-n", "DEV", "1", "1"], "sysstat"),
];

/// One measurement: wall time and CPU time, both in ms.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    wall_ms: f64,
    cpu_ms: f64,
}

/// What became of one checklist command over all runs.
#[derive(Debug, Default)]
struct CommandRow {
    samples: Vec<Sample>,
    /// Set when the command could not run at all; the row then says why.
    problem: Option<String>,
}

fn ms(tv: TimeVal) -> f64 {
    tv.tv_sec() as f64 * 1e3 + tv.tv_usec() as f64 / 1e3
}

/// User + system CPU time consumed so far by `who`, in ms.
fn cpu_ms(who: UsageWho) -> f64 {
    let u = getrusage(who).expect("getrusage");
    ms(u.user_time()) + ms(u.system_time())
}

/// One host snapshot with the given window, measured.
fn oncall_snapshot(cfg: &Config, window: Duration) -> (Sample, host::UseSnapshot) {
    let cpu0 = cpu_ms(UsageWho::RUSAGE_SELF);
    let t0 = Instant::now();
    let snap = host::take(&cfg.host, &cfg.thresholds, window, cfg.host.top_processes);
    let wall = t0.elapsed();
    let cpu1 = cpu_ms(UsageWho::RUSAGE_SELF);
    let snap = black_box(snap);
    let sample = Sample {
        wall_ms: wall.as_secs_f64() * 1e3,
        cpu_ms: cpu1 - cpu0,
    };
    (sample, snap)
}

/// The oncall binary built beside this bench (cargo builds it for benches).
const ONCALL: &str = env!("CARGO_BIN_EXE_oncall");

/// One full investigation of this host by the real binary, measured like a checklist command.
fn oncall_triage() -> Result<Sample, String> {
    run_command(
        &[
            ONCALL,
            "triage",
            "--json",
            "the api is slow since a few minutes",
        ],
        "oncall",
    )
}

/// One checklist command as a child process, measured; Err says why it did not run.
fn run_command(argv: &[&str], package: &str) -> Result<Sample, String> {
    let cpu0 = cpu_ms(UsageWho::RUSAGE_CHILDREN);
    let t0 = Instant::now();
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    // `sar` starts `sadc` and exits without waiting for it; as a child subreaper this process
    // inherits such orphans. Reap them all, so their CPU time lands in RUSAGE_CHILDREN too and
    // the wall time covers them.
    reap_orphans();
    let wall = t0.elapsed();
    let cpu1 = cpu_ms(UsageWho::RUSAGE_CHILDREN);
    match out {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Err(format!("not installed (apt-get install {package})"))
        }
        Err(e) => Err(format!("could not start: {e}")),
        Ok(o) if !o.status.success() => {
            let why = String::from_utf8_lossy(&o.stderr);
            let why = why.lines().next().unwrap_or("").trim();
            Err(format!("failed ({}) {why}", o.status))
        }
        Ok(o) => {
            black_box(o.stdout);
            Ok(Sample {
                wall_ms: wall.as_secs_f64() * 1e3,
                cpu_ms: cpu1 - cpu0,
            })
        }
    }
}

/// Waits for every remaining child (orphaned grandchildren adopted as subreaper) until none is left.
fn reap_orphans() {
    // Stops at ECHILD: nothing left to wait for.
    while let Ok(_) | Err(Errno::EINTR) = waitpid(None, None) {}
}

/// Mean, min and max.
fn stats(xs: impl Iterator<Item = f64>) -> (f64, f64, f64) {
    let xs: Vec<f64> = xs.collect();
    if xs.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean, min, max)
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    stats(xs).0
}

/// A table row from samples: | what | runs | wall | CPU | CPU % |.
fn row(what: &str, samples: &[Sample]) -> String {
    let (wm, wmin, wmax) = stats(samples.iter().map(|s| s.wall_ms));
    let (cm, cmin, cmax) = stats(samples.iter().map(|s| s.cpu_ms));
    format!(
        "| {what} | {} | {wm:.0} / {wmin:.0} / {wmax:.0} | {cm:.1} / {cmin:.1} / {cmax:.1} | {:.1} % |",
        samples.len(),
        100.0 * cm / wm,
    )
}

/// "3.2x less", "1.5x more" or `same` (within 5 %): how `other` compares to `ours`.
fn ratio(ours: f64, other: f64, less: &str, more: &str, same: &str) -> String {
    if ours <= 0.0 || other <= 0.0 {
        return "not comparable".into();
    }
    if (other / ours - 1.0).abs() < 0.05 {
        same.into()
    } else if other >= ours {
        format!("{:.1}x {less}", other / ours)
    } else {
        format!("{:.1}x {more}", ours / other)
    }
}

fn main() {
    let runs: usize = match std::env::var("BENCH_RUNS") {
        Err(_) => 5,
        Ok(v) => match v.trim().parse() {
            Ok(n) if n >= 1 => n,
            _ => {
                eprintln!("BENCH_RUNS must be a whole number >= 1, got {v:?}");
                std::process::exit(2);
            }
        },
    };
    // Adopt the checklist's orphaned grandchildren (sar's sadc) so their CPU time is counted.
    let subreaper = nix::sys::prctl::set_child_subreaper(true).is_ok();
    let cfg = Config::default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());

    let window = Duration::from_millis(cfg.host.window_ms);
    let mut triage: Vec<Sample> = vec![];
    let mut triage_problem: Option<String> = None;
    let mut full: Vec<Sample> = vec![];
    let mut short: Vec<Sample> = vec![];
    let mut commands: Vec<CommandRow> = CHECKLIST.iter().map(|_| CommandRow::default()).collect();
    let mut totals: Vec<Sample> = vec![];
    let mut last_snapshot = None;

    for run in 1..=runs {
        eprintln!(
            "run {run}/{runs}: oncall triage, oncall {} ms, oncall 100 ms, checklist ...",
            cfg.host.window_ms
        );
        if triage_problem.is_none() {
            match oncall_triage() {
                Ok(s) => triage.push(s),
                Err(why) => triage_problem = Some(why),
            }
        }
        let (s, snap) = oncall_snapshot(&cfg, window);
        full.push(s);
        last_snapshot = Some(snap);
        short.push(oncall_snapshot(&cfg, Duration::from_millis(100)).0);

        let mut total = Sample::default();
        for ((argv, package), row) in CHECKLIST.iter().zip(commands.iter_mut()) {
            if row.problem.is_some() {
                continue; // missing or broken: do not retry every run
            }
            match run_command(argv, package) {
                Ok(s) => {
                    total.wall_ms += s.wall_ms;
                    total.cpu_ms += s.cpu_ms;
                    row.samples.push(s);
                }
                Err(why) => row.problem = Some(why),
            }
        }
        totals.push(total);
    }

    let working = commands.iter().filter(|c| c.problem.is_none()).count();
    // A command that failed mid-way leaves earlier totals inconsistent; only keep a total when
    // every command that works ran in every run.
    let consistent = commands
        .iter()
        .all(|c| c.problem.is_some() || c.samples.len() == runs)
        && commands
            .iter()
            .all(|c| c.problem.is_none() || c.samples.is_empty());

    println!();
    println!("## host_snapshot: one oncall USE snapshot vs. the manual sysstat USE checklist");
    println!();
    println!(
        "Machine: {cores} cores, load average {load} at start. Runs: {runs} (env BENCH_RUNS), \
         interleaved. Build: {}.",
        if cfg!(debug_assertions) {
            "debug (numbers are pessimistic)"
        } else {
            "optimized"
        }
    );
    println!(
        "oncall = the library call `collectors::host::take` in this process (no process start-up); \
         it samples every resource over ONE window. The checklist runs each command as a child \
         process, one after another; mpstat, vmstat, iostat and sar each sample their own 1 s \
         window."
    );
    println!(
        "CPU ms = user + system CPU time (getrusage: RUSAGE_SELF for oncall, RUSAGE_CHILDREN for \
         the commands{}). CPU % of one core = CPU ms / wall ms x 100.",
        if subreaper {
            ", including helpers such as sar's sadc that their parent does not wait for"
        } else {
            "; could not become a child subreaper, so sar's sadc helper is NOT counted"
        }
    );
    println!();
    println!(
        "| what | runs | wall ms (mean / min / max) | CPU ms (mean / min / max) | CPU % of one core |"
    );
    println!("|---|---:|---:|---:|---:|");
    match &triage_problem {
        None => println!(
            "{}",
            row(
                "**`oncall triage` (a full host investigation, process start to answer)**",
                &triage
            )
        ),
        Some(why) => println!("| `oncall triage` | 0 | {why} | | |"),
    }
    println!(
        "{}",
        row(
            &format!(
                "oncall snapshot, {} ms window (default)",
                cfg.host.window_ms
            ),
            &full
        )
    );
    println!(
        "{}",
        row("oncall snapshot, 100 ms window (collection work)", &short)
    );
    for ((argv, _), c) in CHECKLIST.iter().zip(&commands) {
        let what = format!("`{}`", argv.join(" "));
        match &c.problem {
            Some(why) if c.samples.is_empty() => println!("| {what} | 0 | {why} | | |"),
            Some(why) => println!("{} (then {why})", row(&what, &c.samples)),
            None => println!("{}", row(&what, &c.samples)),
        }
    }
    if working > 0 && consistent {
        let what = if working == CHECKLIST.len() {
            "**checklist total (5 commands)**".to_string()
        } else {
            format!(
                "**checklist total ({working} of {} commands installed)**",
                CHECKLIST.len()
            )
        };
        println!("{}", row(&what, &totals));
    }
    println!();

    if let Some(snap) = &last_snapshot {
        println!(
            "Sanity check, last default-window snapshot: measured window {} ms, {} cores, {} resources, \
             {} unreadable, abnormal: {}.",
            snap.window_ms,
            snap.cores,
            snap.resources.len(),
            snap.unreadable.len(),
            if snap.abnormal.is_empty() {
                "none".to_string()
            } else {
                snap.abnormal.join("; ")
            }
        );
    }

    let (ow, oc) = (
        mean(full.iter().map(|s| s.wall_ms)),
        mean(full.iter().map(|s| s.cpu_ms)),
    );
    let sc = mean(short.iter().map(|s| s.cpu_ms));
    if working > 0 && consistent {
        let (cw, cc) = (
            mean(totals.iter().map(|s| s.wall_ms)),
            mean(totals.iter().map(|s| s.cpu_ms)),
        );
        println!(
            "Summary: one oncall snapshot ({} ms window, all resources) took {ow:.0} ms wall and \
             {oc:.1} ms CPU ({sc:.1} ms CPU with a 100 ms window); the {working}-command checklist \
             took {cw:.0} ms wall and {cc:.1} ms CPU. oncall is {} and uses {}.",
            cfg.host.window_ms,
            ratio(ow, cw, "faster", "slower", "about as fast"),
            ratio(oc, cc, "less CPU", "more CPU", "about the same CPU"),
        );
        if !triage.is_empty() {
            let tw = mean(triage.iter().map(|s| s.wall_ms));
            println!(
                "Triage: a full `oncall triage` took {tw:.0} ms wall against the checklist's \
                 {cw:.0} ms: {:.1}x faster (the goal is at least 8x).",
                cw / tw
            );
        }
    } else {
        println!(
            "Summary: one oncall snapshot ({} ms window, all resources) took {ow:.0} ms wall and \
             {oc:.1} ms CPU ({sc:.1} ms CPU with a 100 ms window); the checklist could not be \
             measured (see the rows above).",
            cfg.host.window_ms
        );
    }
}
