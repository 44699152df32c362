//! A herd's name (`--name`): it names the default control socket (Unix) or pipe (Windows),
//! so it is kept to characters that are safe in both.

/// Checks a `--name`: letters, digits, `.`, `_`, `-`, at most 64.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--name '{name}' must be 1 to 64 ASCII letters, digits, '.', '_' or '-' (not \
             starting with '.')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("default").is_ok());
        assert!(check_name("api-v2.prod").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("../x").is_err());
        assert!(check_name(r"a\b").is_err());
        assert!(check_name(".hidden").is_err());
        // 'ü' is a letter, but not one a name may have: the error says which letters.
        let err = check_name("müh").unwrap_err();
        assert!(err.contains("ASCII letters"), "{err}");
    }
}
