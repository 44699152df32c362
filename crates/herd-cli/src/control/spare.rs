//! One file descriptor the control socket holds in reserve. At herd's open-file limit the
//! newcomer waiting to be accepted has no fd to be accepted on, so its credentials cannot be
//! read; a connection made to give way for it then could be closed for a peer that may not use
//! herd. With the spare given up for it, the newcomer is accepted and checked first: a refused
//! one is told so and closed, and the spare taken back, without any connection closing; for one
//! that is let in, a silent connection gives way, and its fd becomes the spare. With none to
//! give way, the one let in is served on the spare's fd, and a second one held in reserve
//! becomes the spare (`control::server`), so that the next newcomer can still be answered;
//! both are taken again once files are free.

use std::fs::File;

/// The spare fd (an open `/dev/null`, close-on-exec), or none while it is lent.
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

    /// Takes an fd back as the spare if it has none and one is free: whether it holds one now.
    pub fn restore(&mut self) -> bool {
        if self.0.is_none() {
            self.0 = File::open("/dev/null").ok();
        }
        self.0.is_some()
    }
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
}
