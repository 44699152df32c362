//! Whether an exited worker's group can hold anything, told from herd's children alone: the
//! look that saves reading every process in `/proc` at each exit.

/// Whether an exited worker's group may still hold a live process, given herd's `children`
/// right after the exit and whether each is `known` (a live worker, an exited one still held
/// unreaped, a re-exec check): only through a child herd does not know. herd is a child
/// subreaper, so what a worker started and left running is re-parented to herd when the
/// worker exits; a grandchild whose parent still runs is below such a child. Without the
/// subreaper role (`subreaper` false) they go to init, and only a look at every process
/// tells. A process that joined the group from outside the worker's family (`setpgid` from
/// elsewhere in herd's session) is not seen this way: it is not what the worker left.
pub fn may_have_members(children: &[u32], known: impl Fn(u32) -> bool, subreaper: bool) -> bool {
    !subreaper || children.iter().any(|&pid| !known(pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_child_herd_does_not_know_can_hold_an_exited_workers_group() {
        let known = |pid: u32| [10, 11, 12].contains(&pid);
        // Every child is a worker, an exited one or a check: nothing was left running.
        assert!(!may_have_members(&[10, 11, 12], known, true));
        assert!(!may_have_members(&[], known, true));
        // Something a worker left, re-parented to herd (or above what it left).
        assert!(may_have_members(&[10, 11, 40], known, true));
        // Not a subreaper: what workers leave goes to init, where only /proc tells.
        assert!(may_have_members(&[10], known, false));
    }
}
