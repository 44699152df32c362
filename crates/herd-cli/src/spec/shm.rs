//! `--shm NAME=SIZE`: shared memory passed to workers like a socket.

use std::str::FromStr;

use super::parse::is_name_char;

/// One `--shm` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShmSpec {
    /// Its name in `LISTEN_FDNAMES`.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The largest segment herd creates (1 TiB): more is surely a typo.
const MAX_SIZE: u64 = 1 << 40;

impl FromStr for ShmSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<ShmSpec, String> {
        let (name, size) = text.split_once('=').ok_or_else(|| {
            format!("'{text}' is not NAME=SIZE (e.g. counters=4096 or cache=64M)")
        })?;
        if name.is_empty() || !name.chars().all(is_name_char) {
            return Err(format!(
                "'{name}' is not a valid name (letters, digits, '.', '_', '-')"
            ));
        }
        let (digits, unit) = size.split_at(
            size.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(size.len()),
        );
        // The units `--max-memory` takes, in either case.
        let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            _ => {
                return Err(format!(
                    "unknown size unit '{unit}' in '{size}'; use K, M, G or T"
                ))
            }
        };
        let size = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .filter(|&n| (1..=MAX_SIZE).contains(&n))
            .ok_or_else(|| format!("size '{size}' must be from 1 byte to 1 TiB"))?;
        Ok(ShmSpec {
            name: name.to_string(),
            size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_errors() {
        let spec: ShmSpec = "cache=64M".parse().unwrap();
        assert_eq!((spec.name.as_str(), spec.size), ("cache", 64 << 20));
        assert_eq!("c=4096".parse::<ShmSpec>().unwrap().size, 4096);
        assert_eq!("c=2K".parse::<ShmSpec>().unwrap().size, 2048);
        assert_eq!("c=1T".parse::<ShmSpec>().unwrap().size, 1 << 40);
        // As --max-memory takes them: `64m` was refused there.
        assert_eq!("c=64m".parse::<ShmSpec>().unwrap().size, 64 << 20);
        assert_eq!("c=2kb".parse::<ShmSpec>().unwrap().size, 2048);
        assert!("c=2T".parse::<ShmSpec>().unwrap_err().contains("to 1 TiB"));
        assert!("c=0"
            .parse::<ShmSpec>()
            .unwrap_err()
            .contains("from 1 byte"));
        assert!("c=3X"
            .parse::<ShmSpec>()
            .unwrap_err()
            .contains("unknown size unit"));
        assert!("c".parse::<ShmSpec>().unwrap_err().contains("NAME=SIZE"));
        assert!("a:b=1"
            .parse::<ShmSpec>()
            .unwrap_err()
            .contains("not a valid name"));
    }
}
