//! The --bind parser: any text parses or gives an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(spec) = text.parse::<herd_cli::spec::BindSpec>() {
        assert_eq!(spec.text, text);
        if let Some(name) = &spec.name {
            herd_core::validate_name(name).expect("a parsed name is a valid LISTEN_FDNAMES name");
        }
    }
});
