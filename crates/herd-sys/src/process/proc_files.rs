//! Reading `/proc` files, which have no size: without `fs::read_to_string`'s `statx` for a
//! size hint and its small first reads. A seq_file (`/proc/PID/task/TID/children`) finds its
//! place again from its first entry at each `read`, so reading thousands of entries a little
//! at a time costs the kernel the square of their number.

use std::io::Read;

/// The text of the file at `path` if it fits in `buffer`, read without `fs::read_to_string`'s
/// `statx` for a size hint (a `/proc` file has no size): herd's sampler reads one of these for
/// each of thousands of workers every second. `None` if it cannot be read, is not UTF-8 or
/// does not fit.
pub(super) fn read_small<'a>(path: &str, buffer: &'a mut [u8]) -> Option<&'a str> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = 0;
    loop {
        match file.read(&mut buffer[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
        if len == buffer.len() {
            return None;
        }
    }
    std::str::from_utf8(&buffer[..len]).ok()
}

/// The text of the file at `path`, read in reads of at least [`LARGE_READ`] bytes (for a list
/// of thousands of pids, one read). `None` if it cannot be read or is not UTF-8.
pub(super) fn read_large(path: &str) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut text = Vec::new();
    loop {
        let len = text.len();
        text.resize(len + LARGE_READ, 0);
        match file.read(&mut text[len..]) {
            Ok(0) => {
                text.truncate(len);
                break;
            }
            Ok(n) => text.truncate(len + n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => text.truncate(len),
            Err(_) => return None,
        }
    }
    String::from_utf8(text).ok()
}

/// The least a [`read_large`] asks for at once.
const LARGE_READ: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_reads_refuse_what_does_not_fit() {
        let dir = std::env::temp_dir().join(format!("herd-sys-small-{}", std::process::id()));
        std::fs::write(&dir, b"12345").unwrap();
        let path = dir.to_str().unwrap();
        assert_eq!(read_small(path, &mut [0; 6]), Some("12345"));
        assert_eq!(
            read_small(path, &mut [0; 5]),
            None,
            "no room to see the end"
        );
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(read_small(path, &mut [0; 6]), None, "gone");
    }

    #[test]
    fn large_reads_take_the_whole_file() {
        let path = std::env::temp_dir().join(format!("herd-sys-large-{}", std::process::id()));
        let text: String = (0..40_000).map(|i| format!("{i} ")).collect();
        std::fs::write(&path, &text).unwrap();
        let name = path.to_str().unwrap();
        assert_eq!(read_large(name).as_deref(), Some(text.as_str()));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read_large(name), None, "gone");
    }
}
