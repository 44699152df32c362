//! A re-exec hands the workers' output pipes to herd's next image: nothing a worker wrote is
//! lost or garbled on the way, not even a line (or a character) cut in two.

use crate::util::*;
use crate::worker_output::herd_running;

/// herd running one worker of `script` (sh), its output prefixed, re-executed once the worker
/// wrote the line `up`: the herd, and the worker's pid.
fn reexecuted_after_up(script: &str) -> (Herd, u32) {
    let herd = herd_running("prefix", "1", script);
    let pid = herd.started(1)[0].1;
    herd.wait_text("] up");
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    herd.wait_for_event("reexecuted", &[]);
    (herd, pid)
}

/// The lines of worker output herd has written so far.
fn texts(herd: &Herd) -> Vec<String> {
    herd.lines()
        .into_iter()
        .filter_map(|l| match l {
            Line::Text(t) => Some(t),
            _ => None,
        })
        .collect()
}

#[test]
fn a_reexec_reads_the_workers_output_on_with_nothing_lost() {
    // The worker writes a line and half of another; on USR1 the rest of it and a numbered
    // line. The re-exec comes in between: the half line is either in the pipe (the next image
    // reads it whole) or already read (passed on marked split, its end following).
    let (herd, pid) = reexecuted_after_up(
        r#"trap 'echo " end" >&2; echo "after $n" >&2; n=$((n+1))' USR1
n=0; echo up >&2; printf half >&2
while :; do sleep 0.05; done"#,
    );
    let (code, _, _) = herd.ctl(&["signal", "USR1"]);
    assert_eq!(code, 0);
    herd.wait_text("] after 0");
    let (code, _, _) = herd.ctl(&["signal", "USR1"]);
    assert_eq!(code, 0);
    herd.wait_text("] after 1");
    let texts = texts(&herd);
    let tag = format!("[worker 0 pid {pid} gen 1");
    let whole = texts.contains(&format!("{tag}] half end"));
    let split =
        texts.contains(&format!("{tag} split] half")) && texts.contains(&format!("{tag}]  end"));
    assert!(whole || split, "the half line is kept: {texts:#?}");
    assert_eq!(
        worker_pids(&herd.status()),
        [pid],
        "the worker never saw a closed pipe"
    );
}

/// A line whose read part ended inside a UTF-8 character: the character was cut with it, and
/// "é" showed as two U+FFFD, one ending the split line and one starting its rest.
#[test]
fn a_reexec_never_cuts_a_character_in_two() {
    // 'caf' and the first byte of 'é' (C3 A9) in the write that ends the line 'up' (one
    // write, one read: "] up" says the half character was read), then on USR1 its second byte
    // and the rest.
    let (herd, pid) = reexecuted_after_up(
        r#"trap 'printf "\251 end\n" >&2; echo after >&2' USR1
printf 'up\ncaf\303' >&2
while :; do sleep 0.05; done"#,
    );
    let (code, _, _) = herd.ctl(&["signal", "USR1"]);
    assert_eq!(code, 0);
    herd.wait_text("] after");
    let texts = texts(&herd);
    let tag = format!("[worker 0 pid {pid} gen 1");
    let split =
        texts.contains(&format!("{tag} split] caf")) && texts.contains(&format!("{tag}] é end"));
    assert!(split, "the character is kept whole: {texts:#?}");
    assert!(!texts.iter().any(|t| t.contains('\u{FFFD}')), "{texts:#?}");
}
