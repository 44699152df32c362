//! herd's own socket files bound again when removed (an operator's clean-up of the runtime
//! directory, a worker's `rm`): a bound socket cannot be given a file again, but a new socket
//! at the same path serves whoever connects or sends from then on. The notify socket, so that
//! workers started afterwards can say `READY=1` (and einhorn's, `--compat einhorn`, so that
//! they can acknowledge); the control socket, so that `herd` commands reach this herd again.
//! Only in the directory herd bound them in: one removed and made again (by another user, or
//! a symlink in its place) is not herd's.

use std::os::unix::io::OwnedFd;
use std::time::Instant;

use super::{ControlFile, NotifySocket};
use crate::logging::LogEvent;
use crate::supervisor::sources::Sources;
use crate::supervisor::Supervisor;

impl Supervisor {
    /// Says how many more times each socket was bound again in the window that ended (an
    /// `rm` loop on its file), once: the first time was said, the others held back.
    pub(super) fn say_rebinds_held_back(&mut self) {
        for (socket, times) in self.platform.socket_files.rebinds_held_back(Instant::now()) {
            tracing::warn!(
                event = LogEvent::SocketFileRemoved.as_str(),
                socket,
                times,
                "the {socket} socket's file was removed and bound again {times} more times \
                 (by a worker or another process, again and again); said at most once a \
                 minute"
            );
        }
    }

    /// The control socket's directory, as herd bound it (or a previous image knew it): only
    /// there is it bound again, even if its file is removed before the first look.
    pub(in crate::supervisor) fn control_bound(&mut self, control: &super::Control) {
        if let Some(dir) = control.dir {
            let path = control.file.parts().0;
            self.platform.socket_files.control_bound(path, dir);
        }
    }

    /// Binds the notify socket again if its file was removed, so that workers started from
    /// now on can say `READY=1`, and reads what the old one still holds; if it cannot, the
    /// removal is said as for any socket file: whether it could not.
    pub(super) fn bind_notify_again_if_removed(
        &mut self,
        sources: &mut Sources,
        notify: &mut NotifySocket,
    ) -> bool {
        let again = notify.bind_again_if_removed();
        if self
            .platform
            .socket_files
            .notify_unbound_newly(again.is_err())
        {
            if let Err(e) = &again {
                tracing::warn!(
                    event = LogEvent::SystemError.as_str(),
                    "cannot bind the notify socket again: {e:#}"
                );
            }
        }
        let old = match again {
            Ok(Some(old)) => old,
            Ok(None) => return false,
            Err(_) => return true,
        };
        let shown = notify.path.display().to_string();
        let path = crate::text::escape(&shown);
        let say = (self.platform.socket_files).say_rebound("notify", Instant::now());
        // The old socket is read on until it is drained (or, if the new one cannot be read,
        // for good).
        let _old = old;
        let old_receiver = match sources.platform.replace_notify(&notify.socket) {
            Ok(old) if !say => Some(old),
            Ok(old) => {
                tracing::warn!(
                    event = LogEvent::SocketFileRemoved.as_str(),
                    socket = "notify",
                    path = %path,
                    "the notify socket's file {path} was removed (by a worker or another \
                     process): herd bound it again there, for the workers that start from now on"
                );
                Some(old)
            }
            Err(e) => {
                tracing::error!(
                    event = LogEvent::SystemError.as_str(),
                    path = %path,
                    "the notify socket's file {path} was removed and bound again, but herd \
                     cannot read the new socket ({e}): workers that start from now on cannot \
                     send READY=1 until herd is restarted or taken over (herd run --takeover)"
                );
                None
            }
        };
        if let Some(old_receiver) = old_receiver {
            self.drain_notifications(&old_receiver);
        }
        false
    }

    /// Binds the control socket again if its file was removed, in the directory it was bound
    /// in, with the same mode, and serves it instead of the old one; returns whether it could
    /// not (the removal is then said as for any socket file). A takeover's file put in its
    /// place is another file, not a removal; once taken over, herd leaves the path alone, so
    /// that a herd taken over, still stopping, never takes the path back.
    pub(super) fn bind_control_again_if_removed(
        &mut self,
        sources: &mut Sources,
        control_file: &mut ControlFile,
    ) -> bool {
        let (path, dev, ino) = control_file.parts();
        // Taken over: the path is the new herd's, which binds it again if it is removed.
        if ino == 0 || self.effects.taken_over() {
            return false;
        }
        let path = path.to_path_buf();
        let again = match self
            .platform
            .socket_files
            .control_removed(&path, (dev, ino))
        {
            Ok(false) => Ok(None),
            Ok(true) => {
                let uid = herd_sys::process::effective_uid();
                let shared = sources.platform.control_shared();
                crate::control::path::bind_private(&path, uid, "control socket", shared).map(Some)
            }
            Err(why) => Err(anyhow::anyhow!(why)),
        };
        let failed = again.is_err();
        if self.platform.socket_files.control_unbound_newly(failed) {
            if let Err(e) = &again {
                tracing::warn!(
                    event = LogEvent::SystemError.as_str(),
                    "cannot bind the control socket again: {e:#}"
                );
            }
        }
        let (socket, file) = match again {
            Ok(Some(bound)) => bound,
            Ok(None) => return false,
            Err(_) => return true,
        };
        let listener = std::os::unix::net::UnixListener::from(OwnedFd::from(socket));
        let shown = path.display().to_string();
        let path = crate::text::escape(&shown);
        match sources.platform.serve_control_again(listener) {
            Ok(server) => {
                sources.replace_control_server(server);
                *control_file = file;
                if !(self.platform.socket_files).say_rebound("control", Instant::now()) {
                    return false;
                }
                tracing::warn!(
                    event = LogEvent::SocketFileRemoved.as_str(),
                    socket = "control",
                    path = %path,
                    "the control socket's file {path} was removed (by a worker or another \
                     process): herd bound it again there"
                );
                false
            }
            Err(e) => {
                tracing::warn!(
                    event = LogEvent::SystemError.as_str(),
                    "cannot serve the control socket bound again at {path}: {e}"
                );
                true
            }
        }
    }

    /// Binds einhorn's socket (`--compat einhorn`) again if its file was removed, and serves
    /// it instead of the old one; returns whether it could not (the removal is then said).
    pub(super) fn bind_einhorn_again_if_removed(
        &mut self,
        sources: &mut Sources,
        notify: &mut NotifySocket,
    ) -> bool {
        let again = notify.bind_einhorn_again_if_removed();
        if self
            .platform
            .socket_files
            .einhorn_unbound_newly(again.is_err())
        {
            if let Err(e) = &again {
                tracing::warn!(
                    event = LogEvent::SystemError.as_str(),
                    "cannot bind einhorn's socket again: {e:#}"
                );
            }
        }
        match again {
            Ok(false) => return false,
            Err(_) => return true,
            Ok(true) => {}
        }
        let Some(einhorn) = &notify.einhorn else {
            return false;
        };
        let shown = einhorn.path.display().to_string();
        let path = crate::text::escape(&shown);
        let say = (self.platform.socket_files).say_rebound("einhorn", Instant::now());
        match sources.platform.serve_einhorn_again(einhorn) {
            Ok(()) if !say => {}
            Ok(()) => tracing::warn!(
                event = LogEvent::SocketFileRemoved.as_str(),
                socket = "einhorn",
                path = %path,
                "the file {path} of einhorn's socket was removed (by a worker or another \
                 process): herd bound it again there, for the workers that start from now on"
            ),
            Err(e) => tracing::error!(
                event = LogEvent::SystemError.as_str(),
                path = %path,
                "einhorn's socket's file {path} was removed and bound again, but herd cannot \
                 serve the new socket ({e:#}): workers that start from now on cannot \
                 acknowledge until herd is restarted or taken over (herd run --takeover)"
            ),
        }
        false
    }
}
