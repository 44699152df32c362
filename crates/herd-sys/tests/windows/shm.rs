use std::io::{self, BufRead, Write};
use std::os::windows::io::AsHandle;
use std::process::Stdio;
use std::sync::atomic::Ordering;

use herd_sys::windows::{handle, process, shm};

use crate::roles::{child, Lines, PATIENCE};

/// Claims the handle value on its stdin, maps it, reports word 1, adds 1 to word 2.
pub fn reader() {
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line).unwrap();
    let value: u64 = line.trim().parse().unwrap();
    let memory = handle::claim(value).unwrap();
    let view = shm::Mapping::new(memory.as_handle()).unwrap();
    println!("saw={}", view.atomic_u64(1).unwrap().load(Ordering::SeqCst));
    view.atomic_u64(2).unwrap().fetch_add(1, Ordering::SeqCst);
    let again = handle::claim(value).unwrap_err().raw_os_error();
    println!("claimed again: {again:?}");
}

#[test]
fn a_child_maps_the_duplicated_handle_and_sees_what_the_parent_wrote() {
    let memory = shm::create(4096).unwrap();
    let view = shm::Mapping::new(memory.as_handle()).unwrap();
    view.atomic_u64(1).unwrap().store(42, Ordering::SeqCst);

    let mut reader = child("shm_reader", "")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::new(reader.stdout.take().unwrap());
    let value = handle::duplicate_into(memory.as_handle(), &reader).unwrap();
    writeln!(reader.stdin.take().unwrap(), "{value}").unwrap();

    assert_eq!(lines.after("saw="), "42");
    // ERROR_BUSY: a value is claimed once.
    assert_eq!(lines.after("claimed again: "), "Some(170)");
    assert!(process::wait(&reader, Some(PATIENCE)).unwrap());
    assert_eq!(reader.wait().unwrap().code(), Some(0));
    assert_eq!(view.atomic_u64(2).unwrap().load(Ordering::SeqCst), 1);
}

#[test]
fn values_that_are_no_handed_over_handle_are_refused() {
    // ERROR_INVALID_HANDLE: nothing, a standard handle, a handle value nothing opened.
    let stdout = io::stdout();
    let stdout = std::os::windows::io::AsRawHandle::as_raw_handle(&stdout) as usize as u64;
    for value in [0, stdout, 0x7fff_fff0] {
        assert_eq!(handle::claim(value).unwrap_err().raw_os_error(), Some(6));
    }
}
