//! The read end of a worker's stdout or stderr pipe, as its reader waits on it, and the
//! [`Wake`] that stops every reader's wait when herd hands its pipes over.

use std::fs::File;
use std::io::{self, Read};
use std::time::Duration;

/// A worker's output pipe, read by herd.
#[derive(Debug)]
pub struct Pipe(File);

impl Pipe {
    /// Waits for data or the end of the pipe, for `wake`, or for `timeout` (`None`: no
    /// limit); `false` if woken or timed out first. On Windows at once: its reader blocks in
    /// `read` (herd never hands its pipes to a new image there).
    pub fn wait(&self, wake: &Wake, timeout: Option<Duration>) -> io::Result<bool> {
        imp::wait(&self.0, wake, timeout)
    }

    /// Whether data or the end of the pipe waits now (always on Windows).
    pub fn ready_now(&self) -> bool {
        imp::ready_now(&self.0)
    }

    /// The pipe as a file, to hand over.
    pub fn into_file(self) -> File {
        self.0
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl From<io::PipeReader> for Pipe {
    fn from(pipe: io::PipeReader) -> Pipe {
        Pipe(imp::file(pipe))
    }
}

impl From<File> for Pipe {
    fn from(pipe: File) -> Pipe {
        Pipe(pipe)
    }
}

pub use imp::Wake;

#[cfg(unix)]
mod imp {
    use std::io::Write;
    use std::os::unix::io::{AsFd, OwnedFd};

    use super::*;

    /// A pipe that becomes readable, for every reader at once, when woken.
    #[derive(Debug)]
    pub struct Wake(io::PipeReader, io::PipeWriter);

    impl Wake {
        /// A wake not set.
        pub fn new() -> io::Result<Wake> {
            let (read, write) = io::pipe()?;
            Ok(Wake(read, write))
        }

        /// Ends every wait, and every one to come until [`reset`](Self::reset).
        pub fn set(&self) {
            let _ = (&self.1).write_all(b"!");
        }

        /// Lets waits wait again.
        pub fn reset(&self) {
            let mut byte = [0u8; 1];
            if herd_sys::fd::wait_readable(&[self.0.as_fd()], Some(Default::default()))
                .unwrap_or(false)
            {
                let _ = (&self.0).read(&mut byte);
            }
        }
    }

    pub fn wait(file: &File, wake: &Wake, timeout: Option<Duration>) -> io::Result<bool> {
        herd_sys::fd::wait_readable(&[file.as_fd(), wake.0.as_fd()], timeout)
    }

    pub fn ready_now(file: &File) -> bool {
        herd_sys::fd::wait_readable(&[file.as_fd()], Some(Duration::ZERO)).unwrap_or(false)
    }

    pub fn file(pipe: io::PipeReader) -> File {
        File::from(OwnedFd::from(pipe))
    }
}

#[cfg(windows)]
mod imp {
    use std::os::windows::io::OwnedHandle;

    use super::*;

    /// Nothing to wake on Windows: readers block in `read`.
    #[derive(Debug)]
    pub struct Wake;

    impl Wake {
        /// A wake not set.
        pub fn new() -> io::Result<Wake> {
            Ok(Wake)
        }

        /// Nothing: see [`Wake`].
        pub fn set(&self) {}

        /// Nothing: see [`Wake`].
        pub fn reset(&self) {}
    }

    pub fn wait(_: &File, _: &Wake, _: Option<Duration>) -> io::Result<bool> {
        Ok(true)
    }

    pub fn ready_now(_: &File) -> bool {
        true
    }

    pub fn file(pipe: io::PipeReader) -> File {
        File::from(OwnedHandle::from(pipe))
    }
}
