//! Room for a newcomer on the control socket: who gets a place among the
//! [`MAX_CONNECTIONS`](super::server::MAX_CONNECTIONS), and who gives way for it. A newcomer is
//! checked first (a peer that may not use herd is refused, and never makes another connection
//! close); then it takes a free place, or the connection that has waited longest for a request
//! is told to give way ([`waiting`](super::waiting)). One told just as its request came keeps
//! its place and answers it, and the next longest waiting is told instead, up to
//! [`MAX_TOLD`] in all. Pure: the control server carries the decisions out.

/// How many connections are told to give way for one newcomer, at most.
pub const MAX_TOLD: usize = 8;

/// Where a newcomer goes, with what it brings: its peer, once checked, and the place it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place<P, R, T> {
    /// Refused, with what to tell it: its peer may not use herd.
    Denied(R),
    /// A place was free: it takes it.
    Free(P, T),
    /// Every place is taken: make room.
    MakeRoom(P),
}

/// Where a newcomer whose peer was `checked` goes: a refused one takes no place, even for a
/// moment; an allowed one takes a place if one is `free`, else room is made for it.
pub fn place<P, R, T>(checked: Result<P, R>, free: impl FnOnce() -> Option<T>) -> Place<P, R, T> {
    match checked {
        Err(refusal) => Place::Denied(refusal),
        Ok(peer) => match free() {
            Some(place) => Place::Free(peer, place),
            None => Place::MakeRoom(peer),
        },
    }
}

/// What the connection told to give way did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It closed: its place is free.
    GaveWay,
    /// Its request came at that moment: it keeps its place to answer it.
    KeptItsPlace,
    /// No connection waits for a request (every one has a command in progress).
    NobodyWaits,
}

/// What the newcomer does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Take the place the connection that gave way left.
    TakeItsPlace,
    /// Tell the next longest waiting connection to give way.
    TellAnother,
    /// Give up: the newcomer is told `busy`.
    Busy,
}

/// What to do after `told` did what it did, `told` connections having been told so far.
pub fn next(outcome: Outcome, told: usize) -> Next {
    match outcome {
        Outcome::GaveWay => Next::TakeItsPlace,
        Outcome::KeptItsPlace if told < MAX_TOLD => Next::TellAnother,
        Outcome::KeptItsPlace | Outcome::NobodyWaits => Next::Busy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_that_may_not_use_herd_is_refused_before_any_room_is_made() {
        let denied: Result<(), &str> = Err("denied");
        let allowed: Result<&str, ()> = Ok("peer");
        assert_eq!(place(denied, || None::<u8>), Place::Denied("denied"));
        assert_eq!(
            place(denied, || -> Option<u8> {
                panic!("a refused peer takes no place")
            }),
            Place::Denied("denied")
        );
        assert_eq!(place(allowed, || Some(1)), Place::Free("peer", 1));
        assert_eq!(place(allowed, || None::<u8>), Place::MakeRoom("peer"));
    }

    #[test]
    fn one_that_kept_its_place_passes_the_turn_to_the_next_a_bounded_number_of_times() {
        assert_eq!(next(Outcome::GaveWay, 1), Next::TakeItsPlace);
        assert_eq!(next(Outcome::GaveWay, MAX_TOLD), Next::TakeItsPlace);
        assert_eq!(next(Outcome::KeptItsPlace, 1), Next::TellAnother);
        assert_eq!(next(Outcome::KeptItsPlace, MAX_TOLD - 1), Next::TellAnother);
        assert_eq!(next(Outcome::KeptItsPlace, MAX_TOLD), Next::Busy);
        assert_eq!(next(Outcome::NobodyWaits, 0), Next::Busy);
    }
}
