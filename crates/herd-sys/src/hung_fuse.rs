//! Tests' FUSE filesystems (Linux, as root): mounted with a raw `/dev/fuse`, served by the test
//! as it likes, and aborted at the end (`/sys/fs/fuse/connections/N/abort`), so that nothing
//! waiting on them outlives the test. For herd-sys's tests, and herd-cli's with the
//! `test-fuse` feature; not part of herd-sys's API.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// A FUSE mount of the test's: its directory and the daemon's end (`/dev/fuse`). Dropped (as
/// a test that failed unwinds, too), its connection is aborted and it is unmounted.
pub struct Mount {
    /// Where it is mounted.
    pub dir: PathBuf,
    /// The daemon's end.
    pub fuse: std::fs::File,
}

impl Mount {
    /// Mounts a FUSE filesystem at a new directory named after `name`; `None` (having said why
    /// the test is skipped) where this process is not root or has no `/dev/fuse`.
    pub fn new(name: &str) -> Option<Mount> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting FUSE needs root");
            return None;
        }
        // No `let ... else`: herd-sys builds with Rust 1.63.
        let fuse = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
        {
            Ok(fuse) => fuse,
            Err(_) => {
                eprintln!("skipped: no /dev/fuse");
                return None;
            }
        };
        let dir = std::env::temp_dir().join(format!("herd-sys-{}-{}", name, std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let target = CString::new(dir.as_os_str().as_bytes()).ok()?;
        let data = format!(
            "fd={},rootmode=40000,user_id=0,group_id=0",
            fuse.as_raw_fd()
        );
        let data = CString::new(data).ok()?;
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let mounted = unsafe {
            libc::mount(
                b"hung\0".as_ptr().cast(),
                target.as_ptr(),
                b"fuse\0".as_ptr().cast(),
                0,
                data.as_ptr().cast(),
            )
        };
        if mounted != 0 {
            eprintln!("skipped: cannot mount FUSE here");
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(Mount { dir, fuse })
    }

    /// Aborts the connection (whatever waits on it ends), unmounts and removes the directory.
    pub fn end(self) {}
}

impl Drop for Mount {
    fn drop(&mut self) {
        abort(&self.dir);
        if let Ok(target) = CString::new(self.dir.as_os_str().as_bytes()) {
            // SAFETY: a NUL-terminated path that outlives the call.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Aborts the FUSE connection mounted at `dir` (`/sys/fs/fuse/connections/N/abort`, N the
/// mount's minor device number, read from /proc/self/mountinfo: a stat of `dir` would wait).
pub fn abort(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let at = dir.to_string_lossy();
    let minor = mounts.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.get(4) != Some(&at.as_ref()) {
            return None;
        }
        fields.get(2)?.split(':').nth(1).map(str::to_string)
    });
    if let Some(minor) = minor {
        let connections = "/sys/fs/fuse/connections";
        let abort = format!("{}/{}/abort", connections, minor);
        if !Path::new(&abort).exists() {
            // fusectl, as systemd mounts it; where it is not, this root test does.
            // SAFETY: NUL-terminated strings that outlive the call; no data.
            unsafe {
                libc::mount(
                    b"fusectl\0".as_ptr().cast(),
                    b"/sys/fs/fuse/connections\0".as_ptr().cast(),
                    b"fusectl\0".as_ptr().cast(),
                    0,
                    std::ptr::null(),
                )
            };
        }
        let _ = std::fs::write(abort, b"1");
    }
}

/// The requests a FUSE daemon of [`Mount::serve_one_file`] answers (`fuse_kernel.h`).
const LOOKUP: u32 = 1;
const FORGET: u32 = 2;
const GETATTR: u32 = 3;
const OPEN: u32 = 14;
const FLUSH: u32 = 25;
const INIT: u32 = 26;
const INTERRUPT: u32 = 36;
const BATCH_FORGET: u32 = 42;

impl Mount {
    /// Serves the mount, on a thread of its own, as a directory holding one empty regular file,
    /// `f`: requests to flush a file (sent by every close of one) are answered while
    /// `answer_flush` is true, and only counted (in the result) once it is false, so that the
    /// close that sent one waits until the connection is aborted.
    pub fn serve_one_file(
        &self,
        answer_flush: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
        let fuse = self.fuse.try_clone().expect("a copy of /dev/fuse");
        serve_one_file(fuse, move |_| {
            answer_flush.load(std::sync::atomic::Ordering::SeqCst)
        })
    }
}

/// Serves the FUSE mount whose daemon's end is `fuse`, on a thread of its own until its
/// connection is aborted, as a directory holding one empty regular file, `f`: a request to
/// flush a file (sent by every close of one) is answered if `answer_flush` says so for the pid
/// of the thread that sent it, else only counted (in the result), and the close that sent it
/// waits until the connection is aborted.
pub fn serve_one_file(
    mut fuse: std::fs::File,
    answer_flush: impl Fn(u32) -> bool + Send + 'static,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let unanswered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&unanswered);
    std::thread::spawn(move || {
        let mut request = vec![0u8; 1 << 17];
        // Ends once the connection is aborted (ENODEV).
        while let Ok(n) = fuse.read(&mut request) {
            if n < 40 {
                continue;
            }
            let word = |at: usize| u32::from_ne_bytes(request[at..at + 4].try_into().unwrap());
            let (opcode, nodeid) = (
                word(4),
                u64::from_ne_bytes(request[16..24].try_into().unwrap()),
            );
            let unique = u64::from_ne_bytes(request[8..16].try_into().unwrap());
            let body: Option<Vec<u8>> = match opcode {
                FORGET | BATCH_FORGET | INTERRUPT => continue,
                FLUSH if !answer_flush(word(32)) => {
                    counted.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                INIT => {
                    let mut out = vec![0u8; 64];
                    out[0..4].copy_from_slice(&7u32.to_ne_bytes());
                    out[4..8].copy_from_slice(&31u32.to_ne_bytes());
                    out[20..24].copy_from_slice(&4096u32.to_ne_bytes());
                    out[24..28].copy_from_slice(&1u32.to_ne_bytes());
                    Some(out)
                }
                LOOKUP => {
                    let mut out = vec![0u8; 40];
                    out[0..8].copy_from_slice(&2u64.to_ne_bytes());
                    out.extend(attr(2));
                    Some(out)
                }
                GETATTR => {
                    let mut out = vec![0u8; 16];
                    out.extend(attr(nodeid));
                    Some(out)
                }
                OPEN | FLUSH => Some(vec![0u8; 16]),
                _ => None,
            };
            // Anything else is not implemented (ENOSYS).
            let error: i32 = if body.is_some() { 0 } else { -libc::ENOSYS };
            let body = body.unwrap_or_default();
            let mut reply = Vec::with_capacity(16 + body.len());
            reply.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
            reply.extend_from_slice(&error.to_ne_bytes());
            reply.extend_from_slice(&unique.to_ne_bytes());
            reply.extend(body);
            let _ = fuse.write(&reply);
        }
    });
    unanswered
}

/// A `fuse_attr` (88 bytes): node 1 is the root directory, any other an empty regular file.
fn attr(node: u64) -> Vec<u8> {
    let mut attr = vec![0u8; 88];
    attr[0..8].copy_from_slice(&node.to_ne_bytes());
    let mode = match node {
        1 => libc::S_IFDIR | 0o755,
        _ => libc::S_IFREG | 0o644,
    };
    attr[60..64].copy_from_slice(&mode.to_ne_bytes());
    attr[64..68].copy_from_slice(&1u32.to_ne_bytes());
    attr
}
