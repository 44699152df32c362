//! systemd's file-descriptor store (`FileDescriptorStoreMax=`, `sd_pid_notify_with_fds(3)`):
//! herd hands the sockets it binds and its `--shm` memory to systemd (`FDSTORE=1` with the fd
//! over `NOTIFY_SOCKET`), which keeps them open while herd is down (a crash, `systemctl
//! restart`) and passes them back at the next start (`LISTEN_FDS`); herd adopts them instead
//! of binding, so the port never closes and queued connections wait for the new workers.
//!
//! Each fd is stored as `FDNAME=herd.NAME` ([`PREFIX`]), which tells it apart from the sockets
//! of a `.socket` unit (never stored: systemd holds those already). The store is on with
//! `$FDSTORE` (systemd 254+ sets it to `FileDescriptorStoreMax=`) or `--fdstore` (older
//! systemd), and needs `NOTIFY_SOCKET`. The rules are pure functions; [`Store::sync`] sends.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::{AsFd, BorrowedFd};

use crate::logging::LogEvent;
use crate::spec::{Inherited, Listener};

/// What every fd name herd stores starts with.
pub const PREFIX: &str = "herd.";

/// The longest name systemd accepts in `FDNAME=` (`FDNAME_MAX`).
const FDNAME_MAX: usize = 255;

/// An fd's identity (device and inode), to tell whether a name now means another fd.
type Identity = (u64, u64);

/// Whether herd stores its fds, and how many systemd keeps.
#[derive(Debug, PartialEq, Eq)]
pub struct Setting {
    /// `FileDescriptorStoreMax=`, when `$FDSTORE` says it.
    pub max: Option<usize>,
}

/// What `$FDSTORE` (`fdstore`), `--fdstore` (`flag`) and whether `NOTIFY_SOCKET` is set
/// (`notify`) ask for: the setting (`None`: off) and a warning to log, or why `--fdstore`
/// cannot work.
pub fn setting(
    fdstore: Option<&str>,
    flag: bool,
    notify: bool,
) -> Result<(Option<Setting>, Option<String>), String> {
    if !notify {
        if flag {
            return Err(
                "--fdstore needs systemd, and NOTIFY_SOCKET is not set: run herd from a \
                        service with FileDescriptorStoreMax= (and Type=notify), or drop \
                        --fdstore"
                    .to_string(),
            );
        }
        return Ok((None, None));
    }
    let Some(text) = fdstore else {
        return Ok((flag.then_some(Setting { max: None }), None));
    };
    match text.trim().parse::<usize>() {
        Ok(0) => Ok((
            None,
            Some(
                "FDSTORE=0: systemd's fd store holds nothing (FileDescriptorStoreMax=0), so \
                 herd's sockets close when it restarts; set FileDescriptorStoreMax= to at \
                 least the number of --bind and --shm to keep them"
                    .to_string(),
            ),
        )),
        Ok(max) => Ok((Some(Setting { max: Some(max) }), None)),
        Err(_) => Ok((
            flag.then_some(Setting { max: None }),
            Some(format!(
                "FDSTORE={text:?} is not a number (systemd sets it to FileDescriptorStoreMax=): \
                 ignored{}",
                if flag {
                    "; --fdstore stores the sockets without knowing the store's size"
                } else {
                    ", so herd's sockets are not stored; fix the environment or pass --fdstore"
                }
            )),
        )),
    }
}

/// Why systemd would refuse `name` in `FDNAME=`, if it would: longer than 255 bytes, a
/// control or non-ASCII character, or `:` (which separates `LISTEN_FDNAMES`).
pub fn fdname_problem(name: &str) -> Option<String> {
    if name.len() > FDNAME_MAX {
        return Some(format!("longer than {FDNAME_MAX} bytes"));
    }
    let bad = name
        .chars()
        .find(|&c| c == ':' || !(' '..='~').contains(&c));
    bad.map(|c| format!("{c:?} is not allowed (printable ASCII but ':')"))
}

/// What to store: the listeners' names (those herd does not store already left out), in
/// order, split into the fd names to store with each one's index, and warnings for the rest.
pub fn plan(names: &[(usize, &str)], max: Option<usize>) -> (Vec<(usize, String)>, Vec<String>) {
    let mut store = Vec::new();
    let mut warnings = Vec::new();
    for &(index, name) in names {
        let fdname = format!("{PREFIX}{name}");
        match fdname_problem(&fdname) {
            Some(why) => warnings.push(format!(
                "{name:?} is not stored in systemd's fd store: its FDNAME= {fdname:?} would be \
                 refused ({why}); rename it (--bind NAME=..., --shm NAME=SIZE)"
            )),
            None => store.push((index, fdname)),
        }
    }
    if let Some(max) = max.filter(|&max| store.len() > max) {
        let left: Vec<String> = store.split_off(max).into_iter().map(|(_, n)| n).collect();
        warnings.push(format!(
            "systemd's fd store holds at most {max} fds (FileDescriptorStoreMax={max}), and \
             herd has {}: {} not stored, so they close when herd restarts; raise \
             FileDescriptorStoreMax= to {}",
            max + left.len(),
            left.join(", "),
            max + left.len()
        ));
    }
    (store, warnings)
}

/// What changes in the store from `before` to `now` (fd name to identity): the names to
/// remove (gone, or now another fd), then those to store.
pub fn changes(
    before: &BTreeMap<String, Identity>,
    now: &BTreeMap<String, Identity>,
) -> (Vec<String>, Vec<String>) {
    let differs = |a: &BTreeMap<_, _>, b: &BTreeMap<_, _>| -> Vec<String> {
        let kept = |(name, id): &(&String, &Identity)| b.get(*name) != Some(*id);
        a.iter().filter(kept).map(|(n, _)| n.clone()).collect()
    };
    (differs(before, now), differs(now, before))
}

/// What the store holds after a sync from `before` towards `now`, given the names whose
/// removal (`removed`) and storing (`sent`) reached systemd: a failed send changes nothing,
/// so the next sync tries it again.
pub fn stored_after(
    before: &BTreeMap<String, Identity>,
    now: &BTreeMap<String, Identity>,
    removed: &[String],
    sent: &[String],
) -> BTreeMap<String, Identity> {
    let mut stored = before.clone();
    for fdname in removed {
        stored.remove(fdname);
    }
    for fdname in sent {
        if let Some(id) = now.get(fdname) {
            stored.insert(fdname.clone(), *id);
        }
    }
    stored
}

/// The store of herd's service manager, and what herd has put in it.
pub struct Store {
    socket: OsString,
    max: Option<usize>,
    stored: BTreeMap<String, Identity>,
}

impl Store {
    /// The store herd's environment and `--fdstore` (`flag`) ask for; `Ok(None)` when off. A
    /// `$FDSTORE` herd cannot use is logged; `Err`: `--fdstore` without systemd.
    pub fn from_env(flag: bool) -> Result<Option<Store>, String> {
        let socket = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty());
        let fdstore = std::env::var_os("FDSTORE");
        let fdstore = fdstore.as_ref().map(|v| v.to_string_lossy());
        let (setting, warning) = setting(fdstore.as_deref(), flag, socket.is_some())?;
        if let Some(warning) = warning {
            tracing::warn!(event = LogEvent::FdstoreOff.as_str(), "{warning}");
        }
        Ok(setting.zip(socket).map(|(setting, socket)| Store {
            socket,
            max: setting.max,
            stored: BTreeMap::new(),
        }))
    }

    /// Takes the fds systemd passed back from the store (named `herd.NAME`), as sockets to
    /// adopt by name or address before binding (like a takeover's); they count as stored.
    pub fn restore(&mut self) -> anyhow::Result<Vec<Inherited>> {
        let mut restored: Vec<Inherited> = Vec::new();
        for (name, fd) in crate::spec::take_passed_with_prefix(PREFIX)? {
            let fdname = format!("{PREFIX}{name}");
            if self.stored.contains_key(&fdname) {
                // What herd serves under the name differs from this, so the next sync removes
                // the name (each fd under it) and stores herd's once.
                self.stored.insert(fdname.clone(), NO_FILE);
                // The first that herd can serve is served: one before it that cannot be
                // (a file open read-only) must not cost the good one's memory.
                if restored.iter().any(|r| r.name == name) {
                    tracing::warn!(
                        event = LogEvent::FdstoreReplaced.as_str(),
                        name = %name,
                        "systemd's fd store holds {fdname:?} more than once: herd serves the \
                         first it can, closes the others and stores its own once"
                    );
                    continue;
                }
            } else if let Some(id) = identity(fd.as_fd()) {
                self.stored.insert(fdname.clone(), id);
            }
            // One herd cannot serve (a socket that does not listen, a pipe) is dropped from the
            // store: refusing to start would fail every restart on it, as systemd keeps it.
            let (kind, address) = match crate::spec::describe_passed(&fd) {
                Ok(described) => described,
                Err(e) => {
                    tracing::warn!(
                        event = LogEvent::FdstoreReplaced.as_str(),
                        name = %name,
                        "{fdname:?} from systemd's fd store cannot be served ({e:#}): herd \
                         closes it and removes it from the store"
                    );
                    continue;
                }
            };
            restored.push(Inherited {
                name,
                kind: Some(kind),
                address,
                fd,
                file: None,
                from_store: true,
            });
        }
        if !restored.is_empty() {
            let names: Vec<&str> = restored.iter().map(|s| s.name.as_str()).collect();
            tracing::info!(
                event = LogEvent::FdstoreRestored.as_str(),
                names = %names.join(","),
                "adopting {} from systemd's fd store: {}",
                restored.len(),
                names.join(", ")
            );
        }
        Ok(restored)
    }

    /// Makes the store hold `listeners`' fds (those herd bound or created; sockets systemd
    /// passed are its own already): removes what is gone, stores what is new. A stored Unix
    /// socket's file is kept when herd stops, for the next herd to serve it.
    pub fn sync(&mut self, listeners: &mut [Listener]) {
        let names: Vec<(usize, &str)> = listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.passed_by_systemd() && l.fd().is_some())
            .filter(|(_, l)| l.group().is_none() || not_stored(&l.name, "--balance reuseport"))
            .map(|(i, l)| (i, l.name.as_str()))
            .collect();
        let (plan, warnings) = plan(&names, self.max);
        for warning in warnings {
            tracing::warn!(event = LogEvent::FdstoreNotStored.as_str(), "{warning}");
        }
        let mut now = BTreeMap::new();
        for (index, fdname) in &plan {
            if let Some(id) = listeners[*index].fd().and_then(identity) {
                now.insert(fdname.clone(), id);
            }
        }
        let (remove, store) = changes(&self.stored, &now);
        let mut sending = Sending::default();
        let removed: Vec<String> = remove
            .into_iter()
            .filter(|fdname| {
                self.send(
                    &mut sending,
                    &format!("FDSTOREREMOVE=1\nFDNAME={fdname}"),
                    None,
                )
            })
            .collect();
        let mut sent = Vec::new();
        for (index, fdname) in plan.iter().filter(|(_, n)| store.contains(n)) {
            if let Some(fd) = listeners[*index].fd() {
                if self.send(
                    &mut sending,
                    &format!("FDSTORE=1\nFDNAME={fdname}"),
                    Some(fd),
                ) {
                    sent.push(fdname.clone());
                }
            }
        }
        if sending.skipped > 0 {
            tracing::warn!(
                event = LogEvent::SystemError.as_str(),
                "{} more message(s) to systemd's fd store not sent: its queue is full; herd \
                 stores only at its start, so what was not stored closes if herd crashes or \
                 restarts: once systemd reads its notify socket again, restart herd \
                 (systemctl restart) to store it",
                sending.skipped
            );
        }
        let stored = stored_after(&self.stored, &now, &removed, &sent);
        for (index, fdname) in &plan {
            if matches!(now.get(fdname), Some(id) if stored.get(fdname) == Some(id)) {
                listeners[*index].release_file();
            }
        }
        log_changes(&removed, &sent);
        self.stored = stored;
    }

    /// Sends `message` (with `fd`) to the service manager; whether it went. Once a send of
    /// this round found the manager's queue full (it waited its whole second), the others are
    /// not tried: each would wait its second too, and herd's start with it. (`sync` runs at
    /// start only, before the supervisor's loop: a send may block there, never in the loop.)
    fn send(&self, sending: &mut Sending, message: &str, fd: Option<BorrowedFd<'_>>) -> bool {
        if sending.queue_full {
            sending.skipped += 1;
            return false;
        }
        let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
        match herd_sys::notify::send_with_fds(&self.socket, message.as_bytes(), &fds) {
            Ok(()) => true,
            Err(e) => {
                sending.queue_full = e.kind() == std::io::ErrorKind::WouldBlock;
                tracing::warn!(
                    event = LogEvent::SystemError.as_str(),
                    "cannot reach systemd's fd store at {:?}: {e}",
                    self.socket
                );
                false
            }
        }
    }
}

/// One round of messages to the fd store.
#[derive(Default)]
struct Sending {
    /// A send found the service manager's queue full.
    queue_full: bool,
    /// Messages not tried since.
    skipped: usize,
}

/// Logs that a listener of `name` is not stored because of `what`; returns false.
fn not_stored(name: &str, what: &str) -> bool {
    tracing::warn!(
        event = LogEvent::FdstoreNotStored.as_str(),
        "{name:?} is not stored in systemd's fd store: {what} gives each worker a socket of \
         its own, which the store cannot hand back; use --balance shared to keep the port \
         open across restarts"
    );
    false
}

/// Logs what the store lost and gained.
fn log_changes(removed: &[String], stored: &[String]) {
    if !removed.is_empty() {
        tracing::info!(
            event = LogEvent::FdstoreRemoved.as_str(),
            names = %removed.join(","),
            "removed from systemd's fd store: {}",
            removed.join(", ")
        );
    }
    if !stored.is_empty() {
        tracing::info!(
            event = LogEvent::FdstoreStored.as_str(),
            names = %stored.join(","),
            "stored in systemd's fd store: {}",
            stored.join(", ")
        );
    }
}

/// An identity no file has: one the store holds that must be stored again.
const NO_FILE: Identity = (0, 0);

/// `fd`'s device and inode.
fn identity(fd: BorrowedFd<'_>) -> Option<Identity> {
    let file = std::fs::File::from(fd.try_clone_to_owned().ok()?);
    let meta = file.metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests;
