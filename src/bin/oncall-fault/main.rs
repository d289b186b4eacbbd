//! `oncall-fault`: a small fault injector for oncall's integration tests and eval scenarios.
//!
//! It only ever harms itself: it burns its own CPU, grows its own memory, exhausts its own file
//! descriptor limit, or fills a directory the caller hands it (meant to be a small tmpfs the test
//! mounted for the purpose). It never signals, traces or touches any other process.
//!
//! Every subcommand has a hard deadline (`--seconds`, default 30) after which the process exits
//! with status 0 on its own, so a crashed test can never leave it behind for long. Once the fault
//! is fully in place it prints exactly one line, `ready pid=<pid>`, to stdout and flushes it;
//! tests wait for that line before they look.
//!
//! ```text
//! oncall-fault [--name NAME] [--seconds S] cpu    [--threads N]
//! oncall-fault [--name NAME] [--seconds S] memory [--rate-mib-per-s R] [--max-mib M]
//! oncall-fault [--name NAME] [--seconds S] fds    [--limit L] [--open N]
//! oncall-fault [--name NAME] [--seconds S] fill   --path DIR
//! oncall-fault [--name NAME] [--seconds S] netloss [--port P] [--loss-pct L] [--rate-per-s R] [--conns N]
//! ```
//!
//! `netloss` is a TCP service on 127.0.0.1 whose own listening socket drops a random share of
//! the packets it receives (a classic BPF socket filter; its accepted connections inherit it),
//! called at a low rate by a client in the same process: real kernel retransmits on that one
//! port, a handful of segments per second. Its ready line also names the port:
//! `ready pid=<pid> port=<port>`.
//!
//! `--name` sets the process name (`/proc/<pid>/comm`, at most 15 bytes) so that the fault shows up
//! under a neutral name rather than giving itself away. Exit codes: 0 when the deadline is reached,
//! 1 on a runtime failure, 2 on bad arguments.

mod disk;
mod netloss;
mod process;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand, error::ErrorKind};
use disk::{fill, io};
use netloss::netloss;
use process::{cpu, fds, memory};
use std::ffi::CString;
use std::io::Write;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

/// A fault injector that only ever harms itself (CPU hog, memory growth, fd exhaustion, disk
/// fill), with a hard self-termination deadline.
#[derive(Debug, Parser)]
#[command(name = "oncall-fault", version)]
struct Cli {
    /// Set the process name (/proc/<pid>/comm, truncated to 15 bytes) before anything else.
    #[arg(long, global = true, value_name = "NAME")]
    name: Option<String>,

    /// Hard deadline: exit 0 after this many seconds, whatever happens.
    #[arg(long, global = true, default_value_t = 30, value_name = "S",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    seconds: u64,

    #[command(subcommand)]
    fault: Fault,
}

#[derive(Debug, Subcommand)]
enum Fault {
    /// Busy-loop on N threads.
    Cpu {
        /// Number of spinning threads [default: 2 x available cores].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
        threads: Option<u32>,
    },
    /// Grow resident memory steadily: every 100 ms allocate R/10 MiB and touch every page.
    Memory {
        /// Growth rate in MiB per second.
        #[arg(long, default_value_t = 200, value_name = "R",
              value_parser = clap::value_parser!(u64).range(1..=100_000))]
        rate_mib_per_s: u64,
        /// Stop growing at this many MiB in total (but keep running until the deadline).
        #[arg(long, default_value_t = 4096, value_name = "M",
              value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
        max_mib: u64,
    },
    /// Lower its own RLIMIT_NOFILE soft limit to L, then open N descriptors and keep them.
    Fds {
        /// New soft RLIMIT_NOFILE (the hard limit is kept).
        #[arg(long, default_value_t = 256, value_name = "L",
              value_parser = clap::value_parser!(u64).range(4..))]
        limit: u64,
        /// Descriptors to open (on /dev/null); must be below L.
        #[arg(long, default_value_t = 250, value_name = "N")]
        open: u64,
    },
    /// Write 1 MiB files of zeros (fill-0000.bin, ...) into DIR until the filesystem is full.
    Fill {
        /// Directory to fill; use a small dedicated tmpfs. The files are left in place.
        #[arg(long, value_name = "DIR")]
        path: PathBuf,
    },
    /// Keep a disk busy: each writer rewrites its own file of MIB MiB in DIR with direct,
    /// synchronous 1 MiB writes, over and over (the files are unlinked at once; the disk never fills).
    Io {
        /// Directory on the disk to load (not a tmpfs: direct I/O must reach a device).
        #[arg(long, value_name = "DIR")]
        path: PathBuf,
        /// Size of the file that is rewritten.
        #[arg(long, default_value_t = 256, value_name = "MIB")]
        mib: u64,
        /// Writers in parallel, each on its own file (more writers, deeper device queue).
        #[arg(long, default_value_t = 8)]
        threads: usize,
    },
    /// Serve TCP on 127.0.0.1 with a socket filter that drops L % of the packets the service
    /// receives, and call it R times per second (request and response of 64 bytes each) over N
    /// connections from the same process.
    Netloss {
        /// Port to listen on [default: any free port].
        #[arg(long, default_value_t = 0, value_name = "P")]
        port: u16,
        /// Share of the packets the service receives that are dropped, %.
        #[arg(long, default_value_t = 20, value_name = "L",
              value_parser = clap::value_parser!(u8).range(0..=100))]
        loss_pct: u8,
        /// Request/response exchanges per second, over all connections.
        #[arg(long, default_value_t = 5, value_name = "R",
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        rate_per_s: u32,
        /// Client connections the exchanges take turns on.
        #[arg(long, default_value_t = 3, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..=64))]
        conns: u32,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("oncall-fault: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    // The main thread's name is the process name; threads spawned later inherit it, so this must
    // happen before any thread (the watchdog included) exists.
    if let Some(name) = &cli.name {
        let cname = CString::new(name.as_bytes()).unwrap_or_else(|_| {
            Cli::command()
                .error(
                    ErrorKind::InvalidValue,
                    "--name must not contain a NUL byte",
                )
                .exit()
        });
        nix::sys::prctl::set_name(&cname).context("prctl(PR_SET_NAME)")?;
    }

    let deadline = Instant::now() + Duration::from_secs(cli.seconds);
    start_watchdog(deadline);

    match cli.fault {
        Fault::Cpu { threads } => cpu(threads, deadline),
        Fault::Memory {
            rate_mib_per_s,
            max_mib,
        } => memory(rate_mib_per_s, max_mib, deadline),
        Fault::Fds { limit, open } => fds(limit, open, deadline),
        Fault::Fill { path } => fill(&path, deadline),
        Fault::Io { path, mib, threads } => io(&path, mib, threads, deadline),
        Fault::Netloss {
            port,
            loss_pct,
            rate_per_s,
            conns,
        } => netloss(port, loss_pct, rate_per_s, conns, deadline),
    }
}

/// Exit 0 at the deadline even if the main thread is stuck (a slow write, a long allocation).
fn start_watchdog(deadline: Instant) {
    thread::Builder::new()
        .spawn(move || {
            sleep_until(deadline);
            std::process::exit(0);
        })
        .expect("spawn the watchdog thread");
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        thread::sleep(t - now);
    }
}

fn ready() -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready pid={}", std::process::id()).context("write the ready line")?;
    out.flush().context("flush stdout")?;
    Ok(())
}
