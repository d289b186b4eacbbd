//! Pressure stall information (`/proc/pressure/{cpu,memory,io}`, Linux >= 4.20).
//!
//! PSI's `avg10` lags a fresh fault by seconds, so the snapshot uses the `total` counters
//! (microseconds of stall) at both ends of its window: the share of the window spent stalled.

/// One line of a PSI file (`some` or `full`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PsiLine {
    pub avg10: f64,
    pub avg60: f64,
    pub total_us: u64,
}

/// A parsed PSI file. `full` is absent for cpu on older kernels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Psi {
    pub some: PsiLine,
    pub full: Option<PsiLine>,
}

/// Parses the text of a PSI file.
pub fn parse(text: &str) -> Result<Psi, String> {
    let mut some = None;
    let mut full = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let kind = words.next().unwrap_or_default();
        let (mut avg10, mut avg60, mut total) = (None, None, None);
        for w in words {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| format!("field `{w}` is not key=value"))?;
            match k {
                "avg10" => avg10 = Some(v.parse::<f64>().map_err(|e| format!("avg10 `{v}`: {e}"))?),
                "avg60" => avg60 = Some(v.parse::<f64>().map_err(|e| format!("avg60 `{v}`: {e}"))?),
                "total" => total = Some(v.parse::<u64>().map_err(|e| format!("total `{v}`: {e}"))?),
                _ => {}
            }
        }
        let parsed = match (avg10, avg60, total) {
            (Some(avg10), Some(avg60), Some(total_us)) => PsiLine {
                avg10,
                avg60,
                total_us,
            },
            _ => return Err(format!("line `{line}` lacks avg10, avg60 or total")),
        };
        match kind {
            "some" => some = Some(parsed),
            "full" => full = Some(parsed),
            other => return Err(format!("unexpected line kind `{other}`")),
        }
    }
    Ok(Psi {
        some: some.ok_or("no `some` line")?,
        full,
    })
}

/// Share of a window (in %) spent stalled, from two `total` readings.
pub fn stall_pct(before: u64, after: u64, window_us: f64) -> Result<f64, String> {
    let d = super::signal::counter_delta("psi total", before, after)?;
    Ok((d as f64 / window_us * 100.0).min(100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: &str = "some avg10=0.07 avg60=1.34 avg300=0.60 total=2449324\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";

    #[test]
    fn parses_captured_file() {
        let p = parse(CPU).unwrap();
        assert_eq!(p.some.total_us, 2449324);
        assert_eq!(p.some.avg60, 1.34);
        assert_eq!(p.full.unwrap().total_us, 0);
    }

    #[test]
    fn old_kernel_cpu_file_without_full_line() {
        let p = parse("some avg10=1.00 avg60=2.00 avg300=3.00 total=10\n").unwrap();
        assert!(p.full.is_none());
    }

    #[test]
    fn malformed_files_are_clear_errors() {
        assert!(parse("").unwrap_err().contains("some"));
        assert!(
            parse("some avg10=0.07 avg60=1.34")
                .unwrap_err()
                .contains("total")
        );
        assert!(
            parse("some avg10=x avg60=1 total=3")
                .unwrap_err()
                .contains("avg10")
        );
        assert!(parse("some avg10").unwrap_err().contains("key=value"));
    }

    #[test]
    fn stall_share_of_window() {
        assert_eq!(stall_pct(1_000, 501_000, 1_000_000.0).unwrap(), 50.0);
        assert!(stall_pct(10, 5, 1e6).is_err());
    }
}
