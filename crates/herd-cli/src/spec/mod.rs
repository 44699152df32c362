//! Socket specs: parsing `--bind` arguments and binding them once, before any worker starts.

mod bind;
mod inherit;
mod names;
mod parse;
mod socket_file;

pub use bind::{bind_all, Listener};
pub use parse::{BindSpec, MAX_UNIX_PATH};
pub use socket_file::{prepare as prepare_socket_path, SocketFile};
