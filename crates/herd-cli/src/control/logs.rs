//! The `logs` command, answered by the control server itself, off the supervisor's loop: the
//! workers' recent lines from [`crate::output`], then with `follow` every new line, until the
//! client closes the connection.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast::error::RecvError;

use super::lines::IDLE_TIMEOUT;
use super::protocol::{ErrorCode, Response, VERSION};
use super::results::{LogFrame, LogsResult};
use crate::output::{self, Record};

/// Answers `logs` on a connection read by `read` and written by `write`. Returns when the
/// answer is written (without `follow`) or when the client is gone.
pub async fn answer(
    read: &mut (impl AsyncRead + Unpin),
    write: &mut (impl AsyncWrite + Unpin),
    slot: Option<usize>,
    lines: Option<usize>,
    follow: bool,
) {
    let Some(output) = output::current() else {
        let refusal: Response = Response::error(
            ErrorCode::Unavailable,
            "herd does not keep its workers' output: start it with --worker-output prefix \
             (or json) to use herd logs",
        );
        let _ = send(write, &refusal.to_line()).await;
        return;
    };
    let (recent, mut follower) = output.recent_and_follow(lines, slot);
    let result = LogsResult {
        lines: recent.iter().map(|r| r.to_log_line()).collect(),
    };
    if !send(write, &Response::ok(result).to_line()).await || !follow {
        return;
    }
    let wanted = |record: &Record| slot.is_none_or(|s| record.writer.slot == s);
    let mut probe = [0u8; 64];
    loop {
        let frame = tokio::select! {
            received = follower.recv() => match received {
                Ok(record) if wanted(&record) => frame(Some(&record), None),
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => frame(None, Some(n)),
                Err(RecvError::Closed) => return,
            },
            // A follower sends nothing more: anything, or the end, means it is gone.
            _ = read.read(&mut probe) => return,
        };
        if !send(write, &frame).await {
            return;
        }
    }
}

/// One [`LogFrame`] line.
fn frame(record: Option<&Arc<Record>>, missed: Option<u64>) -> Vec<u8> {
    let frame = LogFrame {
        version: VERSION,
        line: record.map(|r| r.to_log_line()),
        missed,
    };
    let mut line = serde_json::to_vec(&frame).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Writes `line`; whether the client took it in time.
async fn send(write: &mut (impl AsyncWrite + Unpin), line: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(IDLE_TIMEOUT, write.write_all(line)).await,
        Ok(Ok(()))
    )
}
