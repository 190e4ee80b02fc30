//! The end-to-end harness: moto's server per test (from the CLI's `local` module, the same
//! code the demo uses), and helpers shared by the end-to-end and CLI tests.

use std::path::PathBuf;

pub mod faults;

pub use cordon::local::{finding_for, EntryView, World, REGION};

/// The repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Real GuardDuty findings shared with the team (`../shared/findings` beside the clone).
pub fn shared_findings_dir() -> PathBuf {
    let dir = std::env::var_os("CORDON_FINDINGS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/findings"));
    assert!(
        dir.is_dir(),
        "{} is missing: the shared findings must sit beside the clone (or set CORDON_FINDINGS_DIR)",
        dir.display()
    );
    dir
}

/// A moto server of this test's own, stopped when dropped.
pub struct Moto(cordon::local::Moto);

impl Moto {
    /// `MOTO_SERVER`, else the repository's `.venv` (tests may run from any directory).
    pub fn start() -> Moto {
        let path = std::env::var_os("MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".venv/bin/moto_server"));
        Moto(cordon::local::Moto::start_at(&path).unwrap_or_else(|e| panic!("{e}")))
    }
}

impl std::ops::Deref for Moto {
    type Target = cordon::local::Moto;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
