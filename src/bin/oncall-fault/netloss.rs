//! `netloss`: a TCP service on 127.0.0.1 whose socket filter drops a share of the packets it
//! receives, called at a low rate by a client in the same process.

use super::sleep_until;
use anyhow::{Context, Result};
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

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

pub(super) fn netloss(
    port: u16,
    loss_pct: u8,
    rate_per_s: u32,
    conns: u32,
    deadline: Instant,
) -> Result<()> {
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
