//! `herd top` in a real terminal: tmux runs it, the test reads the screen (`capture-pane`) and
//! types keys (`send-keys`), synchronising on what the screen shows.

use std::process::{Command, Output};

use crate::util::*;

/// A tmux server of the test's own, with one window running a shell command; killed on drop.
struct Tmux {
    server: String,
}

impl Tmux {
    /// Runs `command` in a new 120x40 window, or `None` when tmux is not installed
    /// (scripts/setup.sh installs it).
    fn start(command: &str) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            eprintln!("skipped: tmux is not installed (scripts/setup.sh installs it)");
            return None;
        }
        let server = format!("herd-top-{}-{}", std::process::id(), unique());
        let tmux = Tmux { server };
        let out = tmux.run(&["new-session", "-d", "-x", "120", "-y", "40", command]);
        assert!(out.status.success(), "tmux: {out:?}");
        Some(tmux)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.server, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap()
    }

    /// What the window shows.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p"]).stdout).into_owned()
    }

    /// Whether the window is on the alternate screen (a full-screen program holds it).
    fn alternate(&self) -> bool {
        let out = self.run(&["display-message", "-p", "#{alternate_on}"]);
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    fn keys(&self, keys: &str) {
        assert!(self.run(&["send-keys", "-l", keys]).status.success());
    }

    /// Waits until the screen shows every one of `needles`.
    fn wait_screen(&self, needles: &[&str]) -> String {
        wait_until(&format!("the screen to show {needles:?}"), || {
            let screen = self.screen();
            match needles.iter().all(|n| screen.contains(n)) {
                true => Ok(screen),
                false => Err(screen),
            }
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// A number no other Tmux of this process has.
fn unique() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// `herd top` against `herd`, then a line with its exit status, in a shell that stays.
fn top_command(herd: &Herd) -> String {
    format!(
        "HERD_CONTROL='{}' '{HERD}' top; echo \"top exited $?\"; exec sleep 1000",
        herd.control()
    )
}

#[test]
fn herd_top_shows_the_workers_scales_upgrades_and_gives_the_terminal_back_on_q() {
    let herd = sleeper_on_http();
    herd.wait_for_event("worker_ready", &[]);
    let Some(tmux) = Tmux::start(&top_command(&herd)) else {
        return;
    };
    let pid = worker_pids(&herd.status())[0].to_string();
    tmux.wait_screen(&["herd '", "1 of 1 ready", &pid, "recent events", "q quit"]);
    assert!(tmux.alternate());
    // One key press does not take the last worker away.
    tmux.keys("-");
    tmux.wait_screen(&["herd top keeps 1 worker at least"]);
    assert_eq!(herd.status()["desired"], 1);
    tmux.keys("+");
    tmux.wait_screen(&["scaled from 1 to 2 workers"]);
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    tmux.wait_screen(&["2 of 2 ready"]);
    // u asks first; only y upgrades.
    tmux.keys("u");
    tmux.wait_screen(&["Start a rolling upgrade of every worker? y: yes"]);
    tmux.keys("n");
    tmux.wait_screen(&["no upgrade"]);
    assert_eq!(herd.status()["generation"], 1);
    tmux.keys("u");
    tmux.wait_screen(&["Start a rolling upgrade"]);
    tmux.keys("y");
    wait_status(&herd, "generation 2", |s| {
        s["generation"] == 2 && settled(s, 2)
    });
    tmux.wait_screen(&["generation 2:", "2 of 2 ready"]);
    // Two quick presses from 2: the second is refused, though no sample came between them.
    tmux.keys("-");
    tmux.keys("-");
    tmux.wait_screen(&["herd top keeps 1 worker at least"]);
    assert_eq!(herd.status()["desired"], 1);
    tmux.keys("q");
    let screen = tmux.wait_screen(&["top exited 0"]);
    assert!(!tmux.alternate(), "the alternate screen is left: {screen}");
    assert!(!screen.contains("recent events"), "{screen}");
}

/// A paused herd (SIGSTOP, a debugger) is not gone: the view says how to resume it and waits,
/// where it ended with "herd is gone: the herd ... is stopped".
#[test]
fn herd_top_waits_for_a_paused_herd() {
    let herd = sleeper_on_http();
    herd.wait_for_event("worker_ready", &[]);
    let Some(tmux) = Tmux::start(&top_command(&herd)) else {
        return;
    };
    tmux.wait_screen(&["1 of 1 ready", "recent events"]);
    let pid = herd.pid() as i32;
    // SAFETY: kill sends a signal to the herd this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    tmux.wait_screen(&[&format!("herd (pid {pid}) is paused"), "kill -CONT"]);
    assert!(tmux.alternate());
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    wait_until("the note to go", || {
        let screen = tmux.screen();
        match screen.contains("is paused") {
            false => Ok(()),
            true => Err(screen),
        }
    });
    tmux.keys("q");
    let screen = tmux.wait_screen(&["top exited 0"]);
    assert!(!screen.contains("herd is gone"), "{screen}");
}

#[test]
fn herd_top_says_in_one_line_when_herd_is_gone_and_gives_the_terminal_back() {
    let herd = sleeper_on_http();
    herd.wait_for_event("control_ready", &[]);
    let Some(tmux) = Tmux::start(&top_command(&herd)) else {
        return;
    };
    tmux.wait_screen(&["recent events"]);
    assert_eq!(herd.ctl(&["stop"]).0, 0);
    let screen = tmux.wait_screen(&["top exited 1", "herd: error: herd is gone"]);
    assert!(!tmux.alternate(), "{screen}");
}

#[test]
fn herd_top_refuses_a_stdout_that_is_not_a_terminal() {
    let herd = sleeper_on_http();
    let (code, stdout, stderr) = herd.ctl(&["top"]);
    assert_eq!((code, stdout.as_str()), (USAGE, ""), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("herd status --watch"), "{stderr}");
}

/// A terminal that takes no escapes (`TERM=dumb`: Emacs' shell, some CI consoles): `herd top`
/// refuses it as it refuses a pipe, and `herd status --watch` prints to it as to a pipe. Was:
/// both drew with cursor moves and colours, garbage there.
#[test]
fn a_dumb_terminal_gets_no_escapes() {
    let herd = sleeper_on_http();
    herd.wait_for_event("worker_ready", &[]);
    let command = format!(
        "export TERM=dumb HERD_CONTROL='{}'; '{HERD}' top; echo \"top exited $?\"; \
         exec '{HERD}' status --watch",
        herd.control()
    );
    let Some(tmux) = Tmux::start(&command) else {
        return;
    };
    // The piped form: each status after a `--- TIME` line, the earlier ones kept (a screen
    // drawn with escapes would have cleared the top's line).
    let screen = tmux.wait_screen(&["top exited 2", "--- 2", "1 of 1 workers ready"]);
    assert!(
        screen.contains("herd: error: herd top draws with terminal escapes and TERM=dumb"),
        "{screen}"
    );
    assert!(!tmux.alternate(), "{screen}");
}

#[test]
fn herd_top_ended_by_a_signal_gives_the_terminal_back_and_dies_of_it() {
    let herd = sleeper_on_http();
    herd.wait_for_event("control_ready", &[]);
    // `kill`, `timeout` and a closed terminal end it so: before, the terminal was left in raw
    // mode on the alternate screen, the cursor hidden.
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGHUP, 129)] {
        let command = format!(
            "HERD_CONTROL='{}' '{HERD}' top; echo \"top exited $?\"; \
             stty -a | grep -q ' icanon' && echo 'terminal cooked'; exec sleep 1000",
            herd.control()
        );
        let Some(tmux) = Tmux::start(&command) else {
            return;
        };
        tmux.wait_screen(&["recent events"]);
        let out = tmux.run(&["display-message", "-p", "#{pane_pid}"]);
        let shell = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .unwrap_or_default();
        let top: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
        // SAFETY: kill takes plain integers; top is the shell's child, waited for by it.
        assert_eq!(unsafe { libc::kill(top, signal) }, 0);
        let screen = tmux.wait_screen(&[&format!("top exited {code}"), "terminal cooked"]);
        assert!(!tmux.alternate(), "the alternate screen is left: {screen}");
        let cursor = tmux.run(&["display-message", "-p", "#{cursor_flag}"]);
        assert_eq!(
            String::from_utf8_lossy(&cursor.stdout).trim(),
            "1",
            "cursor hidden"
        );
    }
}

#[test]
fn herd_top_ends_when_its_terminal_goes_away() {
    let herd = sleeper_on_http();
    herd.wait_for_event("control_ready", &[]);
    // The window's shell runs herd top and writes how it ended: killing the tmux server closes
    // its terminal, as a closed terminal window or a lost ssh session does (the shell ignores
    // the hang-up; herd top catches it).
    let ended = herd.dir.path().join("top-ended");
    let command = format!(
        "trap '' HUP; HERD_CONTROL='{}' '{HERD}' top; echo $? > '{}'",
        herd.control(),
        ended.display()
    );
    let Some(tmux) = Tmux::start(&command) else {
        return;
    };
    tmux.wait_screen(&["recent events"]);
    let out = tmux.run(&["display-message", "-p", "#{pane_pid}"]);
    let shell = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let children = format!("/proc/{shell}/task/{shell}/children");
    let top = std::fs::read_to_string(&children).unwrap_or_default();
    let _reaped = KillOnDrop(top.trim().parse().expect("herd top's pid"));
    assert!(tmux.run(&["kill-server"]).status.success());
    // Before, it read its hung-up terminal for ever, at 100% CPU, deaf to SIGHUP and SIGTERM;
    // then it panicked (101) in ratatui's drop, printing to its dead stderr.
    let status = wait_until("herd top to end", || {
        match std::fs::read_to_string(&ended) {
            Ok(s) if s.ends_with('\n') => Ok(s.trim().to_string()),
            _ => Err("no status yet".to_string()),
        }
    });
    assert_eq!(status, "129", "herd top should die of SIGHUP (128 + 1)");
}

/// SIGKILLs a process when the test fails: it leaves no spinning process behind. (Only then:
/// one that ended may have been reaped and its pid taken again.)
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // SAFETY: kill takes plain integers; the process did not end, so it is still ours.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}
