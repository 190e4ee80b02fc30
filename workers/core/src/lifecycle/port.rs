//! The ledger port: Cordon's releases, one per finding, in a DynamoDB table of its own
//! account. One method per call.

use std::future::Future;

use super::Release;
use crate::Result;

pub trait Ledger: Sync {
    /// The last release recorded for the finding (`GetItem`, strongly consistent).
    fn release_of(&self, finding_id: &str) -> impl Future<Output = Result<Option<Release>>> + Send;
    /// Records a release (`PutItem`): the latest of a finding replaces the one before.
    fn record_release(&self, release: &Release) -> impl Future<Output = Result<()>> + Send;
    /// Notes that Cordon archived the finding on the release `execution` made (`UpdateItem`,
    /// on the condition that this execution's release is still the finding's). False when
    /// it is not (no release, or a later one).
    fn mark_archived(
        &self,
        finding_id: &str,
        execution: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// The port's fake: releases in memory, every call logged by its IAM name.
#[cfg(test)]
pub mod fake {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    #[derive(Debug, Default)]
    pub struct State {
        pub releases: BTreeMap<String, Release>,
        pub calls: Vec<String>,
    }

    #[derive(Debug, Clone, Default)]
    pub struct FakeLedger(pub Arc<Mutex<State>>);

    impl FakeLedger {
        pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
            f(&mut self.0.lock().unwrap())
        }
    }

    impl Ledger for FakeLedger {
        async fn release_of(&self, finding_id: &str) -> Result<Option<Release>> {
            self.with(|s| {
                s.calls.push("dynamodb:GetItem".into());
                Ok(s.releases.get(finding_id).cloned())
            })
        }

        async fn record_release(&self, release: &Release) -> Result<()> {
            self.with(|s| {
                s.calls.push("dynamodb:PutItem".into());
                s.releases
                    .insert(release.finding_id.clone(), release.clone());
                Ok(())
            })
        }

        async fn mark_archived(&self, finding_id: &str, execution: &str) -> Result<bool> {
            self.with(|s| {
                s.calls.push("dynamodb:UpdateItem".into());
                Ok(match s.releases.get_mut(finding_id) {
                    Some(release) if release.execution == execution => {
                        release.archived_by_cordon = true;
                        true
                    }
                    _ => false,
                })
            })
        }
    }
}
