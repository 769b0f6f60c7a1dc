#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| modelgate::fuzzing::compiler_graph(data));
