//! Faults inside the process itself: CPU spin, memory growth, file descriptor exhaustion.

use super::{Cli, MIB, ready, sleep_until};
use anyhow::{Context, Result, bail};
use clap::{CommandFactory, error::ErrorKind};
use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use std::fs::File;
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const PAGE: usize = 4096;

pub(super) fn cpu(threads: Option<u32>, deadline: Instant) -> Result<()> {
    let n = match threads {
        Some(n) => n as usize,
        None => 2 * thread::available_parallelism().map_or(1, |n| n.get()),
    };
    // Everyone (the spinners and this thread) meets at the barrier, so `ready` means every
    // spinner is running.
    let barrier = Arc::new(Barrier::new(n + 1));
    for i in 0..n {
        let barrier = Arc::clone(&barrier);
        thread::Builder::new()
            .spawn(move || {
                barrier.wait();
                let mut x = i as u64;
                loop {
                    x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
                }
            })
            .with_context(|| format!("spawn spinner thread {i}"))?;
    }
    barrier.wait();
    ready()?;
    sleep_until(deadline);
    Ok(())
}

pub(super) fn memory(rate_mib_per_s: u64, max_mib: u64, deadline: Instant) -> Result<()> {
    let per_tick = usize::try_from(rate_mib_per_s)?.saturating_mul(MIB) / 10;
    let max = usize::try_from(max_mib)?.saturating_mul(MIB);
    let tick = Duration::from_millis(100);

    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut total = 0usize;
    let start = Instant::now();
    let mut ticks = 0u32;
    while total < max && Instant::now() < deadline {
        let len = per_tick.min(max - total);
        let mut chunk = vec![0u8; len];
        // calloc'ed pages are not resident until written: write one byte per page.
        for i in (0..len).step_by(PAGE) {
            chunk[i] = 1;
        }
        black_box(&mut chunk);
        total += len;
        kept.push(chunk);
        if ticks == 0 {
            ready()?;
        }
        ticks += 1;
        // A fixed schedule, so the rate holds even when touching pages takes a while.
        sleep_until(start + tick * ticks);
    }
    sleep_until(deadline);
    black_box(&kept);
    Ok(())
}

pub(super) fn fds(limit: u64, open: u64, deadline: Instant) -> Result<()> {
    if open >= limit {
        Cli::command()
            .error(
                ErrorKind::ArgumentConflict,
                format!(
                    "--open {open} must be below --limit {limit}: the process already holds \
                     stdin, stdout and stderr, so it could not open them all"
                ),
            )
            .exit();
    }
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    if limit > hard {
        bail!("--limit {limit} is above the hard RLIMIT_NOFILE ({hard}); it cannot be raised");
    }
    setrlimit(Resource::RLIMIT_NOFILE, limit, hard)
        .with_context(|| format!("setrlimit(RLIMIT_NOFILE, soft={limit}, hard={hard})"))?;

    let mut kept = Vec::with_capacity(open as usize);
    for i in 0..open {
        match File::open("/dev/null") {
            Ok(f) => kept.push(f),
            Err(e) if e.raw_os_error() == Some(Errno::EMFILE as i32) => bail!(
                "opened {i} of {open} descriptors before hitting the soft limit {limit} \
                 (EMFILE); other descriptors were already open, lower --open"
            ),
            Err(e) => return Err(e).context(format!("open /dev/null (descriptor {i})")),
        }
    }
    ready()?;
    sleep_until(deadline);
    drop(kept);
    Ok(())
}
