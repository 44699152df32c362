//! Security identifiers: the user this process or another runs as, and an account's SID by
//! name, in the checked string form (`S-1-5-21-...`) that security descriptors take.

use std::ffi::OsStr;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::ptr;

use windows_sys::Win32::Foundation::{LocalFree, HLOCAL};
use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
use windows_sys::Win32::Security::{
    GetTokenInformation, LookupAccountNameW, TokenUser, PSID, SID_NAME_USE, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::System::Threading::{
    OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
};

use super::{check, process};

/// LocalSystem's SID.
pub const LOCAL_SYSTEM: &str = "S-1-5-18";

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
        token_user(process::current())
    }

    /// The SID of the user the process `pid` runs as (`OpenProcess` with
    /// `PROCESS_QUERY_LIMITED_INFORMATION`, then as [`Sid::current_user`]). Fails with
    /// `ERROR_ACCESS_DENIED` for a process whose token the caller may not read (another
    /// user's, unless the caller is an administrator).
    pub fn of_process(pid: u32) -> io::Result<Sid> {
        // SAFETY: OpenProcess takes integers and returns a fresh handle or null.
        let raw = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        if raw.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh handle that nothing else owns.
        let process = unsafe { OwnedHandle::from_raw_handle(raw) };
        token_user(process.as_handle())
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

/// The user of the process `process`'s token.
fn token_user(process: BorrowedHandle<'_>) -> io::Result<Sid> {
    let mut token = ptr::null_mut();
    // SAFETY: the process handle is live for the call; `token` is ours to fill.
    check(unsafe { OpenProcessToken(process.as_raw_handle(), TOKEN_QUERY, &mut token) })?;
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

/// `text` as UTF-16 with a terminating NUL; text with a NUL inside is refused.
pub(super) fn wide_z(text: &OsStr) -> io::Result<Vec<u16>> {
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

    #[test]
    fn only_sid_strings_are_sids() {
        assert_eq!(Sid::parse("S-1-5-32-544").unwrap().as_str(), "S-1-5-32-544");
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
    fn the_current_user_has_a_sid_and_so_has_this_process() {
        let me = Sid::current_user().unwrap();
        assert!(me.as_str().starts_with("S-1-5-"));
        assert_eq!(Sid::of_process(std::process::id()).unwrap(), me);
        assert!(Sid::of_process(u32::MAX - 3).is_err());
    }
}
