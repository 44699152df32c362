//! Users and groups by name or number (`getpwnam_r`, `getgrouplist`, `getgrnam_r`).

use std::io;

/// A user's ids: uid, primary gid, and all the groups it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// Every group the user is in, primary included (`getgrouplist`).
    pub groups: Vec<u32>,
}

/// The largest buffer [`lookup_user`] and [`lookup_group`] give `getpw*_r` and `getgrnam_r`
/// (they start at 16 KiB and double on `ERANGE`): a group with tens of thousands of members
/// still fits.
const MAX_ENTRY_BUFFER: usize = 64 << 20;

/// The most groups [`lookup_user`] asks `getgrouplist` for: Linux's `NGROUPS_MAX`, beyond
/// which `setgroups` fails anyway.
const MAX_GROUPS: usize = 65536;

/// Calls `call` with a buffer that starts at 16 KiB and doubles while `call` returns
/// `ERANGE` (the `*_r` lookups' "buffer too small"), up to [`MAX_ENTRY_BUFFER`]. Returns the
/// buffer (the entry's strings live in it) once `call` returns anything else.
fn with_growing_buffer(
    what: &str,
    mut call: impl FnMut(&mut [libc::c_char]) -> libc::c_int,
) -> io::Result<Vec<libc::c_char>> {
    let mut buf = vec![0 as libc::c_char; 16384];
    loop {
        match call(&mut buf) {
            0 => return Ok(buf),
            libc::ERANGE if buf.len() < MAX_ENTRY_BUFFER => {
                let len = buf.len() * 2;
                buf.resize(len, 0);
            }
            libc::ERANGE => {
                return Err(io::Error::new(
                    io::ErrorKind::Other,
                    format!("the {what} entry is larger than {MAX_ENTRY_BUFFER} bytes"),
                ))
            }
            rc => return Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

/// Calls `call(groups, &mut count)`, a `getgrouplist`, with room for 256 groups and more
/// while it returns -1 ("too many for the buffer"; glibc sets `count` to the number needed,
/// other systems leave it, so the room at least doubles), up to [`MAX_GROUPS`]. A user in
/// more groups is an error: silently dropping groups would start workers with fewer rights
/// than the user has.
fn group_list(
    mut call: impl FnMut(&mut [libc::gid_t], &mut libc::c_int) -> libc::c_int,
) -> io::Result<Vec<libc::gid_t>> {
    let mut groups = vec![0 as libc::gid_t; 256];
    loop {
        let mut count = groups.len() as libc::c_int;
        if call(&mut groups, &mut count) >= 0 {
            let count = (count.max(0) as usize).min(groups.len());
            groups.truncate(count);
            return Ok(groups);
        }
        if groups.len() >= MAX_GROUPS {
            return Err(io::Error::new(
                io::ErrorKind::Other,
                format!("the user is in more than {MAX_GROUPS} groups"),
            ));
        }
        let wanted = (count.max(0) as usize).max(groups.len() * 2);
        groups.resize(wanted.min(MAX_GROUPS), 0);
    }
}

/// Looks up a user by name or number (`getpwnam_r`, `getgrouplist`), with buffers as large
/// as the entry and the user's group list need.
pub fn lookup_user(name: &str) -> io::Result<Option<User>> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a user name"))?;
    // SAFETY: an all-zero passwd is a valid value (null pointers, zero ids).
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let by_uid = name.parse::<libc::uid_t>().ok();
    let buf = with_growing_buffer("user", |buf| match by_uid {
        // SAFETY: getpwuid_r/getpwnam_r fill the passwd we own, with strings in `buf`, which
        // is `buf.len()` bytes long; `cname` is NUL-terminated.
        Some(uid) => unsafe {
            libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result)
        },
        // SAFETY: as above; `cname` is NUL-terminated and outlives the call.
        None => unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        },
    })?;
    if result.is_null() {
        return Ok(None);
    }
    let (uid, gid) = (pwd.pw_uid, pwd.pw_gid);
    let groups = group_list(|groups, count| {
        // SAFETY: getgrouplist writes at most `*count` gids into `groups` (which holds that
        // many); pw_name points into `buf`, still alive.
        unsafe { libc::getgrouplist(pwd.pw_name, gid as _, groups.as_mut_ptr() as *mut _, count) }
    })?;
    drop(buf);
    Ok(Some(User { uid, gid, groups }))
}

/// Looks up a group by name or number (`getgrnam_r`, with a buffer as large as the group's
/// entry needs: its member list can be long).
pub fn lookup_group(name: &str) -> io::Result<Option<u32>> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(Some(gid));
    }
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a group name"))?;
    // SAFETY: an all-zero group is a valid value (null pointers, zero id).
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    with_growing_buffer("group", |buf| {
        // SAFETY: getgrnam_r fills the group we own, with strings in `buf`, which is
        // `buf.len()` bytes long; `cname` is NUL-terminated.
        unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        }
    })?;
    Ok((!result.is_null()).then_some(grp.gr_gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_buffers_grow_until_the_entry_fits() {
        let mut sizes = Vec::new();
        let buf = with_growing_buffer("user", |buf| {
            sizes.push(buf.len());
            if buf.len() < 100_000 {
                libc::ERANGE
            } else {
                0
            }
        })
        .unwrap();
        assert_eq!(buf.len(), 131072);
        assert_eq!(sizes, [16384, 32768, 65536, 131072]);
        let err = with_growing_buffer("group", |_| libc::ERANGE).unwrap_err();
        assert!(err.to_string().contains("group entry is larger"), "{err}");
        let err = with_growing_buffer("user", |_| libc::EIO).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
    }

    #[test]
    fn group_lists_grow_until_every_group_fits() {
        // 300 groups; `needed` says whether the call reports the size needed (glibc) or not.
        for needed in [true, false] {
            let mut calls = 0;
            let groups = group_list(|groups, count| {
                calls += 1;
                if groups.len() < 300 {
                    if needed {
                        *count = 300;
                    }
                    return -1;
                }
                for (i, g) in groups.iter_mut().take(300).enumerate() {
                    *g = i as libc::gid_t;
                }
                *count = 300;
                300
            })
            .unwrap();
            assert_eq!(groups, (0..300).collect::<Vec<libc::gid_t>>());
            assert_eq!(calls, 2);
        }
        let err = group_list(|_, _| -1).unwrap_err();
        assert!(err.to_string().contains("more than 65536 groups"), "{err}");
    }

    #[test]
    fn looks_up_root() {
        let root = lookup_user("root").unwrap().unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        assert_eq!(lookup_user("0").unwrap(), Some(root));
        assert_eq!(lookup_user("no-such-user-herd").unwrap(), None);
    }
}
