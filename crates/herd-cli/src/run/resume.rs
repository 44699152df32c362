//! What a re-exec's new image makes again of the state the previous one handed over.

use std::os::unix::io::OwnedFd;

use crate::spec::{Listener, SlotSockets, SocketFile};
use crate::supervisor::reexec::SavedListener;

/// The listeners as the previous image had them, on the fds it handed over (`fds`, one each;
/// `groups`, the per-slot sockets of `--balance reuseport` listeners beyond slot 0's), with
/// what herd set before any worker could change it (read anew where the state does not say).
pub fn listeners(
    saved: &[SavedListener],
    fds: Vec<OwnedFd>,
    groups: Vec<Vec<OwnedFd>>,
) -> Vec<Listener> {
    saved
        .iter()
        .zip(fds.into_iter().zip(groups))
        .map(|(l, (fd, rest))| {
            let mut listener = match &l.group {
                Some(g) => {
                    let sockets = std::iter::once(fd).chain(rest).collect();
                    let group = SlotSockets::restore(sockets, g.address, g.options);
                    Listener::restore_group(l.name.clone(), l.address.clone(), group)
                }
                None => {
                    let file = l
                        .file
                        .clone()
                        .map(|(p, d, i)| SocketFile::from_parts(p, d, i));
                    Listener::restore(l.name.clone(), l.kind, l.address.clone(), fd, file)
                }
            };
            listener.stdin = l.stdin;
            listener.backlog_set = l.backlog_set.or_else(|| listener.backlog_now());
            listener.nonblocking_set = l.nonblocking_set.or_else(|| listener.nonblocking_now());
            listener
        })
        .collect()
}
