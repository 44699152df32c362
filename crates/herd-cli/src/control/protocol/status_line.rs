//! The `status` reply, written without first turning the whole status into one
//! `serde_json::Value`: with 4096 workers that tree took about 9 MB at once (memory herd's
//! heap keeps afterwards) and most of the reply's time. The bytes are the same as
//! [`Response::to_line`](super::Response::to_line)'s generic path: the status's members in
//! lexicographic order, `workers` among them, each worker's object converted on its own.

use serde_json::Value;

use crate::supervisor::status::Status;

/// The line of a successful `status` reply (`{"version":V,"ok":true,"result":{...}}`), newline
/// not included.
pub(super) fn status_line(status: &Status, version: u32) -> serde_json::Result<Vec<u8>> {
    let rest = Status {
        workers: Vec::new(),
        ..status.clone()
    };
    let members = match serde_json::to_value(&rest)? {
        Value::Object(members) => members,
        other => return serde_json::to_vec(&other),
    };
    let mut out = Vec::with_capacity(512 * (status.workers.len() + 4));
    out.extend_from_slice(format!("{{\"version\":{version},\"ok\":true,\"result\":{{").as_bytes());
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, key)?;
        out.push(b':');
        if key != "workers" {
            serde_json::to_writer(&mut out, value)?;
            continue;
        }
        out.push(b'[');
        for (j, worker) in status.workers.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, &serde_json::to_value(worker)?)?;
        }
        out.push(b']');
    }
    out.extend_from_slice(b"}}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::Response;
    use super::*;

    #[test]
    fn the_status_line_is_the_generic_one_byte_for_byte() {
        let worker = |slot: usize| {
            serde_json::json!({
                "slot": slot, "pid": 100 + slot, "generation": 1, "state": "ready",
                "available": true, "stopping_reason": null, "uptime_ms": 5, "restarts": 0,
                "last_exit": "exit code 1", "status": "serving \"x\"", "memory_bytes": 4096,
                "cpu_percent": 0.5, "recycling": null
            })
        };
        let status: Status = serde_json::from_value(serde_json::json!({
            "pid": 1, "name": "web", "version": "0", "uptime_ms": 1, "generation": 1,
            "upgrading_to": null, "stopping": false, "desired": 3, "running": 3,
            "ready": 3, "workers": [worker(0), worker(1), worker(2)],
            "waiting": [{"slot": 3, "restart_in_ms": 100, "restarts": 2, "last_exit": null}],
            "sockets": [], "attached": [], "memory_kind": "pss"
        }))
        .unwrap();
        let generic = serde_json::to_vec(&Response::ok(status.clone())).unwrap();
        assert_eq!(
            String::from_utf8(status_line(&status, 1).unwrap()).unwrap(),
            String::from_utf8(generic).unwrap()
        );
        // The reply herd sends is this one.
        let mut line = status_line(&status, 1).unwrap();
        line.push(b'\n');
        assert_eq!(Response::ok(status).to_line(), line);
    }
}
