//! `oncall audit verify`: checks the audit log's hash chain, of this process's file or of every
//! replica the shared store lists. Exit 1 when a chain is broken or ends in a torn write.

use super::{AuditVerifyArgs, CliError, Context, Outcome, exit_if};
use crate::policy::audit;

pub fn verify(args: AuditVerifyArgs, ctx: &Context) -> Outcome {
    if args.replicas {
        return verify_replicas(ctx);
    }
    let config = &ctx.config;
    // The same file `oncall serve` writes: [policy] audit_file, else in the data dir.
    let file = args
        .file
        .or_else(|| config.policy.audit_file.clone())
        .unwrap_or_else(|| config.server.data_dir.join("audit.jsonl"));
    let bytes = std::fs::read(&file)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", file.display())))?;
    let r = audit::verify_bytes(&bytes, args.head.as_deref());
    for rec in &r.recoveries {
        let also = if rec.also_kept.is_empty() {
            String::new()
        } else {
            format!(
                "; earlier copies from a recovery cut short: {}",
                rec.also_kept.join(", ")
            )
        };
        println!(
            "line {}: recovered after a torn write: {} bytes kept in {} (sha256 {}){also}",
            rec.line, rec.bytes, rec.kept_in, rec.sha256
        );
        if let Err(e) = rec.check_kept(&file) {
            println!("  note: {e}");
        }
    }
    // The torn tail, when there is one, is the last problem.
    let torn_at = r
        .problems
        .len()
        .saturating_sub(usize::from(r.torn.is_some()));
    for (i, p) in r.problems.iter().enumerate() {
        println!("{}: {p}", if i < torn_at { "BROKEN" } else { "TORN" });
    }
    let recovered = match r.recoveries.len() {
        0 => String::new(),
        1 => " (1 recovery after a torn write)".to_string(),
        n => format!(" ({n} recoveries after torn writes)"),
    };
    let verdict = match &r.torn {
        _ if torn_at > 0 => "the chain is BROKEN".to_string(),
        Some(t) => format!(
            "the chain is intact up to a TORN WRITE at line {}, not recovered yet",
            t.line
        ),
        None => format!("the chain is intact{recovered}"),
    };
    println!(
        "{}: {} record(s), head {}: {verdict}",
        file.display(),
        r.records,
        r.head,
    );
    Ok(exit_if(r.problems.is_empty()))
}

/// `--replicas`: every replica's audit chain recorded in the store, and that each still holds
/// the record its replica reported at its last heartbeat.
fn verify_replicas(ctx: &Context) -> Outcome {
    let url = ctx.config.server.store_url();
    let rows = ctx
        .runtime
        .block_on(async {
            let store = crate::incidents::open(&url).await?;
            store.replicas().await
        })
        .map_err(|e| CliError::usage(format!("cannot read the replicas from the store: {e}")))?;
    if rows.is_empty() {
        println!("no replica has recorded an audit log in the store yet");
        return Ok(exit_if(true));
    }
    let mut ok = true;
    for r in &rows {
        let Some(path) = &r.audit_file else {
            println!(
                "{}: keeps its audit log in memory only: nothing to verify",
                r.name
            );
            continue;
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                println!("{}: BROKEN: cannot read {path}: {e}", r.name);
                ok = false;
                continue;
            }
        };
        let report = audit::verify_bytes(&bytes, None);
        for p in &report.problems {
            println!("{}: BROKEN: {p}", r.name);
        }
        let head = r.audit_head.as_deref().unwrap_or_default();
        let held = audit::holds(&bytes, r.audit_seq.max(0) as u64, head);
        if !held {
            println!(
                "{}: BROKEN: {path} no longer holds record {} with hash {head}, recorded in the store at its last heartbeat (cut back or rewritten)",
                r.name, r.audit_seq
            );
        }
        ok &= report.problems.is_empty() && held;
        println!(
            "{}: {path}: {} record(s), head {}: {}",
            r.name,
            report.records,
            report.head,
            if report.problems.is_empty() && held {
                format!(
                    "the chain is intact and holds record {} recorded in the store",
                    r.audit_seq
                )
            } else {
                "the chain is BROKEN".to_string()
            }
        );
    }
    Ok(exit_if(ok))
}
