//! Named-pipe servers that only herd's own user, Administrators, LocalSystem and the accounts
//! the caller names can connect to, and the process at the other end of a pipe.
//!
//! [`SecurePipe`] holds a pipe's name and security descriptor and creates its server
//! instances (tokio's `NamedPipeServer`); the first one with `FILE_FLAG_FIRST_PIPE_INSTANCE`,
//! so that a process that already created the name (to squat it) makes herd fail instead of
//! serving behind it. Remote (SMB) clients are rejected. [`client_process_id`] is how the
//! server learns who connected, from the system and never from the client's word.

use std::ffi::{OsStr, OsString};
use std::io;
use std::mem;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsHandle, AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr;

use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use windows_sys::Win32::Foundation::{LocalFree, ERROR_ACCESS_DENIED, HLOCAL};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, LookupAccountNameW, TokenUser, PSECURITY_DESCRIPTOR, PSID,
    SECURITY_ATTRIBUTES, SID_NAME_USE, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::System::Pipes::{
    GetNamedPipeClientProcessId, GetNamedPipeHandleStateW, GetNamedPipeServerProcessId,
};
use windows_sys::Win32::System::Threading::OpenProcessToken;

use super::{check, process};

/// A security identifier in its string form (`S-1-5-21-...`), checked to be one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sid(String);

impl Sid {
    /// Parses a SID string: `S-1-` followed by decimal numbers separated by `-` (what
    /// `ConvertSidToStringSidW` writes). Nothing else is accepted, so a `Sid` cannot carry
    /// other text into a security descriptor.
    pub fn parse(text: &str) -> io::Result<Sid> {
        let numbers = text.strip_prefix("S-1-").ok_or_else(|| not_a_sid(text))?;
        let valid = numbers
            .split('-')
            .all(|n| !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()));
        if valid && numbers.split('-').count() >= 2 {
            Ok(Sid(text.to_string()))
        } else {
            Err(not_a_sid(text))
        }
    }

    /// The SID of the user this process runs as (`OpenProcessToken`, `GetTokenInformation`
    /// with `TokenUser`).
    pub fn current_user() -> io::Result<Sid> {
        let mut token = ptr::null_mut();
        // SAFETY: the current-process pseudo-handle is always valid; `token` is ours to fill.
        check(unsafe {
            OpenProcessToken(process::current().as_raw_handle(), TOKEN_QUERY, &mut token)
        })?;
        // SAFETY: `token` is a fresh handle that nothing else owns.
        let token = unsafe { OwnedHandle::from_raw_handle(token) };
        // A TOKEN_USER and the SID it points to, in u64s for the alignment of its pointer.
        let mut buffer = vec![0u64; 64];
        let mut needed = 0u32;
        // SAFETY: the token is live; the buffer and its size (bytes) are ours to fill.
        check(unsafe {
            GetTokenInformation(
                token.as_raw_handle(),
                TokenUser,
                buffer.as_mut_ptr().cast(),
                (buffer.len() * 8) as u32,
                &mut needed,
            )
        })?;
        // SAFETY: GetTokenInformation succeeded, so the buffer starts with a TOKEN_USER,
        // suitably aligned (u64s), whose SID points into the buffer, which outlives its use.
        let sid = unsafe { (*buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid };
        // SAFETY: as above: a valid SID inside `buffer`.
        unsafe { sid_to_string(sid) }
    }

    /// The SID of the account `name` (`user`, `DOMAIN\user`, or a group such as `Users`),
    /// looked up on this machine (`LookupAccountNameW`).
    pub fn of_account(name: &str) -> io::Result<Sid> {
        let wide = wide_z(OsStr::new(name))?;
        let mut sid = vec![0u64; 16]; // SECURITY_MAX_SID_SIZE is 68 bytes
        let mut sid_len = (sid.len() * 8) as u32;
        let mut domain = vec![0u16; 256];
        let mut domain_len = domain.len() as u32;
        let mut kind: SID_NAME_USE = 0;
        // SAFETY: `wide` is NUL-terminated; each buffer comes with its size, and all are ours.
        check(unsafe {
            LookupAccountNameW(
                ptr::null(),
                wide.as_ptr(),
                sid.as_mut_ptr().cast(),
                &mut sid_len,
                domain.as_mut_ptr(),
                &mut domain_len,
                &mut kind,
            )
        })
        .map_err(|e| io::Error::new(e.kind(), format!("cannot find the account {name}: {e}")))?;
        // SAFETY: LookupAccountNameW wrote a valid SID at the start of `sid`.
        unsafe { sid_to_string(sid.as_mut_ptr().cast()) }
    }

    /// The string form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn not_a_sid(text: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{text:?} is not a SID (S-1-...)"),
    )
}

/// The string form of a SID (`ConvertSidToStringSidW`).
///
/// # Safety
/// `sid` points to a valid SID.
unsafe fn sid_to_string(sid: PSID) -> io::Result<Sid> {
    let mut text = ptr::null_mut();
    // SAFETY: the caller's `sid` is valid; `text` is ours to fill with a LocalAlloc'd string.
    check(unsafe { ConvertSidToStringSidW(sid, &mut text) })?;
    // SAFETY: `text` is a NUL-terminated string of u16s, freed right after being copied.
    let string = unsafe {
        let len = (0..).take_while(|&i| *text.add(i) != 0).count();
        let string = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
        LocalFree(text as HLOCAL);
        string
    };
    Sid::parse(&string)
}

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

/// How many instances the pipe of `pipe` has (`GetNamedPipeHandleStateW`).
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

/// The process id of the client connected to a server instance
/// (`GetNamedPipeClientProcessId`).
pub fn client_process_id(pipe: &impl AsHandle) -> io::Result<u32> {
    let mut pid = 0u32;
    // SAFETY: the pipe handle is live for the call; `pid` is ours to fill.
    check(unsafe { GetNamedPipeClientProcessId(pipe.as_handle().as_raw_handle(), &mut pid) })?;
    Ok(pid)
}

/// The process id of the server at the other end of a client's pipe
/// (`GetNamedPipeServerProcessId`).
pub fn server_process_id(pipe: &impl AsHandle) -> io::Result<u32> {
    let mut pid = 0u32;
    // SAFETY: the pipe handle is live for the call; `pid` is ours to fill.
    check(unsafe { GetNamedPipeServerProcessId(pipe.as_handle().as_raw_handle(), &mut pid) })?;
    Ok(pid)
}

/// `text` as UTF-16 with a terminating NUL; text with a NUL inside is refused.
fn wide_z(text: &OsStr) -> io::Result<Vec<u16>> {
    let mut wide: Vec<u16> = text.encode_wide().collect();
    if wide.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"));
    }
    wide.push(0);
    Ok(wide)
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

    #[test]
    fn only_sid_strings_are_sids() {
        assert_eq!(sid("S-1-5-32-544").as_str(), "S-1-5-32-544");
        for bad in [
            "",
            "S-1-",
            "S-1-5",
            "S-1-5-",
            "S-1-5--1",
            "S-2-5-32",
            "BA",
            "S-1-5-32-544)(A;;GA;;;WD",
            "s-1-5-32-544",
            "S-1-5-x",
            "S-1-5-111111111111111111111",
        ] {
            assert!(Sid::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_current_user_has_a_sid() {
        assert!(Sid::current_user().unwrap().as_str().starts_with("S-1-5-"));
    }
}
