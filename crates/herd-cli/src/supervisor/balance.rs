//! `--balance reuseport` at run time: which slots' sockets get new connections, and draining a
//! slot's queue before its worker is told to stop.
//!
//! New connections go to the slots below the desired count that have a ready worker (all of
//! them until one is ready), so a crashed worker's slot gets nothing new while its successor
//! starts, and the connections already in its queue wait for that successor. A worker scaled
//! away gets its stop signal only once its slot is out of rotation and its queue is empty (or
//! after [`DRAIN_LIMIT`]), because closing a reuseport socket resets what waits in it, and
//! Linux moves those connections to a sibling only with `net.ipv4.tcp_migrate_req=1`.

use std::time::Duration;

use herd_core::DrainPolicy;

use super::pool::Pool;
use crate::logging::LogEvent;
use crate::spec::Listener;

/// How long a slot stays out of rotation before its worker may stop: a handshake that began
/// before the slot was left out still completes into its queue for about one round trip.
pub const DRAIN_SETTLE: Duration = Duration::from_millis(250);

/// The longest a stop signal waits for the slot's queue to empty (at most half the grace
/// period).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// How often the queues of draining slots are looked at.
pub const DRAIN_CHECK: Duration = Duration::from_millis(20);

/// Whether any listener has per-slot sockets (`--balance reuseport`).
pub fn per_slot(listeners: &[Listener]) -> bool {
    per_slot_sockets(listeners) > 0
}

/// How many sockets of its own each slot holds (`--balance reuseport`).
pub fn per_slot_sockets(listeners: &[Listener]) -> usize {
    listeners.iter().filter(|l| l.group().is_some()).count()
}

/// Points every per-slot group at the slots that should get new connections. Errors are
/// logged (once per change) and leave the previous steering in place.
pub fn steer(listeners: &mut [Listener], pool: &Pool) {
    if !per_slot(listeners) {
        return;
    }
    let slots = steered_slots(pool.desired(), pool.ready_slots().collect());
    for l in listeners {
        if let Some(group) = l.group_mut() {
            if let Err(e) = group.steer(&slots) {
                tracing::warn!(event = LogEvent::SystemError.as_str(), socket = %l.name, "cannot steer the reuseport sockets: {e}");
            }
        }
    }
}

/// The slots new connections go to: those with a ready worker, all `desired` ones until one
/// is ready, and slot 0 while herd runs none (`herd scale 0`): the first a scale-up fills, so
/// what waits meanwhile is served then, not left in a slot the pool may not grow back to.
fn steered_slots(desired: usize, ready: Vec<usize>) -> Vec<usize> {
    match (ready.is_empty(), desired) {
        (false, _) => ready,
        (true, 0) => vec![0],
        (true, desired) => (0..desired).collect(),
    }
}

/// How a worker scaled away drains its slot, when slots have sockets of their own: the pool
/// holds its stop back (see [`herd_core::DrainPolicy`]) for at most [`DRAIN_LIMIT`] or half the
/// grace period.
pub fn drain_policy(listeners: &[Listener], grace: Duration) -> Option<DrainPolicy> {
    per_slot(listeners).then(|| DrainPolicy {
        settle: DRAIN_SETTLE,
        limit: DRAIN_LIMIT.min(grace / 2),
    })
}

/// How many connections wait in `slot`'s queues, over every per-slot listener.
pub fn queued(listeners: &[Listener], slot: usize) -> u32 {
    listeners
        .iter()
        .filter_map(Listener::group)
        .map(|g| g.queued(slot))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With no worker (`herd scale 0`), new connections wait in slot 0's queue, which the
    /// next scale-up serves first: spread over every slot, those in slots it did not grow back
    /// to waited for good.
    #[test]
    fn connections_go_to_ready_slots_else_all_wanted_else_slot_0() {
        assert_eq!(steered_slots(4, vec![1, 3]), [1, 3]);
        assert_eq!(steered_slots(4, vec![]), [0, 1, 2, 3]);
        assert_eq!(steered_slots(0, vec![]), [0]);
    }
}
