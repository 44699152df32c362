//! Where `herd run`'s control socket goes and how it is bound: herd's private default
//! directory (closed to others again as herd stops), a takeover's path beside the old
//! herd's socket, and the checks made before binding.

use std::path::{Path, PathBuf};

use crate::cli::RunArgs;
use crate::control::path as control_path;
use crate::exit::Failure;
use crate::spec::{self, SocketFile};
use crate::supervisor::socket_files::{dir_bound_in, dir_identity, DirIdentity};

use super::takeover::{fetch_inherited, socket_identity, takeover_control, OldHerd};

/// Whether the control socket a re-exec hands over, `control`, is in herd's default
/// directory, as the first image's [`ControlPaths`] said: the same command line and
/// environment say so again.
pub(super) fn in_default_dir(
    args: &RunArgs,
    control_option: Option<&Path>,
    name: &str,
    control: &Path,
) -> bool {
    let uid = herd_sys::process::effective_uid();
    args.takeover.is_none()
        && matches!(control_path::resolve(control_option, name, uid),
            (path, true) if control_path::absolute(&path) == control)
}

/// Closes herd's default directory to others again as herd stops, if it was opened for
/// `--control-allow-uid`/`gid` (see [`control_path::close_shared_dir`]).
pub(super) fn close_shared_dir(args: &RunArgs, control: &Path, private_dir: bool) {
    if let (true, true, Some(dir)) = (private_dir, shares_control(args), control.parent()) {
        control_path::close_shared_dir(dir, herd_sys::process::effective_uid());
    }
}

/// Where herd's control socket goes.
pub(super) struct ControlPaths {
    /// Where it ends, absolute.
    pub control: PathBuf,
    /// Where it is bound first: a takeover binds beside the old herd's socket.
    pub bind_at: PathBuf,
    /// Whether it is in herd's default directory, which herd keeps private.
    pub private_dir: bool,
}

impl ControlPaths {
    /// The control socket's paths for `herd run`, checked.
    pub fn new(
        args: &RunArgs,
        control: Option<&Path>,
        name: &str,
        uid: u32,
    ) -> Result<ControlPaths, Failure> {
        // A taking-over herd ends at the old herd's control socket, whatever its --name says.
        let (control, private_dir) = match &args.takeover {
            Some(old) => (takeover_control(old, control)?, false),
            None => control_path::resolve(control, name, uid),
        };
        // Absolute, against herd's directory now: workers get it in HERD_CONTROL (and the
        // notify socket beside it in NOTIFY_SOCKET) and may run elsewhere (--chdir, or a chdir
        // of theirs).
        let control = control_path::absolute(&control);
        // A takeover binds its control socket beside the old herd's and moves it into place
        // once its workers are ready; the notify socket's name is per process, so two herds
        // never meet.
        let bind_at = match &args.takeover {
            Some(_) => control_path::takeover_path(&control, std::process::id()),
            None => control.clone(),
        };
        control_path::check_length(&control, args.takeover.is_some()).map_err(Failure::Usage)?;
        Ok(ControlPaths {
            control,
            bind_at,
            private_dir,
        })
    }
}

/// Binds the control socket at `paths` (in herd's private directory, made and checked
/// first, under its lock), and for a takeover, fetches the old herd's sockets before.
///
/// Everything that can be checked without touching the system has been; any error from here
/// on drops what was bound, which closes it and removes its socket files.
pub(super) fn bind_control(
    args: &RunArgs,
    paths: &ControlPaths,
    uid: u32,
    owner: Option<u32>,
) -> Result<BoundControl, Failure> {
    // Users let in by --control-allow-uid/gid must be able to reach the socket; herd admits
    // them, and refuses everyone else, by their credentials.
    let shared = shares_control(args);
    let mut dir_lock = None;
    if paths.private_dir {
        if let Some(dir) = paths.control.parent() {
            control_path::ensure_private_dir(dir, uid, shared)?;
            // Again under the directory's lock, held until the socket is bound: a herd closing
            // the directory as it stops either sees our socket or runs before we open it.
            dir_lock = control_path::lock_dir(dir);
            control_path::ensure_private_dir(dir, uid, shared)?;
        }
    }
    // The old herd's control socket, as it is before anything is fetched from it: the one
    // socket file this herd may replace when the takeover completes.
    let (old_herd, inherited) = match &args.takeover {
        Some(old) => {
            let socket = socket_identity(old)?;
            let (herd, inherited) = fetch_inherited(old, socket, owner)?;
            (Some(herd), inherited)
        }
        None => (None, Vec::new()),
    };
    if dir_lock.is_none() {
        // Two herds started at once on one path: neither may take the other's socket, bound
        // but not yet listening, for a stale one.
        dir_lock = spec::lock_socket_dir(&paths.bind_at);
    }
    let before = dir_identity(&paths.bind_at);
    let (socket, file) = control_path::bind_private(&paths.bind_at, uid, "control socket", shared)?;
    let (_, dev, ino) = file.parts();
    let dir = dir_bound_in(&paths.bind_at, (dev, ino), before);
    // Under the lock, which a takeover holds until its socket listens: the takeover sockets
    // that herds killed during a takeover left, which nothing else removes.
    control_path::remove_stale_takeovers(&paths.control, uid);
    drop(dir_lock);
    if shared {
        control_path::warn_if_unreachable(&paths.control);
    }
    if !paths.private_dir {
        control_path::warn_if_others_may_replace(&paths.control);
    }
    Ok(BoundControl {
        socket,
        file,
        dir,
        old_herd,
        inherited,
    })
}

/// The control socket as [`bind_control`] bound it.
pub(super) struct BoundControl {
    pub socket: socket2::Socket,
    pub file: SocketFile,
    /// The directory it was bound in, as the supervisor is to know it.
    pub dir: Option<DirIdentity>,
    /// The old herd, with what it handed over, for `--takeover`.
    pub old_herd: Option<OldHerd>,
    pub inherited: Vec<spec::Inherited>,
}

/// Whether `--control-allow-uid`/`gid`/`user` let others than herd's user reach the control
/// socket.
fn shares_control(args: &RunArgs) -> bool {
    !args.control_allow_uid.is_empty()
        || !args.control_allow_gid.is_empty()
        || !args.control_allow_user.is_empty()
}
