//! Windows: sharing sockets between processes with `WSADuplicateSocketW`.
//!
//! A parent calls [`duplicate_for`] with the child's pid and sends the resulting bytes (a
//! `WSAPROTOCOL_INFOW`) over a channel only that child holds; the child calls [`from_blob`].
//! The blob is only meaningful for that one pid; a forged or truncated one fails cleanly.

use std::io;
use std::mem;
use std::os::windows::io::{AsRawSocket, BorrowedSocket, FromRawSocket, OwnedSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use windows_sys::Win32::Networking::WinSock::{
    WSADuplicateSocketW, WSAGetLastError, WSASocketW, WSAStartup, FROM_PROTOCOL_INFO,
    INVALID_SOCKET, SOCKET, WSADATA, WSAPROTOCOL_INFOW, WSA_FLAG_NO_HANDLE_INHERIT,
    WSA_FLAG_OVERLAPPED,
};

/// The size of a blob: one `WSAPROTOCOL_INFOW`.
pub const BLOB_LEN: usize = mem::size_of::<WSAPROTOCOL_INFOW>();

fn startup() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: WSAStartup fills a zeroed WSADATA we own; it is reference-counted, so
        // calling it besides std's own initialisation is harmless.
        unsafe {
            let mut data: WSADATA = mem::zeroed();
            WSAStartup(0x0202, &mut data);
        }
    });
}

fn last_error() -> io::Error {
    // SAFETY: WSAGetLastError has no preconditions.
    io::Error::from_raw_os_error(unsafe { WSAGetLastError() })
}

/// Describes `socket` for the process `pid` (`WSADuplicateSocketW`).
pub fn duplicate_for(socket: BorrowedSocket<'_>, pid: u32) -> io::Result<[u8; BLOB_LEN]> {
    startup();
    // SAFETY: a zeroed WSAPROTOCOL_INFOW is a valid out-parameter for WSADuplicateSocketW.
    let mut info: WSAPROTOCOL_INFOW = unsafe { mem::zeroed() };
    // SAFETY: `socket` is a live socket borrowed for the call; `info` is ours to fill.
    let rc = unsafe { WSADuplicateSocketW(socket.as_raw_socket() as SOCKET, pid, &mut info) };
    if rc != 0 {
        return Err(last_error());
    }
    let mut blob = [0u8; BLOB_LEN];
    // SAFETY: both are BLOB_LEN bytes; WSAPROTOCOL_INFOW is plain data.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&info as *const WSAPROTOCOL_INFOW).cast::<u8>(),
            blob.as_mut_ptr(),
            BLOB_LEN,
        )
    };
    Ok(blob)
}

/// Rebuilds a socket from a blob made for this process (`WSASocketW(FROM_PROTOCOL_INFO)`).
/// The socket is not inheritable.
pub fn from_blob(blob: &[u8]) -> io::Result<OwnedSocket> {
    if blob.len() != BLOB_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a shared socket is {BLOB_LEN} bytes, not {}", blob.len()),
        ));
    }
    startup();
    // SAFETY: reading BLOB_LEN bytes into a zeroed WSAPROTOCOL_INFOW (plain data).
    let mut info: WSAPROTOCOL_INFOW = unsafe { mem::zeroed() };
    // SAFETY: `blob` is BLOB_LEN bytes (checked above), the size of `info`, which is plain
    // data that any bytes make valid; the two do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            blob.as_ptr(),
            (&mut info as *mut WSAPROTOCOL_INFOW).cast::<u8>(),
            BLOB_LEN,
        )
    };
    // SAFETY: WSASocketW reads the info we own; the socket it returns is fresh and ours.
    let socket = unsafe {
        WSASocketW(
            FROM_PROTOCOL_INFO,
            FROM_PROTOCOL_INFO,
            FROM_PROTOCOL_INFO,
            &info,
            0,
            WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT,
        )
    };
    if socket == INVALID_SOCKET {
        return Err(last_error());
    }
    // SAFETY: `socket` is a fresh socket that nothing else owns.
    Ok(unsafe { OwnedSocket::from_raw_socket(socket as _) })
}

/// The index of the network interface `name` (`if_nametoindex`), for an IPv6 scope such as
/// `fe80::1%ethernet_32769`; `Ok(None)` when there is no such interface.
pub fn interface_index(name: &str) -> io::Result<Option<u32>> {
    let name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in an interface name"))?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call, which only reads it.
    let index = unsafe {
        windows_sys::Win32::NetworkManagement::IpHelper::if_nametoindex(name.as_ptr().cast())
    };
    Ok((index != 0).then_some(index))
}

static CTRL_C: AtomicBool = AtomicBool::new(false);

unsafe extern "system" fn on_ctrl(_kind: u32) -> i32 {
    CTRL_C.store(true, Ordering::SeqCst);
    1 // handled: the process is not terminated
}

/// Catches Ctrl-C and Ctrl-Break (`SetConsoleCtrlHandler`); [`ctrl_c_pressed`] reads it.
pub fn catch_ctrl_c() -> io::Result<()> {
    // SAFETY: the handler only stores into an atomic; it lives for the whole program.
    if unsafe { windows_sys::Win32::System::Console::SetConsoleCtrlHandler(Some(on_ctrl), 1) } == 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether Ctrl-C (or Ctrl-Break) was pressed since [`catch_ctrl_c`].
pub fn ctrl_c_pressed() -> bool {
    CTRL_C.load(Ordering::SeqCst)
}
