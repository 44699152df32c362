//! The Windows socket hand-off format: any bytes decode or give a clear error; what decodes
//! encodes back to the bytes it was read from.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    if let Ok(entries) = herd::share::decode(&mut input) {
        let used = data.len() - input.len();
        let again = herd::share::encode(&entries).expect("what decodes encodes");
        assert_eq!(&again[..], &data[..used]);
    }
});
