//! `--timeline FILE`: one CSV record per request, so that a run can be cut into windows
//! (steady, or inside a reload) after the fact.
//!
//! ```text
//! start_us,latency_us,outcome
//! 0,412,ok
//! 500,398,ok
//! 1000,5000000,timeout
//! 1500,377,http_503
//! ```
//!
//! `start_us` is when the request was due (open loop) or sent (closed loop), in microseconds
//! from the run's start (the output's `start_unix_us`); `latency_us` is measured from then to
//! the end of the answer (or the failure); `outcome` is `ok` or the kind of failure: `refused`,
//! `reset`, `eof`, `timeout`, `other`, or `http_NNN` for an answer with status NNN (not 2xx).
//! Records are in order of `start_us`.

use std::io::Write;
use std::time::Duration;

use crate::Failure;

/// One request: when it started, how long it took, and how it ended (None: ok).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub start_us: u64,
    pub latency_us: u64,
    pub failure: Option<Failure>,
}

impl Record {
    pub fn new(start: Duration, latency_us: u64, failure: Option<Failure>) -> Record {
        Record {
            start_us: start.as_micros() as u64,
            latency_us,
            failure,
        }
    }
}

/// The name of an outcome in the timeline and in the JSON output's failure counts.
pub fn outcome(failure: Option<Failure>) -> String {
    match failure {
        None => "ok".into(),
        Some(Failure::Refused) => "refused".into(),
        Some(Failure::Reset) => "reset".into(),
        Some(Failure::Eof) => "eof".into(),
        Some(Failure::Timeout) => "timeout".into(),
        Some(Failure::Other) => "other".into(),
        Some(Failure::Status(code)) => format!("http_{code}"),
    }
}

/// Writes `records` as CSV, in order of start, with a header line.
pub fn write(mut records: Vec<Record>, out: impl Write) -> std::io::Result<()> {
    records.sort_by_key(|r| (r.start_us, r.latency_us));
    let mut out = std::io::BufWriter::new(out);
    writeln!(out, "start_us,latency_us,outcome")?;
    for r in &records {
        writeln!(
            out,
            "{},{},{}",
            r.start_us,
            r.latency_us,
            outcome(r.failure)
        )?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_written_in_order_of_start_with_their_outcome() {
        let ms = Duration::from_millis;
        let records = vec![
            Record::new(ms(2), 300, Some(Failure::Status(503))),
            Record::new(ms(0), 412, None),
            Record::new(ms(1), 5_000_000, Some(Failure::Timeout)),
            Record::new(ms(3), 10, Some(Failure::Refused)),
        ];
        let mut out = Vec::new();
        write(records, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "start_us,latency_us,outcome\n0,412,ok\n1000,5000000,timeout\n\
             2000,300,http_503\n3000,10,refused\n"
        );
    }

    #[test]
    fn every_failure_has_its_own_name() {
        let names: Vec<String> = [
            None,
            Some(Failure::Refused),
            Some(Failure::Reset),
            Some(Failure::Eof),
            Some(Failure::Timeout),
            Some(Failure::Other),
            Some(Failure::Status(502)),
        ]
        .into_iter()
        .map(outcome)
        .collect();
        assert_eq!(
            names,
            ["ok", "refused", "reset", "eof", "timeout", "other", "http_502"]
        );
    }

    #[test]
    fn an_empty_run_has_only_the_header() {
        let mut out = Vec::new();
        write(Vec::new(), &mut out).unwrap();
        assert_eq!(out, b"start_us,latency_us,outcome\n");
    }
}
