#![no_main]
// The property lives in the library (hero_usage::props::config_file), where
// tests/cli/fuzz_corpora.rs replays this target's corpus through it.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hero_usage::props::config_file(data);
});
