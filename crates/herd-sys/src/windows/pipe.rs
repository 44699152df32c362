//! Named-pipe servers that only herd's own user, Administrators, LocalSystem and the accounts
//! the caller names can connect to (and, re-exported, the process at the other end of a pipe).
//!
//! [`SecurePipe`] holds a pipe's name and security descriptor and creates its server
//! instances (tokio's `NamedPipeServer`); the first one with `FILE_FLAG_FIRST_PIPE_INSTANCE`,
//! so that a process that already created the name (to squat it) makes herd fail instead of
//! serving behind it. Remote (SMB) clients are rejected. [`client_process_id`] is how the
//! server learns who connected, from the system and never from the client's word.
//!
//! [`Instances`] is where a server takes each next instance from, and how an instance whose
//! client is gone is replaced, never connected again: mio's named pipe (under tokio's) keeps a
//! finished connection's read and write state in the instance (bytes or a read error the
//! client left, a write that failed as it left), and a reconnected instance gives them to its
//! next client (mio issue 1983), which was taken for gone at once, or whose first answer failed
//! with the last client's write. So when no new instance can be made while the only one serves
//! a client, that one is closed once its client is gone and a new one made in its place
//! ([`Instances::renew`]), the pipe's name staying herd's.

use std::ffi::{OsStr, OsString};
use std::io;
use std::mem;
use std::os::windows::io::{AsHandle, AsRawHandle};
use std::ptr;

use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use windows_sys::Win32::Foundation::{LocalFree, ERROR_ACCESS_DENIED, HLOCAL};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES};
use windows_sys::Win32::System::Pipes::GetNamedPipeHandleStateW;

use super::check;
pub use super::peer::{client_process_id, server_process_id};
use super::sid::wide_z;
pub use super::sid::Sid;

/// Generic read and write, except `FILE_CREATE_PIPE_INSTANCE` (which `FILE_GENERIC_WRITE`
/// includes, as `FILE_APPEND_DATA`): the accounts a caller adds can connect but cannot create
/// instances of the pipe to serve their own.
const CLIENT_RIGHTS: &str = "0x12019b";

/// The security descriptor of a herd pipe, in SDDL: a protected DACL that gives all rights to
/// LocalSystem (`SY`), Administrators (`BA`) and `owner` (the user herd runs as), and
/// connecting rights to each of `also_allowed`.
pub fn descriptor_sddl(owner: &Sid, also_allowed: &[Sid]) -> String {
    let mut sddl = format!("D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;{})", owner.as_str());
    for sid in also_allowed {
        sddl.push_str(&format!("(A;;{CLIENT_RIGHTS};;;{})", sid.as_str()));
    }
    sddl
}

/// A self-relative security descriptor, freed on drop.
#[derive(Debug)]
struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is immutable once built, and only read by the system calls that are
// given it; LocalFree may run on any thread.
unsafe impl Send for SecurityDescriptor {}
// SAFETY: as above.
unsafe impl Sync for SecurityDescriptor {}

impl SecurityDescriptor {
    /// Builds it from SDDL (`ConvertStringSecurityDescriptorToSecurityDescriptorW`).
    fn from_sddl(sddl: &str) -> io::Result<SecurityDescriptor> {
        let wide = wide_z(OsStr::new(sddl))?;
        let mut descriptor = ptr::null_mut();
        // SAFETY: `wide` is NUL-terminated; `descriptor` is ours to fill with a LocalAlloc'd
        // descriptor, which this struct then owns.
        check(unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                wide.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                ptr::null_mut(),
            )
        })?;
        Ok(SecurityDescriptor(descriptor))
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: the descriptor came from LocalAlloc (through the conversion) and is owned.
        unsafe { LocalFree(self.0 as HLOCAL) };
    }
}

/// A named pipe's name and security: makes its server instances.
#[derive(Debug)]
pub struct SecurePipe {
    name: OsString,
    sddl: String,
    descriptor: SecurityDescriptor,
}

impl SecurePipe {
    /// The pipe `name` (`\\.\pipe\...`), admitting the current user, Administrators,
    /// LocalSystem and `also_allowed` ([`descriptor_sddl`]).
    pub fn new(name: impl Into<OsString>, also_allowed: &[Sid]) -> io::Result<SecurePipe> {
        let sddl = descriptor_sddl(&Sid::current_user()?, also_allowed);
        let descriptor = SecurityDescriptor::from_sddl(&sddl)?;
        Ok(SecurePipe {
            name: name.into(),
            sddl,
            descriptor,
        })
    }

    /// Its name.
    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// Its security descriptor, in SDDL.
    pub fn sddl(&self) -> &str {
        &self.sddl
    }

    /// Creates the pipe's first server instance, failing (`ERROR_ACCESS_DENIED`) when an
    /// instance of that name exists already, whoever made it: the system refuses it
    /// (`FILE_FLAG_FIRST_PIPE_INSTANCE`), and so does this function if the pipe then has more
    /// than one instance (`GetNamedPipeHandleStateW`; Wine ignores the flag). Needs a tokio
    /// runtime with I/O.
    pub fn first_instance(&self) -> io::Result<NamedPipeServer> {
        let server = self.create(true)?;
        if instances(&server)? > 1 {
            return Err(io::Error::from_raw_os_error(ERROR_ACCESS_DENIED as i32));
        }
        Ok(server)
    }

    /// Creates another server instance, to wait for the next client while one is served.
    pub fn next_instance(&self) -> io::Result<NamedPipeServer> {
        self.create(false)
    }

    fn create(&self, first: bool) -> io::Result<NamedPipeServer> {
        let mut attributes = SECURITY_ATTRIBUTES {
            nLength: mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.descriptor.0,
            bInheritHandle: 0,
        };
        let mut options = ServerOptions::new();
        options
            .first_pipe_instance(first)
            .reject_remote_clients(true);
        // SAFETY: `attributes` is a valid SECURITY_ATTRIBUTES whose descriptor `self` owns and
        // keeps alive for the call (the system copies it into the pipe).
        unsafe {
            options.create_with_security_attributes_raw(
                &self.name,
                (&mut attributes as *mut SECURITY_ATTRIBUTES).cast(),
            )
        }
    }
}

/// The instances of a [`SecurePipe`], each made by `next` ([`SecurePipe::next_instance`]; a
/// test's may fail): while none can be made, a server serves on the one it has and renews it
/// for the next client.
#[derive(Debug)]
pub struct Instances<'a, N> {
    pipe: &'a SecurePipe,
    next: N,
    /// Whether the pipe's only instance was closed before another could be made: the name is
    /// no longer held, and the next instance must be its first again.
    released: bool,
}

impl<'a, N: FnMut(&SecurePipe) -> io::Result<NamedPipeServer>> Instances<'a, N> {
    /// The instances of `pipe`, made by `next`.
    pub fn new(pipe: &'a SecurePipe, next: N) -> Self {
        Instances {
            pipe,
            next,
            released: false,
        }
    }

    /// The pipe's name.
    pub fn name(&self) -> &'a OsStr {
        self.pipe.name()
    }

    /// A new instance to wait for the next client on: another of the pipe's, or its first again
    /// if [`renew`](Instances::renew) let the name go (so that a process that took the name
    /// meanwhile makes this fail instead of herd serving behind it).
    pub fn next_instance(&mut self) -> io::Result<NamedPipeServer> {
        if self.released {
            let first = self.pipe.first_instance();
            self.released = first.is_err();
            return first;
        }
        (self.next)(self.pipe)
    }

    /// Closes `lent`, an instance whose client is gone, and makes a new one in its place: while
    /// `lent` is still open if one can be made, else once it is closed (which frees what it
    /// held), as the pipe's first instance again if `lent` was its only one. An instance with
    /// a read still pending is closed only once the runtime has seen that read cancelled, so
    /// the first instance can then fail at once: try [`next_instance`](Instances::next_instance)
    /// again after a pause.
    pub fn renew(&mut self, lent: NamedPipeServer) -> io::Result<NamedPipeServer> {
        // A write still pending for the client that left fails now, instead of holding the
        // instance and its buffer.
        let _ = lent.disconnect();
        if let Ok(next) = self.next_instance() {
            return Ok(next);
        }
        let only = instances(&lent).map_or(true, |count| count <= 1);
        drop(lent);
        self.released |= only;
        self.next_instance()
    }
}

/// How many instances the pipe of `pipe` (a server instance) has now, `pipe` included
/// (`GetNamedPipeHandleStateW`).
fn instances(pipe: &impl AsHandle) -> io::Result<u32> {
    let mut count = 0u32;
    // SAFETY: the pipe handle is live; `count` is ours to fill; the other outputs are null,
    // which the call allows.
    check(unsafe {
        GetNamedPipeHandleStateW(
            pipe.as_handle().as_raw_handle(),
            ptr::null_mut(),
            &mut count,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            0,
        )
    })?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(text: &str) -> Sid {
        Sid::parse(text).unwrap()
    }

    #[test]
    fn the_descriptor_admits_system_administrators_the_owner_and_the_named() {
        let owner = sid("S-1-5-21-1-2-3-1000");
        assert_eq!(
            descriptor_sddl(&owner, &[]),
            "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;S-1-5-21-1-2-3-1000)"
        );
        assert_eq!(
            descriptor_sddl(&owner, &[sid("S-1-5-32-545"), sid("S-1-5-21-1-2-3-1001")]),
            "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;S-1-5-21-1-2-3-1000)\
             (A;;0x12019b;;;S-1-5-32-545)(A;;0x12019b;;;S-1-5-21-1-2-3-1001)"
        );
    }
}
