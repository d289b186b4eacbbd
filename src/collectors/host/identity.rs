//! Process identity: which program a process is, named the way an operator names it.
//!
//! The kernel's `comm` is cut to 15 bytes and a process may rename itself at run time, so it is
//! a poor name for a culprit. An operator says `inventory-reconciliation-worker`, not
//! `inventory-recon`; `fraud_score_batch.py`, not `python3`; `com.acme.billing.InvoiceRenderer`,
//! not `java`; `payments-api.service`, not `node`. This module derives that name from what
//! `/proc/<pid>` tells: the executable, the command line (for interpreters: the script, module,
//! jar or main class it runs) and the cgroup (the systemd unit or container it belongs to).
//! Everything here is pure parsing; the reads happen in [`super::process`].

use std::path::Path;

/// Interpreters and runtimes whose own name says little: the program is what they run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Runtime {
    Python,
    Node,
    Java,
    /// ruby, perl, php, bash, sh...: the first argument that is not an option is the script.
    Script,
}

fn runtime_of(base: &str) -> Option<Runtime> {
    let b = base.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    match b {
        "python" | "pypy" | "pypy3" => Some(Runtime::Python),
        "node" | "nodejs" | "bun" | "deno" => Some(Runtime::Node),
        "java" => Some(Runtime::Java),
        "ruby" | "perl" | "php" | "php-fpm" | "bash" | "sh" | "dash" | "zsh" | "Rscript" => {
            Some(Runtime::Script)
        }
        _ => None,
    }
}

fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The program a process runs, named as an operator would name it.
///
/// `comm` is the kernel's (possibly cut or renamed) name, `exe` the resolved executable (None
/// when unreadable: a kernel thread, or another user's process without privileges), `argv` the
/// command line (empty for kernel threads and zombies).
pub fn program_name(comm: &str, exe: Option<&str>, argv: &[String]) -> String {
    // A deleted executable reads as `/path (deleted)`.
    let exe = exe.map(|e| e.trim_end_matches(" (deleted)"));
    let exe_base = exe.map(base).filter(|b| !b.is_empty());
    let arg0_base = argv
        .first()
        .map(|a| base(a.split_whitespace().next().unwrap_or(a)))
        .filter(|b| !b.is_empty());
    let runtime = exe_base
        .and_then(runtime_of)
        .or_else(|| arg0_base.and_then(runtime_of));
    if let Some(rt) = runtime
        && let Some(name) = runs(rt, argv)
    {
        return name;
    }
    if let Some(b) = exe_base {
        return b.to_string();
    }
    // No executable: the command line's own name if the kernel's is a cut or equal form of it.
    match arg0_base {
        Some(a) if a.starts_with(comm) || comm.is_empty() => a.to_string(),
        _ => comm.to_string(),
    }
}

/// Whether a program name says only that a runtime runs inline code (`python -c`, `node -e`),
/// as the workers a runtime spawns do: such a worker is better named by its parent.
pub fn is_generic(program: &str) -> bool {
    program == "python -c" || program == "node -e"
}

/// What an interpreter runs: a script, module, jar or main class, from its arguments.
fn runs(rt: Runtime, argv: &[String]) -> Option<String> {
    let mut it = argv.iter().skip(1).map(String::as_str);
    match rt {
        Runtime::Python => {
            while let Some(a) = it.next() {
                match a {
                    "-m" => return it.next().map(str::to_string),
                    "-c" => return Some("python -c".into()),
                    "-X" | "-W" | "--check-hash-based-pycs" => {
                        it.next();
                    }
                    _ if a.starts_with("-m") && a.len() > 2 => return Some(a[2..].to_string()),
                    _ if a.starts_with('-') => {}
                    _ => return Some(base(a).to_string()),
                }
            }
            None
        }
        Runtime::Node => {
            while let Some(a) = it.next() {
                match a {
                    "-e" | "--eval" | "-p" | "--print" => return Some("node -e".into()),
                    "-r" | "--require" | "--import" | "--loader" | "--inspect-port" => {
                        it.next();
                    }
                    _ if a.starts_with('-') => {}
                    _ => return Some(base(a).to_string()),
                }
            }
            None
        }
        Runtime::Java => {
            while let Some(a) = it.next() {
                match a {
                    "-jar" => return it.next().map(|j| base(j).to_string()),
                    "-m" | "--module" => {
                        return it
                            .next()
                            .map(|m| m.rsplit('/').next().unwrap_or(m).to_string());
                    }
                    "-cp"
                    | "-classpath"
                    | "--class-path"
                    | "-p"
                    | "--module-path"
                    | "--add-opens"
                    | "--add-exports"
                    | "--add-modules"
                    | "--add-reads"
                    | "--patch-module"
                    | "--upgrade-module-path" => {
                        it.next();
                    }
                    _ if a.starts_with('-') => {}
                    _ => return Some(a.to_string()),
                }
            }
            None
        }
        Runtime::Script => {
            while let Some(a) = it.next() {
                match a {
                    "-c" | "-e" | "-r" => return None,
                    // A script fed through a descriptor (`bash /dev/fd/3`, `<(...)`) has no name.
                    _ if a.starts_with("/dev/fd/") || a.starts_with("/proc/self/fd/") => {
                        return None;
                    }
                    "-o" | "-O" | "-I" | "-d" => {
                        it.next();
                    }
                    _ if a.starts_with('-') => {}
                    _ => return Some(base(a).to_string()),
                }
            }
            None
        }
    }
}

/// The service a process belongs to, from `/proc/<pid>/cgroup`: a systemd unit
/// (`payments-api.service`), a container (`container 3f2a9c1b7d4e`) or a pod's container.
/// None for processes in the root cgroup, in a session scope or user slice.
pub fn unit_of(cgroup: &str) -> Option<String> {
    // Every hierarchy's path: a container id in any of them names the container; else the
    // unified (v2) line, then the systemd, memory and cpu v1 hierarchies name the unit.
    let paths: Vec<String> = ["", "name=systemd", "memory", "cpu,cpuacct", "cpu"]
        .iter()
        .filter_map(|h| cgroup_path(cgroup, &[h]))
        .collect();
    for path in &paths {
        if let Some(id) = path.split('/').rev().find_map(container_id) {
            return Some(format!("container {id}"));
        }
    }
    paths.iter().find_map(|path| {
        path.split('/')
            .rev()
            .find(|p| p.ends_with(".service") && !p.starts_with("user@"))
            .map(str::to_string)
    })
}

fn container_id(part: &str) -> Option<String> {
    let id = part
        .strip_prefix("docker-")
        .or_else(|| part.strip_prefix("cri-containerd-"))
        .or_else(|| part.strip_prefix("crio-"))
        .or_else(|| part.strip_prefix("libpod-"))
        .map(|p| p.trim_end_matches(".scope"))
        .unwrap_or(part);
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id[..12].to_string())
}

/// The path of a process in the first of the named hierarchies present in `/proc/<pid>/cgroup`
/// (`""` names the unified v2 hierarchy).
pub fn cgroup_path(cgroup: &str, hierarchies: &[&str]) -> Option<String> {
    let lines: Vec<(&str, &str)> = cgroup
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            Some((ctrl, path))
        })
        .collect();
    hierarchies.iter().find_map(|h| {
        lines
            .iter()
            .find(|(c, _)| c == h || (!h.is_empty() && c.split(',').any(|x| x == *h)))
            .map(|(_, p)| p.to_string())
    })
}

/// A memory cgroup's limit and use, in bytes: v2 `memory.max`/`memory.current`, or v1
/// `memory.limit_in_bytes`/`memory.usage_in_bytes`. None when the cgroup has no limit (or the
/// limit is above the host's memory, which v1 reports for "unlimited").
pub fn memory_limit(
    cgroup_root: &Path,
    cgroup: &str,
    host_total: u64,
) -> Option<(String, u64, u64)> {
    let read = |p: std::path::PathBuf| -> Option<u64> {
        std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok()
    };
    // v2
    if let Some(path) = cgroup_path(cgroup, &[""]).filter(|p| p != "/") {
        let dir = cgroup_root.join(path.trim_start_matches('/'));
        if let (Some(max), Some(cur)) = (
            read(dir.join("memory.max")),
            read(dir.join("memory.current")),
        ) {
            return (max < host_total).then_some((path, max, cur));
        }
    }
    // v1
    if let Some(path) = cgroup_path(cgroup, &["memory"]).filter(|p| p != "/") {
        let dir = cgroup_root
            .join("memory")
            .join(path.trim_start_matches('/'));
        if let (Some(max), Some(cur)) = (
            read(dir.join("memory.limit_in_bytes")),
            read(dir.join("memory.usage_in_bytes")),
        ) {
            return (max < host_total).then_some((path, max, cur));
        }
    }
    None
}

/// A cgroup's CPU quota and how often it throttled its tasks (over the cgroup's lifetime).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CpuQuota {
    /// The cgroup's path.
    pub cgroup: String,
    /// CPUs' worth of time the quota allows per period (0.2 = a fifth of one core).
    pub limit_cpus: f64,
    /// Periods in which the cgroup was throttled, % of the periods it ran in.
    pub throttled_pct: f64,
}

/// The CPU quota of a process's cgroup: v2 `cpu.max` and `cpu.stat`, or v1
/// `cpu.cfs_quota_us`/`cpu.cfs_period_us` and `cpu.stat`. None without a quota.
pub fn cpu_quota(cgroup_root: &Path, cgroup: &str) -> Option<CpuQuota> {
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).ok();
    let stat = |text: &str, key: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))?
            .trim()
            .parse()
            .ok()
    };
    let ratio = |st: &str| {
        let periods = stat(st, "nr_periods").unwrap_or(0.0);
        let throttled = stat(st, "nr_throttled").unwrap_or(0.0);
        if periods > 0.0 {
            100.0 * throttled / periods
        } else {
            0.0
        }
    };
    // v2
    if let Some(path) = cgroup_path(cgroup, &[""]).filter(|p| p != "/") {
        let dir = cgroup_root.join(path.trim_start_matches('/'));
        if let Some(max) = read(dir.join("cpu.max")) {
            let mut f = max.split_whitespace();
            let (q, p) = (
                f.next()?.parse::<f64>().ok()?,
                f.next()?.parse::<f64>().ok()?,
            );
            let st = read(dir.join("cpu.stat")).unwrap_or_default();
            return (p > 0.0).then(|| CpuQuota {
                cgroup: path,
                limit_cpus: q / p,
                throttled_pct: ratio(&st),
            });
        }
    }
    // v1
    let path = cgroup_path(cgroup, &["cpu,cpuacct", "cpu"]).filter(|p| p != "/")?;
    for mount in ["cpu,cpuacct", "cpu"] {
        let dir = cgroup_root.join(mount).join(path.trim_start_matches('/'));
        let Some(q) = read(dir.join("cpu.cfs_quota_us")) else {
            continue;
        };
        let q: f64 = q.trim().parse().ok()?;
        let p: f64 = read(dir.join("cpu.cfs_period_us"))?.trim().parse().ok()?;
        let st = read(dir.join("cpu.stat")).unwrap_or_default();
        return (q > 0.0 && p > 0.0).then(|| CpuQuota {
            cgroup: path.clone(),
            limit_cpus: q / p,
            throttled_pct: ratio(&st),
        });
    }
    None
}

/// A soft resource limit from `/proc/<pid>/limits` (None: unlimited or absent), e.g.
/// `Max address space`, in the file's unit (bytes).
pub fn soft_limit(limits: &str, name: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn native_programs_are_named_by_their_full_executable_not_the_cut_comm() {
        assert_eq!(
            program_name(
                "inventory-recon",
                Some("/opt/inv/bin/inventory-reconciliation-worker"),
                &argv("inventory-reconciliation-worker --shard 3")
            ),
            "inventory-reconciliation-worker"
        );
        // Renamed at run time (comm), still the same program.
        assert_eq!(
            program_name(
                "wrk-3",
                Some("/usr/sbin/nginx"),
                &argv("nginx: worker process")
            ),
            "nginx"
        );
        // Deleted (upgraded underneath) executable.
        assert_eq!(
            program_name(
                "ledger",
                Some("/srv/ledger-sync (deleted)"),
                &argv("/srv/ledger-sync")
            ),
            "ledger-sync"
        );
    }

    #[test]
    fn interpreters_are_named_by_what_they_run() {
        let py = Some("/usr/bin/python3.11");
        assert_eq!(
            program_name(
                "python3",
                py,
                &argv("python3 -u /srv/jobs/fraud_score_batch.py --n 4")
            ),
            "fraud_score_batch.py"
        );
        assert_eq!(
            program_name(
                "wrk-0",
                py,
                &argv("/usr/bin/python3 -X dev -m celery worker")
            ),
            "celery"
        );
        assert_eq!(
            program_name("python3", py, &argv("python3 -c pass")),
            "python -c"
        );
        assert_eq!(
            program_name(
                "node",
                Some("/usr/bin/node"),
                &argv("node --max-old-space-size=4096 -r dotenv/config /app/price-indexer.js")
            ),
            "price-indexer.js"
        );
        let java = Some("/usr/lib/jvm/java-17-openjdk-amd64/bin/java");
        assert_eq!(
            program_name(
                "java",
                java,
                &argv(
                    "java -Xmx2g -cp /opt/app/lib/* -Dfoo=bar com.acme.billing.InvoiceRenderer 4"
                )
            ),
            "com.acme.billing.InvoiceRenderer"
        );
        assert_eq!(
            program_name(
                "java",
                java,
                &argv("java -jar /opt/app/settlement-service-2.4.1.jar")
            ),
            "settlement-service-2.4.1.jar"
        );
        assert_eq!(
            program_name(
                "bash",
                Some("/usr/bin/bash"),
                &argv("bash /opt/backup/nightly-dump.sh")
            ),
            "nightly-dump.sh"
        );
        assert_eq!(
            program_name("bash", Some("/usr/bin/bash"), &argv("bash /dev/fd/3")),
            "bash"
        );
        // An interpreter with nothing to run is the interpreter.
        assert_eq!(program_name("python3", py, &argv("python3")), "python3.11");
    }

    #[test]
    fn without_an_executable_the_command_line_name_wins_when_the_comm_is_its_cut() {
        assert_eq!(
            program_name(
                "inventory-recon",
                None,
                &argv("/x/inventory-reconciliation-worker")
            ),
            "inventory-reconciliation-worker"
        );
        assert_eq!(program_name("kworker/0:1", None, &[]), "kworker/0:1");
    }

    #[test]
    fn units_and_containers_come_from_the_cgroup() {
        assert_eq!(
            unit_of("0::/system.slice/payments-api.service\n").as_deref(),
            Some("payments-api.service")
        );
        let id = "3f2a9c1b7d4e".to_string() + &"a".repeat(52);
        assert_eq!(
            unit_of(&format!("0::/system.slice/docker-{id}.scope\n")).as_deref(),
            Some("container 3f2a9c1b7d4e")
        );
        assert_eq!(
            unit_of(&format!(
                "12:memory:/kubepods/burstable/pod1/{id}\n1:name=systemd:/x\n"
            ))
            .as_deref(),
            Some("container 3f2a9c1b7d4e")
        );
        assert_eq!(
            unit_of("0::/user.slice/user-0.slice/session-3.scope\n"),
            None
        );
        assert_eq!(unit_of("0::/\n"), None);
    }

    #[test]
    fn cgroup_paths_and_limits_parse() {
        let cg = "4:memory:/jobs/leaky\n0::/\n";
        assert_eq!(cgroup_path(cg, &["memory"]).as_deref(), Some("/jobs/leaky"));
        assert_eq!(cgroup_path(cg, &[""]).as_deref(), Some("/"));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax address space         1073741824           unlimited            bytes\nMax open files            1024                 4096                 files\n";
        assert_eq!(soft_limit(limits, "Max address space"), Some(1 << 30));
        assert_eq!(soft_limit(limits, "Max data size"), None);
    }

    #[test]
    fn a_cpu_quota_and_its_throttling_are_read_from_v1_and_v2_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v2 = dir.path().join("batch");
        std::fs::create_dir_all(&v2).expect("mkdir");
        std::fs::write(v2.join("cpu.max"), "20000 100000\n").expect("write");
        std::fs::write(
            v2.join("cpu.stat"),
            "usage_usec 5\nnr_periods 200\nnr_throttled 150\n",
        )
        .expect("write");
        let q = cpu_quota(dir.path(), "0::/batch\n").expect("a quota");
        assert_eq!((q.limit_cpus, q.throttled_pct), (0.2, 75.0));
        std::fs::write(v2.join("cpu.max"), "max 100000\n").expect("write");
        assert_eq!(cpu_quota(dir.path(), "0::/batch\n"), None);
        let v1 = dir.path().join("cpu/jobs");
        std::fs::create_dir_all(&v1).expect("mkdir");
        std::fs::write(v1.join("cpu.cfs_quota_us"), "50000\n").expect("write");
        std::fs::write(v1.join("cpu.cfs_period_us"), "100000\n").expect("write");
        std::fs::write(v1.join("cpu.stat"), "nr_periods 10\nnr_throttled 9\n").expect("write");
        let q = cpu_quota(dir.path(), "1:cpu:/jobs\n").expect("a v1 quota");
        assert_eq!((q.limit_cpus, q.throttled_pct), (0.5, 90.0));
        std::fs::write(v1.join("cpu.cfs_quota_us"), "-1\n").expect("write");
        assert_eq!(cpu_quota(dir.path(), "1:cpu:/jobs\n"), None);
    }

    #[test]
    fn a_cgroup_limit_is_read_from_v1_and_v2_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v2 = dir.path().join("jobs/leaky");
        std::fs::create_dir_all(&v2).expect("mkdir");
        std::fs::write(v2.join("memory.max"), "1073741824\n").expect("write");
        std::fs::write(v2.join("memory.current"), "536870912\n").expect("write");
        assert_eq!(
            memory_limit(dir.path(), "0::/jobs/leaky\n", 8 << 30),
            Some(("/jobs/leaky".into(), 1 << 30, 1 << 29))
        );
        let v1 = dir.path().join("memory/batch");
        std::fs::create_dir_all(&v1).expect("mkdir");
        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").expect("write");
        std::fs::write(v1.join("memory.usage_in_bytes"), "1000\n").expect("write");
        // v1's "unlimited" is a huge number: no limit.
        assert_eq!(memory_limit(dir.path(), "4:memory:/batch\n", 8 << 30), None);
    }
}
