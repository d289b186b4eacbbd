//! Disk faults: a directory filled until the filesystem is full, a disk kept busy with direct
//! synchronous writes.

use super::{MIB, ready, sleep_until};
use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use std::fs::File;
use std::io::{ErrorKind as IoErrorKind, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Instant;

pub(super) fn fill(dir: &Path, deadline: Instant) -> Result<()> {
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

pub(super) fn io(dir: &Path, mib: u64, threads: usize, deadline: Instant) -> Result<()> {
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
