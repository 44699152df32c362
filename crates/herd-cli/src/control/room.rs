//! Room for a newcomer on the control socket: who gets a place among the
//! [`MAX_CONNECTIONS`](super::server::MAX_CONNECTIONS), and who gives way for it. A newcomer is
//! checked first (a peer that may not use herd is refused, and never makes another connection
//! close); then it takes a free place, or the connection that has waited longest for a request
//! is told to give way ([`waiting`](super::waiting)). One told just as its request came keeps
//! its place and answers it, and the next longest waiting is told instead, up to
//! [`MAX_TOLD`] in all. Pure: the control server carries the decisions out.

/// How many connections are told to give way for one newcomer, at most.
pub const MAX_TOLD: usize = 8;

/// Where a newcomer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Refused: its peer may not use herd.
    Denied,
    /// A place is free: take it.
    Free,
    /// Every place is taken: make room.
    MakeRoom,
}

/// Where a newcomer goes: one whose peer is `allowed`, when a place is `free` or not.
pub fn place(allowed: bool, free: bool) -> Place {
    match (allowed, free) {
        (false, _) => Place::Denied,
        (true, true) => Place::Free,
        (true, false) => Place::MakeRoom,
    }
}

/// What the connection told to give way did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Told {
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
pub fn next(outcome: Told, told: usize) -> Next {
    match outcome {
        Told::GaveWay => Next::TakeItsPlace,
        Told::KeptItsPlace if told < MAX_TOLD => Next::TellAnother,
        Told::KeptItsPlace | Told::NobodyWaits => Next::Busy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_that_may_not_use_herd_is_refused_before_any_room_is_made() {
        assert_eq!(place(false, false), Place::Denied);
        assert_eq!(place(false, true), Place::Denied);
        assert_eq!(place(true, true), Place::Free);
        assert_eq!(place(true, false), Place::MakeRoom);
    }

    #[test]
    fn one_that_kept_its_place_passes_the_turn_to_the_next_a_bounded_number_of_times() {
        assert_eq!(next(Told::GaveWay, 1), Next::TakeItsPlace);
        assert_eq!(next(Told::GaveWay, MAX_TOLD), Next::TakeItsPlace);
        assert_eq!(next(Told::KeptItsPlace, 1), Next::TellAnother);
        assert_eq!(next(Told::KeptItsPlace, MAX_TOLD - 1), Next::TellAnother);
        assert_eq!(next(Told::KeptItsPlace, MAX_TOLD), Next::Busy);
        assert_eq!(next(Told::NobodyWaits, 0), Next::Busy);
    }
}
