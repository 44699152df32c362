//! How herd names the handles a Windows worker inherits, in its environment: pure, so it is
//! built and tested on every platform.
//!
//! - `HERD_STOP_EVENT=VALUE`: the worker's stop request, an event ([`crate::stop_requested`]).
//! - `HERD_SHM=NAME=VALUE[,NAME=VALUE...]`: shared memory by name ([`crate::shm`]).
//!
//! A VALUE is the handle's value in decimal, the same in herd and in the worker (an inherited
//! handle keeps its value). Names are `--shm` names: letters, digits, `.`, `_` and `-`.
// Only the Windows code uses it; the tests run everywhere.
#![cfg_attr(not(windows), allow(dead_code))]

/// The variable that names the worker's stop event.
pub(crate) const STOP_EVENT: &str = "HERD_STOP_EVENT";
/// The variable that names the worker's shared memory.
pub(crate) const SHM: &str = "HERD_SHM";

/// A handle value: a decimal number, not 0.
pub(crate) fn parse_value(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&value| value != 0)
}

/// Whether `name` can be a shared memory's name in `HERD_SHM`.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `HERD_SHM`'s value for `entries`, or the first name that cannot be in it.
pub(crate) fn format_list(entries: &[(&str, u64)]) -> Result<String, String> {
    let mut list = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        if !is_valid_name(name) {
            return Err(format!(
                "{name:?} cannot name shared memory (letters, digits, '.', '_', '-')"
            ));
        }
        if list.iter().any(|(seen, _)| seen == name) {
            return Err(format!("the shared memory {name:?} is given twice"));
        }
        list.push((*name, *value));
    }
    Ok(list
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(","))
}

/// The entries of a `HERD_SHM` value; an error says what is wrong with it.
pub(crate) fn parse_list(text: &str) -> Result<Vec<(String, u64)>, String> {
    let mut entries: Vec<(String, u64)> = Vec::new();
    for item in text.split(',').filter(|item| !item.is_empty()) {
        let parsed = item
            .split_once('=')
            .filter(|(name, _)| is_valid_name(name))
            .and_then(|(name, value)| Some((name, parse_value(value)?)));
        let (name, value) = parsed.ok_or_else(|| {
            format!("{SHM}: {item:?} is not NAME=HANDLE (herd sets it: do not set it yourself)")
        })?;
        if entries.iter().any(|(seen, _)| seen == name) {
            return Err(format!("{SHM}: {name:?} is given twice"));
        }
        entries.push((name.to_string(), value));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_values_are_nonzero_decimal_numbers() {
        assert_eq!(parse_value("1234"), Some(1234));
        for bad in [
            "",
            "0",
            "-4",
            "+4",
            "0x10",
            " 4",
            "4 ",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_value(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_shared_memory_list_reads_back_what_was_written() {
        let text = format_list(&[("counter", 1204), ("cache.v2", 88)]).unwrap();
        assert_eq!(text, "counter=1204,cache.v2=88");
        let expected = vec![("counter".to_string(), 1204), ("cache.v2".to_string(), 88)];
        assert_eq!(parse_list(&text).unwrap(), expected);
        assert_eq!(parse_list("").unwrap(), vec![]);
    }

    #[test]
    fn bad_lists_and_names_are_refused_with_the_reason() {
        assert!(format_list(&[("a,b", 1)])
            .unwrap_err()
            .contains("cannot name"));
        assert!(format_list(&[("a=b", 1)])
            .unwrap_err()
            .contains("cannot name"));
        assert!(format_list(&[("", 1)]).unwrap_err().contains("cannot name"));
        assert!(format_list(&[("a", 1), ("a", 2)])
            .unwrap_err()
            .contains("twice"));
        for bad in ["a", "a=", "=4", "a=0", "a=x", "a b=4", "a=4=5"] {
            let e = parse_list(bad).unwrap_err();
            assert!(e.contains("is not NAME=HANDLE"), "{bad:?}: {e}");
        }
        assert!(parse_list("a=1,a=2").unwrap_err().contains("twice"));
    }
}
