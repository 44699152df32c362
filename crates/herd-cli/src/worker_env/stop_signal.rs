//! `HERD_STOP_SIGNAL`: the workers learn which signal asks them to stop (`--stop-signal`), so
//! that the herd library's `stop_requested` catches it as well as SIGTERM. herd sets it for the
//! workers it starts; `herd attach` for its command, from the `sockets` answer.

use std::ffi::OsString;

use crate::cli::Signal;

/// The variable's name.
pub const STOP_SIGNAL_VAR: &str = "HERD_STOP_SIGNAL";

/// Sets `HERD_STOP_SIGNAL` in the workers' `env` to `signal`: herd's own, like `HERD_WORKER`,
/// so an inherited value does not stand (`--env` of it is refused: `check_env`).
pub fn name_in(env: &mut Vec<(OsString, OsString)>, signal: Signal) {
    env.retain(|(key, _)| key != STOP_SIGNAL_VAR);
    env.push((STOP_SIGNAL_VAR.into(), value(signal).into()));
}

/// The signal's short name (`TERM`, `INT`), or its number for a real-time signal.
pub fn value(signal: Signal) -> String {
    signal
        .name()
        .map_or_else(|| signal.number().to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn herds_value_replaces_any_other_and_real_time_signals_go_by_number() {
        let mut env = vec![
            (OsString::from("A"), OsString::from("1")),
            (STOP_SIGNAL_VAR.into(), "QUIT".into()),
        ];
        name_in(&mut env, Signal::INT);
        assert_eq!(
            env,
            [
                ("A".into(), "1".into()),
                (STOP_SIGNAL_VAR.into(), "INT".into())
            ]
        );
        let rt = Signal::rt_min().and_then(Signal::from_number).unwrap();
        name_in(&mut env, rt);
        assert_eq!(env[1].1, OsString::from(rt.number().to_string()));
    }
}
