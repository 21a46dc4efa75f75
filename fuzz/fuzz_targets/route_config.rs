//! Arbitrary route files and server settings through the config loader.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[derive(arbitrary::Arbitrary, Debug)]
struct Input<'a> {
    main: &'a str,
    route: &'a str,
}

fuzz_target!(|input: Input<'_>| {
    let _ = headgate::internals::config::check_texts(input.main, &[("r", input.route)]);
});
