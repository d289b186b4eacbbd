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

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, Parser, Subcommand, error::ErrorKind};
use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use std::ffi::CString;
use std::fs::File;
use std::hint::black_box;
use std::io::{ErrorKind as IoErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;
const PAGE: usize = 4096;

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

fn cpu(threads: Option<u32>, deadline: Instant) -> Result<()> {
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

fn memory(rate_mib_per_s: u64, max_mib: u64, deadline: Instant) -> Result<()> {
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

fn fds(limit: u64, open: u64, deadline: Instant) -> Result<()> {
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

fn fill(dir: &Path, deadline: Instant) -> Result<()> {
    if !dir.is_dir() {
        bail!("--path {} is not a directory", dir.display());
    }
    let zeros = vec![0u8; MIB];
    let mut i = 0u64;
    loop {
        let path = dir.join(format!("fill-{i:04}.bin"));
        match write_file(&path, &zeros) {
            Ok(()) => i += 1,
            Err(e) if e.raw_os_error() == Some(Errno::ENOSPC as i32) => break,
            Err(e) if e.kind() == IoErrorKind::StorageFull => break,
            Err(e) => {
                return Err(e).with_context(|| format!("write {}", path.display()));
            }
        }
    }
    ready()?;
    sleep_until(deadline);
    Ok(())
}

fn io(dir: &Path, mib: u64, threads: usize, deadline: Instant) -> Result<()> {
    if !dir.is_dir() {
        bail!("--path {} is not a directory", dir.display());
    }
    if mib == 0 || threads == 0 {
        bail!("--mib and --threads must be at least 1");
    }
    let paths: Vec<PathBuf> = (0..threads)
        .map(|t| dir.join(format!("io-{}-{t}.bin", std::process::id())))
        .collect();
    let files = paths
        .iter()
        .map(|p| open_direct(p))
        .collect::<Result<Vec<File>>>()?;
    // Unlinked while open: the space comes back when the process ends, however it ends.
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    ready()?;
    let results: Vec<Result<()>> = thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .zip(&paths)
            .map(|(f, p)| s.spawn(move || rewrite(f, p, mib, deadline)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a writer panicked")))
            })
            .collect()
    });
    results.into_iter().collect()
}

fn open_direct(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .custom_flags((nix::fcntl::OFlag::O_DIRECT | nix::fcntl::OFlag::O_DSYNC).bits())
        .open(path)
        .with_context(|| format!("open {} with O_DIRECT", path.display()))
}

/// Rewrites `mib` MiB of `f` with direct, synchronous 1 MiB writes until the deadline.
fn rewrite(f: &File, path: &Path, mib: u64, deadline: Instant) -> Result<()> {
    use std::os::unix::fs::FileExt;
    // O_DIRECT needs a buffer aligned to the logical block size: 4096 covers every device.
    let raw = vec![0x5au8; MIB + 4096];
    let off = raw.as_ptr().align_offset(4096);
    let block = &raw[off..off + MIB];
    let mut i = 0u64;
    while Instant::now() < deadline {
        f.write_all_at(block, (i % mib) * MIB as u64)
            .with_context(|| format!("write {}", path.display()))?;
        i += 1;
    }
    Ok(())
}

fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(data)?;
    // Surface a delayed ENOSPC (filesystems that allocate on flush) here rather than never.
    f.sync_data()
}

/// Size of each request and each response of `netloss`.
const EXCHANGE: usize = 64;

/// Attaches a classic BPF program that drops `loss_pct` % of the packets the socket receives,
/// chosen at random by the kernel (`ld rand`). Sockets accepted from a listener inherit it.
fn attach_drop_filter(sock: &impl std::os::fd::AsRawFd, loss_pct: u8) -> Result<()> {
    use nix::libc::{
        BPF_ABS, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SKF_AD_OFF, SKF_AD_RANDOM,
        sock_filter, sock_fprog,
    };
    /// SO_ATTACH_FILTER from asm-generic/socket.h (the same on x86 and arm).
    const SO_ATTACH_FILTER: nix::libc::c_int = 26;
    let op = |code: u32, jt: u8, jf: u8, k: u32| sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    // `ret #n` keeps the first n bytes of the packet; 0 drops it.
    let keep = op(BPF_RET | BPF_K, 0, 0, u32::MAX);
    let drop = op(BPF_RET | BPF_K, 0, 0, 0);
    let mut program = if loss_pct == 0 {
        vec![keep]
    } else {
        // A = a random u32; A >= threshold keeps the packet, below it (loss_pct %) drops it.
        let threshold = (u64::from(u32::MAX) * u64::from(loss_pct) / 100) as u32;
        vec![
            op(
                BPF_LD | BPF_W | BPF_ABS,
                0,
                0,
                (SKF_AD_OFF + SKF_AD_RANDOM) as u32,
            ),
            op(BPF_JMP | BPF_JGE | BPF_K, 1, 0, threshold),
            drop,
            keep,
        ]
    };
    let fprog = sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, which outlives the call, and its length is the
    // program's; the kernel copies the program and keeps no pointer to it.
    let rc = unsafe {
        nix::libc::setsockopt(
            sock.as_raw_fd(),
            nix::libc::SOL_SOCKET,
            SO_ATTACH_FILTER,
            (&fprog as *const sock_fprog).cast(),
            std::mem::size_of::<sock_fprog>() as nix::libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setsockopt(SO_ATTACH_FILTER)");
    }
    Ok(())
}

/// Answers each 64-byte request with a 64-byte response until the client goes away.
fn serve(mut conn: std::net::TcpStream) {
    use std::io::Read;
    let mut buf = [0u8; EXCHANGE];
    while conn.read_exact(&mut buf).is_ok() {
        buf[0] = buf[0].wrapping_add(1);
        if conn.write_all(&buf).is_err() {
            return;
        }
    }
}

fn connect(port: u16) -> Result<std::net::TcpStream> {
    let c = std::net::TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connect to 127.0.0.1:{port}"))?;
    c.set_nodelay(true).context("TCP_NODELAY")?;
    // Losses delay an answer by a retransmit timeout or a few, never this long.
    c.set_read_timeout(Some(Duration::from_secs(20)))
        .context("SO_RCVTIMEO")?;
    Ok(c)
}

fn netloss(port: u16, loss_pct: u8, rate_per_s: u32, conns: u32, deadline: Instant) -> Result<()> {
    use std::io::Read;
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("listen on 127.0.0.1:{port}"))?;
    attach_drop_filter(&listener, loss_pct)?;
    let port = listener
        .local_addr()
        .context("the listening address")?
        .port();
    thread::Builder::new()
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = conn.set_nodelay(true);
                let _ = thread::Builder::new().spawn(move || serve(conn));
            }
        })
        .context("spawn the accept thread")?;
    // A dropped SYN costs a second; that is part of the fault, and ready waits for it.
    let mut clients = (0..conns)
        .map(|_| connect(port))
        .collect::<Result<Vec<_>>>()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready pid={} port={port}", std::process::id())
            .context("write the ready line")?;
        out.flush().context("flush stdout")?;
    }
    let every = Duration::from_secs(1) / rate_per_s;
    let start = Instant::now();
    let mut request = [0u8; EXCHANGE];
    let mut response = [0u8; EXCHANGE];
    for i in 0u64.. {
        // A fixed schedule: a slow (retransmitted) exchange does not add calls later.
        let due = start + every * u32::try_from(i).unwrap_or(u32::MAX);
        if due >= deadline {
            break;
        }
        sleep_until(due);
        let n = (i % u64::from(conns)) as usize;
        request[0] = i as u8;
        let ok = clients[n]
            .write_all(&request)
            .and_then(|()| clients[n].read_exact(&mut response));
        if let Err(e) = ok {
            eprintln!("oncall-fault: netloss: connection {n}: {e}; reconnecting");
            if let Ok(c) = connect(port) {
                clients[n] = c;
            }
        }
    }
    sleep_until(deadline);
    Ok(())
}
