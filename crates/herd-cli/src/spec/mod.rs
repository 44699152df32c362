//! Socket specs: parsing `--bind` arguments and binding them once, before any worker starts.

mod bind;
mod handover;
mod inherit;
mod kind;
mod names;
mod parse;
mod reuseport;
mod shm;
mod socket_file;
mod twice;

pub use bind::{bind_all, bind_tcp, somaxconn, Listener};
pub use handover::Inherited;
pub use inherit::claim_early as claim_passed_sockets;
pub use kind::{Balance, SocketKind};
pub use parse::{Address, BindSpec, MAX_UNIX_PATH};
pub use reuseport::{GroupOptions, SlotSockets};
pub use shm::ShmSpec;
pub use socket_file::{prepare as prepare_socket_path, InUse as SocketInUse, SocketFile};
pub use twice::GivenTwice;
