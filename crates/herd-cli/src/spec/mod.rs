//! Socket specs: parsing `--bind` arguments and binding them once, before any worker starts.
//! Parsing is the same on every platform; binding is the Unix supervisor's.

#[cfg(unix)]
mod bind;
#[cfg(windows)]
mod bind_windows;
mod handover;
#[cfg(unix)]
mod holders;
#[cfg(unix)]
mod inherit;
mod kind;
mod names;
mod parse;
#[cfg(unix)]
mod reuseport;
mod shm;
#[cfg(unix)]
mod socket_file;
#[cfg(unix)]
mod twice;

#[cfg(unix)]
pub use bind::{bind_all, bind_tcp, somaxconn, Listener};
#[cfg(windows)]
pub use bind_windows::{bind_all, bind_tcp, Listener};
pub use handover::{Inherited, OwnedSocket, UntakenFile};
#[cfg(unix)]
pub use holders::{describe as describe_holders, socket_inode_at, socket_inode_of, still_held};
#[cfg(unix)]
pub use inherit::claim_early as claim_passed_sockets;
#[cfg(unix)]
pub use inherit::{describe as describe_passed, take_with_prefix as take_passed_with_prefix};
pub use kind::{Balance, SocketKind};
pub use names::{check as check_names, default_name, unique as unique_name};
pub use parse::{Address, BindOptions, BindSpec, Host, HostPort, MAX_UNIX_PATH};
#[cfg(unix)]
pub use reuseport::{GroupOptions, SlotSockets};
pub use shm::ShmSpec;
#[cfg(unix)]
pub use socket_file::{
    is_socket_file, lock_dir_of as lock_socket_dir, prepare as prepare_socket_path,
    set_mode as set_socket_mode, InUse as SocketInUse, SocketFile,
};
#[cfg(unix)]
pub use twice::{check as check_given_twice, GivenTwice};
