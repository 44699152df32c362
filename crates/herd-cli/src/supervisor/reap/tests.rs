use std::collections::{HashMap, VecDeque};
#[cfg(unix)]
use std::os::unix::process::ExitStatusExt;
#[cfg(windows)]
use std::os::windows::process::ExitStatusExt;

use super::*;

/// What a fake child does when looked at.
enum Fate {
    /// Exited with this raw status.
    Exited(u32),
    /// Is not herd's child.
    NotOurs,
    /// Cannot be waited for.
    Fails,
}

/// Children as a test describes them.
#[derive(Default)]
struct Fake {
    /// What `peek_exit` says for each pid (absent: still running).
    exits: HashMap<u32, Fate>,
    /// What `reap_own_group` returns, in turn (then `Ok(None)`).
    own_group: VecDeque<io::Result<Option<(u32, ExitStatus)>>>,
    /// Every pid looked at, in order.
    peeked: Vec<u32>,
    /// What `first_exited` names (absent: the platform cannot name one).
    first: Option<(u32, ExitStatus)>,
}

/// An exit status, raw as the platform gives it.
fn status(raw: u32) -> ExitStatus {
    ExitStatus::from_raw(raw as _)
}

impl Children for Fake {
    fn peek_exit(&mut self, pid: u32) -> io::Result<Peek> {
        self.peeked.push(pid);
        match self.exits.get(&pid) {
            None => Ok(Peek::Running),
            Some(Fate::Exited(raw)) => Ok(Peek::Exited(status(*raw))),
            Some(Fate::NotOurs) => Ok(Peek::NotOurs),
            Some(Fate::Fails) => Err(io::Error::other("cannot wait")),
        }
    }

    fn reap_own_group(&mut self) -> io::Result<Option<(u32, ExitStatus)>> {
        self.own_group.pop_front().unwrap_or(Ok(None))
    }

    fn first_exited(&mut self) -> Option<(u32, ExitStatus)> {
        self.first
    }
}

#[test]
fn exited_workers_are_found_and_running_ones_left_alone() {
    let mut fake = Fake::default();
    fake.exits.insert(11, Fate::Exited(3 << 8));
    let found = look(&mut fake, [10, 11, 12], []);
    assert_eq!(
        found.workers,
        vec![WorkerExit {
            pid: 11,
            status: status(3 << 8),
            held: true
        }]
    );
    assert_eq!(fake.peeked, vec![10, 11, 12]);
}

#[test]
fn a_worker_that_is_no_longer_herds_child_is_forgotten_and_not_held() {
    let mut fake = Fake::default();
    fake.exits.insert(7, Fate::NotOurs);
    let found = look(&mut fake, [7], []);
    assert_eq!(found.workers.len(), 1);
    assert!(!found.workers[0].held, "its pid may name a stranger now");
}

#[test]
fn a_worker_that_cannot_be_waited_for_is_kept_for_the_next_look() {
    let mut fake = Fake::default();
    fake.exits.insert(7, Fate::Fails);
    assert_eq!(look(&mut fake, [7], []), Found::default());
}

#[test]
fn reexec_checks_are_found_or_lost() {
    let mut fake = Fake::default();
    fake.exits.insert(20, Fate::Exited(0));
    fake.exits.insert(21, Fate::NotOurs);
    fake.exits.insert(22, Fate::Fails);
    let found = look(&mut fake, [], [20, 21, 22, 23]);
    assert_eq!(found.checks, vec![(20, status(0))]);
    assert_eq!(found.lost_checks, vec![21, 22]);
    assert!(found.workers.is_empty());
}

#[test]
fn the_own_group_is_reaped_until_empty_and_an_error_ends_it() {
    let mut fake = Fake::default();
    fake.own_group
        .extend([Ok(Some((30, status(0)))), Ok(Some((31, status(9))))]);
    assert_eq!(reap_own_group(&mut fake).len(), 2);
    fake.own_group.extend([
        Ok(Some((32, status(0)))),
        Err(io::Error::other("interrupted")),
        Ok(Some((33, status(0)))),
    ]);
    assert_eq!(reap_own_group(&mut fake).len(), 1, "an error must not spin");
}

#[test]
fn the_exit_named_first_is_taken_only_when_it_is_a_workers() {
    let mut fake = Fake {
        first: Some((11, status(9))),
        ..Fake::default()
    };
    let exit = first_exit(&mut fake, |pid| pid == 11);
    assert_eq!(
        exit,
        Some(WorkerExit {
            pid: 11,
            status: status(9),
            held: true
        })
    );
    assert!(more_exited(&mut fake), "it is unreaped still");
    // A zombie herd holds on purpose, a re-exec check or a helper is left to the scan.
    assert_eq!(first_exit(&mut fake, |pid| pid == 12), None);
    assert!(fake.peeked.is_empty(), "no worker was looked at one by one");
    fake.first = None;
    assert_eq!(first_exit(&mut fake, |_| true), None);
    assert!(!more_exited(&mut fake));
}
