//! sd_notify datagrams: any bytes give a message or are refused, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|datagram: &[u8]| {
    if let Some(message) = herd_cli::supervisor::pool::NotifyMessage::parse(datagram) {
        if let Some(status) = message.status {
            assert!(status.chars().count() <= 200);
        }
    }
});
