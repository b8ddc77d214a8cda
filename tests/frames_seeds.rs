//! Keeps the fuzz seed corpus (`fuzz/seeds/frame_decode/`, one real frame per message type)
//! equal to what the current encoder produces. Regenerate with
//! `TERN_WRITE_FUZZ_SEEDS=1 cargo test --test frames_seeds`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

#[test]
fn fuzz_seeds_are_current_frames() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/frame_decode");
    let frames = tern::net::testgen::sample_frames().unwrap();
    if std::env::var_os("TERN_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, f) in &frames {
            std::fs::write(dir.join(name), f).unwrap();
        }
    }
    for (name, f) in &frames {
        let have = std::fs::read(dir.join(name)).unwrap_or_default();
        assert!(
            &have == f,
            "fuzz/seeds/frame_decode/{name} is missing or stale; run \
             `TERN_WRITE_FUZZ_SEEDS=1 cargo test --test frames_seeds` and commit the seeds"
        );
    }
    // One seed per message type, and no leftovers from removed types.
    let count = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(count, frames.len(), "unexpected files in {}", dir.display());
}
