use std::os::windows::process::CommandExt;
use std::time::{Duration, Instant};

use herd_sys::windows::{console, process};

use crate::roles::{child, Lines, PATIENCE};

const CREATE_NEW_PROCESS_GROUP: u32 = 0x200;

/// Takes a console of its own, starts a receiver in a new process group, Ctrl-Cs it, and
/// reports how it ended.
pub fn sender() {
    console::own_console().unwrap();
    let mut receiver = child("ctrl_receiver", "")
        .creation_flags(CREATE_NEW_PROCESS_GROUP)
        .spawn()
        .unwrap();
    let mut lines = Lines::new(receiver.stdout.take().unwrap());
    lines.after("ready");
    console::send_ctrl_c(receiver.id()).unwrap();
    let said = lines.after("got ");
    assert!(process::wait(&receiver, Some(PATIENCE)).unwrap());
    println!(
        "receiver: got {said}, exit {:?}",
        receiver.wait().unwrap().code()
    );
}

/// Accepts Ctrl-C again, catches it, and says when it came.
pub fn receiver() {
    console::restore_ctrl_c().unwrap();
    herd_sys::wsa::catch_ctrl_c().unwrap();
    println!("ready");
    let deadline = Instant::now() + PATIENCE;
    while !herd_sys::wsa::ctrl_c_pressed() {
        assert!(Instant::now() < deadline, "no Ctrl-C came");
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("got ctrl-c");
}

#[test]
fn ctrl_c_reaches_a_worker_in_its_own_process_group() {
    let mut sender = child("ctrl_sender", "").spawn().unwrap();
    let mut lines = Lines::new(sender.stdout.take().unwrap());
    assert_eq!(lines.after("receiver: "), "got ctrl-c, exit Some(0)");
    assert_eq!(sender.wait().unwrap().code(), Some(0));
}

#[test]
fn ctrl_c_to_group_0_every_process_on_the_console_is_refused() {
    let refused = console::send_ctrl_c(0).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
}
