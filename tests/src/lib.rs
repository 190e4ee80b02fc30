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
    /// The emulator of the repository's `.venv` (tests may run from any directory), or
    /// `MOTO_SERVER`.
    pub fn start() -> Moto {
        let path = cordon::local::moto_server_path(&repo_root());
        Moto(cordon::local::Moto::start_at(&path).unwrap_or_else(|e| panic!("{e}")))
    }
}

impl std::ops::Deref for Moto {
    type Target = cordon::local::Moto;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// An instance and what restore must give back to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub instance: String,
    pub vpc: String,
    pub eni: String,
    pub groups: Vec<String>,
    pub acl: String,
}

/// `count` instances, ten to a VPC (VPC octets from `first_vpc`), each alone in its subnet
/// with its own ACL (so that ACL quotas do not make containment partial), each on two groups.
pub async fn fleet(world: &World, count: usize, first_vpc: usize) -> Vec<Member> {
    let mut members = Vec::new();
    for vpc_index in 0..count.div_ceil(10) {
        let octet = first_vpc + vpc_index;
        let vpc = world.vpc(&format!("10.{octet}.0.0/16"), false).await;
        let web = world.security_group(&vpc, "web", 443).await;
        let ssh = world.security_group(&vpc, "ssh", 22).await;
        for slot in 0..(count - vpc_index * 10).min(10) {
            let subnet = world
                .subnet(&vpc, &format!("10.{octet}.{slot}.0/24"), None)
                .await;
            let acl = world
                .custom_acl(
                    &vpc,
                    &[&subnet],
                    &[(100, false, "0.0.0.0/0"), (100, true, "0.0.0.0/0")],
                )
                .await;
            let (instance, enis) = world
                .instance(&[(&subnet, &[web.as_str(), ssh.as_str()])], false)
                .await;
            members.push(Member {
                instance,
                vpc: vpc.clone(),
                eni: enis[0].clone(),
                groups: vec![web.clone(), ssh.clone()],
                acl,
            });
        }
    }
    members
}
