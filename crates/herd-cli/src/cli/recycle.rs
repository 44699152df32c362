//! `--max-memory [pss=]SIZE` and `--max-lifetime DURATION[,jitter=DURATION]`: when workers
//! are recycled.

use std::time::Duration;

pub use herd_core::MemoryKind;

use super::parse::{minus_zero, parse_duration};

/// `--max-memory`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxMemory {
    /// The figure limited.
    pub kind: MemoryKind,
    /// The limit, in bytes.
    pub bytes: u64,
}

/// `--max-lifetime`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxLifetime {
    /// How long a worker runs.
    pub lifetime: Duration,
    /// The most its lifetime is lengthened by, at random.
    pub jitter: Duration,
}

/// The smallest memory limit: below it no worker could run.
const MIN_MEMORY: u64 = 1 << 20;
/// The largest: 1 PiB, beyond any machine.
const MAX_MEMORY: u64 = 1 << 50;

/// Parses `--max-memory`: SIZE or `rss=SIZE` (resident memory), `pss=SIZE` (PSS).
pub fn parse_max_memory(text: &str) -> Result<MaxMemory, String> {
    let (kind, size) = match text.split_once('=') {
        Some(("rss", size)) => (MemoryKind::Rss, size),
        Some(("pss", size)) => (MemoryKind::Pss, size),
        Some((kind, _)) => {
            return Err(format!(
                "'{kind}' is not a memory figure: write SIZE, rss=SIZE or pss=SIZE (e.g. 512M)"
            ))
        }
        None => (MemoryKind::Rss, text),
    };
    let bytes = parse_size(size)?;
    if bytes < MIN_MEMORY {
        return Err(format!(
            "--max-memory '{size}' must be from 1M to 1024T; no worker runs in less"
        ));
    }
    if bytes > MAX_MEMORY {
        return Err(format!(
            "--max-memory '{size}' must be from 1M to 1024T; no machine has more"
        ));
    }
    Ok(MaxMemory { kind, bytes })
}

/// A size: digits and a unit, K, M, G or T (powers of 1024; KiB, MiB... and lower case too),
/// or bytes without one.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = minus_zero(text);
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "'{text}' is not a size: write digits and K, M, G or T (e.g. 512M, 2G)"
            ))
        }
    };
    let not_a_size =
        || format!("'{text}' is not a size: write digits and K, M, G or T (e.g. 512M, 2G)");
    if digits.is_empty() {
        return Err(not_a_size());
    }
    // Digits only, past here: what does not fit is a size too large, not a wrong one.
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("'{text}' is too large: at most 1024T"))
}

/// Parses `--max-lifetime DURATION[,jitter=DURATION]`.
pub fn parse_max_lifetime(text: &str) -> Result<MaxLifetime, String> {
    let mut parts = text.split(',');
    let lifetime = parts.next().unwrap_or_default();
    let mut jitter = None;
    for option in parts {
        match option.split_once('=') {
            Some(("jitter", _)) if jitter.is_some() => {
                return Err("jitter is given twice in --max-lifetime: keep one".to_string())
            }
            Some(("jitter", value)) => jitter = Some(parse_duration(value)?),
            _ => {
                return Err(format!(
                    "'{option}' is not an option of --max-lifetime: write \
                     DURATION[,jitter=DURATION] (e.g. 6h,jitter=30m)"
                ))
            }
        }
    }
    let jitter = jitter.unwrap_or(Duration::ZERO);
    let lifetime = parse_duration(lifetime)?;
    if lifetime < Duration::from_secs(1) {
        return Err(format!(
            "--max-lifetime '{text}' is too short: workers would be recycled all the time; \
             give at least 1s"
        ));
    }
    Ok(MaxLifetime { lifetime, jitter })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits() {
        let rss = |bytes| MaxMemory {
            kind: MemoryKind::Rss,
            bytes,
        };
        assert_eq!(parse_max_memory("512M"), Ok(rss(512 << 20)));
        assert_eq!(parse_max_memory("rss=2G"), Ok(rss(2 << 30)));
        assert_eq!(parse_max_memory("1536mib"), Ok(rss(1536 << 20)));
        assert_eq!(parse_max_memory("1048576"), Ok(rss(1 << 20)));
        let pss = parse_max_memory("pss=300M").unwrap();
        assert_eq!((pss.kind, pss.bytes), (MemoryKind::Pss, 300 << 20));
        for (bad, says) in [
            ("vss=1G", "'vss' is not a memory figure"),
            ("12X", "'12X' is not a size"),
            ("", "'' is not a size"),
            ("1.5G", "'1.5G' is not a size"),
            ("100K", "must be from 1M to 1024T; no worker runs in less"),
            ("0", "must be from 1M"),
            // `-0` is 0, as everywhere a number is taken: it was "not a size".
            ("-0", "--max-memory '-0' must be from 1M"),
            // 1P was named as the bound, a unit the parser refuses, with a reason for the
            // other side; an overflow was "not a size".
            ("1025T", "must be from 1M to 1024T; no machine has more"),
            (
                "18446744073709551615",
                "must be from 1M to 1024T; no machine has more",
            ),
            ("99999999999T", "'99999999999T' is too large: at most 1024T"),
            ("18446744073709551616", "is too large: at most 1024T"),
            ("G", "'G' is not a size"),
        ] {
            let error = parse_max_memory(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn lifetimes() {
        let hour = Duration::from_secs(3600);
        assert_eq!(
            parse_max_lifetime("1h"),
            Ok(MaxLifetime {
                lifetime: hour,
                jitter: Duration::ZERO
            })
        );
        let with = parse_max_lifetime("6h,jitter=30m").unwrap();
        assert_eq!((with.lifetime, with.jitter), (6 * hour, hour / 2));
        let minus_zero = parse_max_lifetime("1h,jitter=-0").unwrap();
        assert_eq!(minus_zero.jitter, Duration::ZERO);
        for (bad, says) in [
            ("0s", "too short"),
            ("-0", "too short"),
            ("500ms", "too short"),
            (
                "1h,spread=1m",
                "'spread=1m' is not an option of --max-lifetime",
            ),
            ("1h,jitter=x", "not a duration"),
            ("1h,jitter=1m,jitter=2m", "jitter is given twice"),
            ("1h,jitter=1m,spread=1m", "'spread=1m' is not an option"),
            ("soon", "not a duration"),
        ] {
            let error = parse_max_lifetime(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
