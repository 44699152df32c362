//! The listening sockets' backlogs, as the sampler reads them. Many servers call `listen` again
//! on the socket they inherit and so replace herd's backlog with their own default (hypercorn
//! and Sanic 100, aiohttp 128, Node 511, waitress and unicorn 1024): herd says so once per
//! socket and value, and keeps the last reading for `--metrics`.

use std::collections::HashMap;

use super::sampler::ListenQueue;

/// What the last round read, and which replaced backlogs were said.
#[derive(Debug, Default)]
pub struct Backlogs {
    last: Vec<ListenQueue>,
    /// The backlog in force that was said, by socket.
    said: HashMap<String, u32>,
}

/// A socket whose backlog is no longer the one herd listened with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replaced {
    /// The socket's name.
    pub socket: String,
    /// The backlog herd listened with.
    pub set: u32,
    /// The backlog in force.
    pub now: u32,
}

impl Backlogs {
    /// Takes a round's `queues`: the sockets whose backlog changed under herd since last said
    /// (a socket whose backlog is back to herd's may be said again later).
    pub fn record(&mut self, queues: Vec<ListenQueue>) -> Vec<Replaced> {
        let mut replaced = Vec::new();
        for q in &queues {
            let Some(set) = q.set else {
                continue;
            };
            if q.backlog == set {
                self.said.remove(&q.socket);
            } else if self.said.get(&q.socket) != Some(&q.backlog) {
                self.said.insert(q.socket.clone(), q.backlog);
                replaced.push(Replaced {
                    socket: q.socket.clone(),
                    set,
                    now: q.backlog,
                });
            }
        }
        self.last = queues;
        replaced
    }

    /// The last round's readings.
    pub fn last(&self) -> &[ListenQueue] {
        &self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(backlog: u32, set: Option<u32>) -> ListenQueue {
        ListenQueue {
            socket: "http".to_string(),
            queued: 0,
            backlog,
            set,
        }
    }

    #[test]
    fn a_replaced_backlog_is_said_once_per_value() {
        let mut b = Backlogs::default();
        assert!(b.record(vec![queue(4096, Some(4096))]).is_empty());
        let said = b.record(vec![queue(100, Some(4096))]);
        assert_eq!(
            said,
            [Replaced {
                socket: "http".to_string(),
                set: 4096,
                now: 100
            }]
        );
        assert!(b.record(vec![queue(100, Some(4096))]).is_empty(), "once");
        assert_eq!(
            b.record(vec![queue(511, Some(4096))]).len(),
            1,
            "a new value"
        );
        assert!(b.record(vec![queue(4096, Some(4096))]).is_empty());
        assert_eq!(
            b.record(vec![queue(511, Some(4096))]).len(),
            1,
            "again after a return"
        );
        assert_eq!(b.last(), [queue(511, Some(4096))]);
    }

    #[test]
    fn nothing_is_said_without_herds_own_value() {
        let mut b = Backlogs::default();
        assert!(b.record(vec![queue(100, None)]).is_empty());
    }
}
