//! Disks and filesystems: device busy %, await and queue depth from `/proc/diskstats` deltas;
//! space and inodes per mounted filesystem from `statvfs`.
//!
//! Remote filesystems are queried on a helper thread with a short deadline, because `statvfs` on a
//! hung NFS mount blocks forever and a 3 a.m. tool must not.

use super::signal::{ResourceReport, Signal, Unreadable, counter_delta};
use crate::config::{DiskThresholds, FilesystemThresholds};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

/// Counters of one block device (fields of /proc/diskstats).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DiskCounters {
    pub reads: u64,
    pub sectors_read: u64,
    pub read_ms: u64,
    pub writes: u64,
    pub sectors_written: u64,
    pub write_ms: u64,
    pub in_flight: u64,
    pub io_ticks_ms: u64,
    pub weighted_ms: u64,
}

/// Parses /proc/diskstats into device name -> counters.
pub fn parse_diskstats(text: &str) -> Result<HashMap<String, DiskCounters>, String> {
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 14 {
            return Err(format!(
                "line `{}` has {} fields, expected at least 14",
                line.trim(),
                f.len()
            ));
        }
        let n = |i: usize| -> Result<u64, String> {
            f[i].parse::<u64>()
                .map_err(|e| format!("device {} field {} `{}`: {e}", f[2], i + 1, f[i]))
        };
        out.insert(
            f[2].to_string(),
            DiskCounters {
                reads: n(3)?,
                sectors_read: n(5)?,
                read_ms: n(6)?,
                writes: n(7)?,
                sectors_written: n(9)?,
                write_ms: n(10)?,
                in_flight: n(11)?,
                io_ticks_ms: n(12)?,
                weighted_ms: n(13)?,
            },
        );
    }
    if out.is_empty() {
        return Err("no devices listed".into());
    }
    Ok(out)
}

/// Whether a device is a whole disk worth reporting (not a partition; loop/ram only when active).
fn is_whole_device(name: &str, sys_block: &HashSet<String>) -> bool {
    sys_block.is_empty() || sys_block.contains(name)
}

/// Reports one resource per whole device; idle loop/ram/zram devices are left out.
pub fn device_reports(
    before: &HashMap<String, DiskCounters>,
    after: &HashMap<String, DiskCounters>,
    sys_block: &HashSet<String>,
    window_ms: f64,
    th: &DiskThresholds,
    unreadable: &mut Vec<Unreadable>,
) -> Vec<ResourceReport> {
    let mut names: Vec<&String> = after
        .keys()
        .filter(|n| is_whole_device(n, sys_block))
        .collect();
    names.sort();
    let mut out = vec![];
    for name in names {
        let (Some(a), Some(b)) = (before.get(name), after.get(name)) else {
            continue;
        };
        let d = (|| -> Result<[u64; 8], String> {
            Ok([
                counter_delta("reads", a.reads, b.reads)?,
                counter_delta("writes", a.writes, b.writes)?,
                counter_delta("sectors_read", a.sectors_read, b.sectors_read)?,
                counter_delta("sectors_written", a.sectors_written, b.sectors_written)?,
                counter_delta("read_ms", a.read_ms, b.read_ms)?,
                counter_delta("write_ms", a.write_ms, b.write_ms)?,
                counter_delta("io_ticks", a.io_ticks_ms, b.io_ticks_ms)?,
                counter_delta("weighted_ms", a.weighted_ms, b.weighted_ms)?,
            ])
        })();
        let [reads, writes, sr, sw, rms, wms, ticks, weighted] = match d {
            Ok(d) => d,
            Err(e) => {
                unreadable.push(Unreadable::new(
                    &format!("disk:{name}"),
                    "/proc/diskstats",
                    e,
                ));
                continue;
            }
        };
        let ios = reads + writes;
        let virtual_dev = ["loop", "ram", "zram", "dm-"]
            .iter()
            .any(|p| name.starts_with(p));
        if virtual_dev && ios == 0 && b.in_flight == 0 {
            continue;
        }
        let secs = window_ms / 1000.0;
        let util = (100.0 * ticks as f64 / window_ms).min(100.0);
        let await_ms = if ios > 0 {
            (rms + wms) as f64 / ios as f64
        } else {
            0.0
        };
        let queue = weighted as f64 / window_ms;
        let mib = |sectors: u64| sectors as f64 * 512.0 / 1048576.0 / secs;
        out.push(ResourceReport::new(
            format!("disk:{name}"),
            vec![
                Signal::rated("busy", util, "%", th.utilization_pct, "/proc/diskstats").with_note(
                    format!(
                        "{:.0} r/s {:.0} w/s, {:.1} MiB/s read {:.1} MiB/s written",
                        reads as f64 / secs,
                        writes as f64 / secs,
                        mib(sr),
                        mib(sw)
                    ),
                ),
            ],
            vec![
                Signal::rated("await", await_ms, "ms", th.await_ms, "/proc/diskstats"),
                Signal::rated(
                    "queue_depth",
                    queue,
                    "requests",
                    th.queue_depth,
                    "/proc/diskstats",
                )
                .with_note(format!("{} in flight at the end", b.in_flight)),
            ],
            vec![],
        ));
    }
    out
}

/// One line of /proc/self/mounts.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
    pub fs_type: String,
}

/// Filesystem types that hold no user data and cannot fill up.
const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "autofs",
    "binfmt_misc",
    "nsfs",
    "rpc_pipefs",
    "efivarfs",
    "selinuxfs",
    "squashfs",
    "iso9660",
    "ramfs",
];

/// Filesystems whose statvfs may hang when the server is gone.
const REMOTE_FS: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "9p",
];

/// Undoes the octal escapes of /proc/mounts (`\040` is a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses /proc/self/mounts, keeping filesystems that can hold data, one per mount point.
pub fn parse_mounts(text: &str) -> Result<Vec<Mount>, String> {
    let mut seen = HashSet::new();
    let mut out = vec![];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            return Err(format!(
                "mount line `{line}` has {} fields, expected at least 3",
                f.len()
            ));
        }
        if PSEUDO_FS.contains(&f[2]) {
            continue;
        }
        let mount_point = unescape(f[1]);
        // A later mount on the same point hides the earlier one.
        if !seen.insert(mount_point.clone()) {
            out.retain(|m: &Mount| m.mount_point != mount_point);
        }
        out.push(Mount {
            device: unescape(f[0]),
            mount_point,
            fs_type: f[2].to_string(),
        });
    }
    Ok(out)
}

/// Space and inode figures of one filesystem, in bytes and counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FsUsage {
    pub size: u64,
    pub used: u64,
    pub avail: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

fn statvfs_now(path: &Path) -> Result<FsUsage, String> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| format!("statvfs failed: {e}"))?;
    let frsize = s.fragment_size() as u64;
    let blocks = s.blocks() as u64;
    let bfree = s.blocks_free() as u64;
    Ok(FsUsage {
        size: blocks * frsize,
        used: blocks.saturating_sub(bfree) * frsize,
        avail: s.blocks_available() as u64 * frsize,
        inodes: s.files() as u64,
        inodes_free: s.files_free() as u64,
    })
}

/// statvfs with a deadline for remote filesystems.
pub fn statvfs(mount: &Mount) -> Result<FsUsage, String> {
    let path = std::path::PathBuf::from(&mount.mount_point);
    if !REMOTE_FS.contains(&mount.fs_type.as_str()) {
        return statvfs_now(&path);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(statvfs_now(&path));
    });
    rx.recv_timeout(Duration::from_millis(300))
        .unwrap_or_else(|_| {
            Err("statvfs did not answer within 300 ms (a hung remote mount?)".into())
        })
}

/// Reports a filesystem's space and inodes, or None when it has no capacity (e.g. an empty tmpfs
/// of size 0).
pub fn fs_report(mount: &Mount, u: &FsUsage, th: &FilesystemThresholds) -> Option<ResourceReport> {
    if u.size == 0 {
        return None;
    }
    // df's definition: used / (used + available to unprivileged users).
    let denom = (u.used + u.avail).max(1);
    let used_pct = 100.0 * u.used as f64 / denom as f64;
    let mut util = vec![
        Signal::rated("space_used", used_pct, "%", th.used_pct, "statvfs").with_note(format!(
            "{} free of {} ({} on {})",
            human_bytes(u.avail),
            human_bytes(u.size),
            mount.fs_type,
            mount.device
        )),
    ];
    if u.inodes > 0 {
        let ipct = 100.0 * (u.inodes - u.inodes_free.min(u.inodes)) as f64 / u.inodes as f64;
        util.push(
            Signal::rated("inodes_used", ipct, "%", th.inodes_pct, "statvfs")
                .with_note(format!("{} inodes free of {}", u.inodes_free, u.inodes)),
        );
    }
    Some(ResourceReport::new(
        format!("fs:{}", mount.mount_point),
        util,
        vec![],
        vec![],
    ))
}

/// Where a filesystem's files are: the directories holding the most entries and the most bytes
/// directly, found by a walk bounded in entries and time that stays on the mount's device.
/// Returns `(most entries: (dir, entries), most bytes: (dir, bytes))`, or None when the mount
/// cannot be read.
pub fn crowded_dirs(
    mount: &Path,
    max_entries: usize,
    budget: Duration,
) -> Option<((String, u64), (String, u64))> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mount).ok()?.dev();
    let started = std::time::Instant::now();
    let mut queue = std::collections::VecDeque::from([mount.to_path_buf()]);
    let (mut seen, mut by_count, mut by_bytes) =
        (0usize, (String::new(), 0u64), (String::new(), 0u64));
    while let Some(dir) = queue.pop_front() {
        if seen >= max_entries || started.elapsed() >= budget {
            break;
        }
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let (mut n, mut bytes) = (0u64, 0u64);
        for e in rd.filter_map(|e| e.ok()) {
            seen += 1;
            n += 1;
            if let Ok(m) = e.path().symlink_metadata() {
                if m.is_dir() && m.dev() == dev {
                    queue.push_back(e.path());
                } else if m.is_file() {
                    bytes += m.blocks() * 512;
                }
            }
            if seen >= max_entries {
                break;
            }
        }
        let name = dir.display().to_string();
        if n > by_count.1 {
            by_count = (name.clone(), n);
        }
        if bytes > by_bytes.1 {
            by_bytes = (name, bytes);
        }
    }
    Some((by_count, by_bytes))
}

/// Adds where the files are to the report of a filesystem that is filling up: the directory
/// with the most entries (for inodes) and the one with the most bytes (for space).
pub fn attach_crowded_dirs(r: &mut ResourceReport, mount: &Path) {
    if r.status == super::signal::Status::Normal {
        return;
    }
    let Some(((cdir, count), (bdir, bytes))) =
        crowded_dirs(mount, 200_000, Duration::from_millis(300))
    else {
        return;
    };
    if count > 0 {
        r.utilization.push(
            Signal::info("crowded_dir", count as f64, "entries", "readdir")
                .with_note(format!("{cdir} holds the most entries ({count})")),
        );
    }
    if bytes > 0 {
        r.utilization.push(
            Signal::info("largest_dir", bytes as f64 / 1048576.0, "MiB", "readdir").with_note(
                format!(
                    "{bdir} holds the most bytes in its files ({})",
                    human_bytes(bytes)
                ),
            ),
        );
    }
}

/// Bytes as a short human figure (`1.5 GiB`).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISKSTATS: &str = "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 49880 13370 3921346 22713 172093 94380 6089680 312010 0 170460 334723 0 0 0 0 0 0
 254       1 vda1 49735 13370 3915730 22685 172093 94380 6089680 312010 0 170440 334695 0 0 0 0 0 0
";

    #[test]
    fn parses_captured_diskstats() {
        let d = parse_diskstats(DISKSTATS).unwrap();
        assert_eq!(d["vda"].reads, 49880);
        assert_eq!(d["vda"].io_ticks_ms, 170460);
        assert_eq!(d["vda"].weighted_ms, 334723);
        assert!(parse_diskstats("").is_err());
        assert!(
            parse_diskstats(" 254 0 vda 1 2 3")
                .unwrap_err()
                .contains("expected at least 14")
        );
        assert!(
            parse_diskstats(" 254 0 vda 1 2 3 4 5 6 7 8 9 x 11 12")
                .unwrap_err()
                .contains("`x`")
        );
    }

    #[test]
    fn busy_device_is_critical_and_idle_loop_is_left_out() {
        let a = parse_diskstats(DISKSTATS).unwrap();
        let mut b = a.clone();
        let v = b.get_mut("vda").unwrap();
        v.writes += 500;
        v.write_ms += 50_000;
        v.io_ticks_ms += 990;
        v.weighted_ms += 30_000;
        let sys: HashSet<String> = ["vda", "loop0"].iter().map(|s| s.to_string()).collect();
        let mut u = vec![];
        let r = device_reports(&a, &b, &sys, 1000.0, &DiskThresholds::default(), &mut u);
        assert_eq!(r.len(), 1, "partition vda1 and idle loop0 are not reported");
        assert_eq!(r[0].resource, "disk:vda");
        assert_eq!(r[0].signal("busy").unwrap().value, 99.0);
        assert_eq!(r[0].signal("await").unwrap().value, 100.0);
        assert_eq!(r[0].signal("queue_depth").unwrap().value, 30.0);
        // wrapped counter: unreadable, not reported as a huge rate
        let mut c = a.clone();
        c.get_mut("vda").unwrap().io_ticks_ms = 0;
        let mut u = vec![];
        assert!(
            device_reports(&a, &c, &sys, 1000.0, &DiskThresholds::default(), &mut u).is_empty()
        );
        assert!(u[0].why.contains("backwards"));
    }

    #[test]
    fn mounts_skip_pseudo_filesystems_and_unescape() {
        let m = parse_mounts(
            "/dev/vda / ext4 rw 0 0\nproc /proc proc rw 0 0\ntmpfs /mnt/my\\040disk tmpfs rw 0 0\n/dev/vdb / xfs rw 0 0\n",
        )
        .unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, "/mnt/my disk");
        assert_eq!(
            m[1].fs_type, "xfs",
            "the later mount on / hides the earlier"
        );
        assert!(parse_mounts("garbage\n").is_err());
    }

    #[test]
    fn full_filesystem_is_critical() {
        let m = Mount {
            device: "tmpfs".into(),
            mount_point: "/mnt/x".into(),
            fs_type: "tmpfs".into(),
        };
        let th = FilesystemThresholds::default();
        let full = FsUsage {
            size: 8 << 20,
            used: 8 << 20,
            avail: 0,
            inodes: 100,
            inodes_free: 90,
        };
        let r = fs_report(&m, &full, &th).unwrap();
        assert_eq!(r.signal("space_used").unwrap().value, 100.0);
        assert_eq!(r.status, super::super::signal::Status::Critical);
        assert!(fs_report(&m, &FsUsage { size: 0, ..full }, &th).is_none());
    }

    #[test]
    fn statvfs_of_root_works() {
        let m = Mount {
            device: "x".into(),
            mount_point: "/".into(),
            fs_type: "ext4".into(),
        };
        assert!(statvfs(&m).unwrap().size > 0);
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
