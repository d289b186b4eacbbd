//! Fuzz target: any bytes through the OTLP decoders and the span validator must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oncall::collectors::traces::otlp::{Format, convert, decode};

fuzz_target!(|data: &[u8]| {
    for format in [Format::Protobuf, Format::Json] {
        if let Ok(req) = decode(format, data) {
            let _ = convert(&req);
        }
    }
});
