//! One file descriptor the control socket holds in reserve. At herd's open-file limit the
//! newcomer waiting to be accepted has no fd to be accepted on, so its credentials cannot be
//! read; a connection made to give way for it then could be closed for a peer that may not use
//! herd. With the spare given up for it, the newcomer is accepted and checked first: a refused
//! one is told so and closed, and the spare taken back, without any connection closing; for one
//! that is let in, a silent connection gives way, and its fd becomes the spare. With none to
//! give way, the one let in is served on the spare's fd, and a second one held in reserve
//! becomes the spare (`control::server`), so that the next newcomer can still be answered;
//! both are taken again once files are free ([`refill`]).

use std::fs::File;

/// The spare fd (an open `/dev/null`, or `/`; close-on-exec), or none while it is lent.
#[derive(Debug)]
pub struct Spare(Option<File>);

impl Spare {
    /// Holds a spare fd, if one can be had now.
    pub fn new() -> Spare {
        let mut spare = Spare(None);
        spare.restore();
        spare
    }

    /// Gives up the spare fd so that one connection can be accepted on it: whether there was
    /// one to give up.
    pub fn lend(&mut self) -> bool {
        self.0.take().is_some()
    }

    /// Whether it holds its fd (it is not lent).
    pub fn held(&self) -> bool {
        self.0.is_some()
    }

    /// Takes an fd back as the spare if it has none and one is free: whether it holds one now.
    pub fn restore(&mut self) -> bool {
        self.restore_with(&mut open_null)
    }

    /// Takes `other`'s fd as the spare if it has none: whether it holds one now.
    pub fn take(&mut self, other: &mut Spare) -> bool {
        if self.0.is_none() {
            self.0 = other.0.take();
        }
        self.0.is_some()
    }

    fn restore_with(&mut self, open: &mut impl FnMut() -> Option<File>) -> bool {
        if self.0.is_none() {
            self.0 = open();
        }
        self.0.is_some()
    }
}

/// What the control socket does when `accept` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptFailed {
    /// Lends the spare's fd and tries once more, without waiting: Linux takes the new fd before
    /// it looks for a connection, so at herd's open-file limit accept fails whether or not
    /// anyone waits, and the fd must go only to a connection that is there.
    LendSpare,
    /// Nobody waits and there is no spare: waits a little for files to be free.
    WaitForFiles,
    /// Someone waits and there is no spare to check them on (another part of herd took its fd
    /// first): a silent connection gives way for them unchecked, as at the connection limit,
    /// else the silent ones keep everyone out until they idle out.
    MakeRoom,
    /// Another failure: logged, and backed off from briefly instead of spinning.
    BackOff,
}

/// What to do after `accept` failed, `out_of_files` (herd's open-file limit or the system's)
/// or not, with the spare `held` or lent; `someone_waits` looks at the backlog (asked only
/// when it matters).
pub fn after_accept_failed(
    out_of_files: bool,
    held: bool,
    someone_waits: impl FnOnce() -> bool,
) -> AcceptFailed {
    match (out_of_files, held) {
        (false, _) => AcceptFailed::BackOff,
        (true, true) => AcceptFailed::LendSpare,
        (true, false) if someone_waits() => AcceptFailed::MakeRoom,
        (true, false) => AcceptFailed::WaitForFiles,
    }
}

/// Takes files back for `spare`, then `reserve`, where free: whether both hold one. A file freed
/// while herd's other threads run may be taken before the spare reopens it; the spare is then
/// given the reserve's, as the spare is what lets the next newcomer be checked before any
/// connection gives way.
pub fn refill(spare: &mut Spare, reserve: &mut Spare) -> bool {
    refill_with(spare, reserve, &mut open_null)
}

fn refill_with(
    spare: &mut Spare,
    reserve: &mut Spare,
    open: &mut impl FnMut() -> Option<File>,
) -> bool {
    (spare.restore_with(open) || spare.take(reserve)) && reserve.restore_with(open)
}

/// A file to hold: `/dev/null`, or the root directory where there is none (a chroot or a
/// sandbox without it), which every process can open: else the spare would never be held, and
/// herd would try for it five times a second for ever.
fn open_null() -> Option<File> {
    File::open("/dev/null").or_else(|_| File::open("/")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_is_lent_once_until_taken_back() {
        let mut spare = Spare::new();
        assert!(spare.lend());
        assert!(!spare.lend(), "lent already");
        assert!(spare.restore());
        assert!(spare.restore(), "one is enough");
        assert!(spare.lend());
    }

    #[test]
    fn out_of_files_the_spare_is_lent_and_without_it_room_is_made_only_for_one_who_waits() {
        use AcceptFailed::*;
        let never = || -> bool { panic!("the backlog needs no look") };
        assert_eq!(after_accept_failed(true, true, never), LendSpare);
        assert_eq!(after_accept_failed(true, false, || true), MakeRoom);
        assert_eq!(after_accept_failed(true, false, || false), WaitForFiles);
        assert_eq!(after_accept_failed(false, true, never), BackOff);
        assert_eq!(after_accept_failed(false, false, never), BackOff);
    }

    #[test]
    fn a_spare_that_cannot_reopen_takes_the_reserves_file() {
        let (mut spare, mut reserve) = (Spare(None), Spare::new());
        let mut none = || None;
        assert!(!refill_with(&mut spare, &mut reserve, &mut none));
        assert!(spare.0.is_some() && reserve.0.is_none());
        assert!(!refill_with(&mut spare, &mut reserve, &mut none));
        assert!(spare.0.is_some(), "kept");
        assert!(refill(&mut spare, &mut reserve));
        assert!(reserve.0.is_some());
    }
}
