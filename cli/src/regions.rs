//! `cordon regions`: for each region of the account, whether GuardDuty runs there and whether
//! Cordon's stack does. GuardDuty findings are regional and each region's stack contains its
//! own region's findings, so a region with a detector and no stack is a region where
//! compromised instances are reported and nothing contains them.

use aws_config::SdkConfig;
use aws_sdk_ec2::config::Region;
use serde::Serialize;

/// What GuardDuty is in one region, for this account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardDutyThere {
    Enabled,
    /// A detector that does not monitor (suspended).
    Suspended,
    /// No detector.
    Off,
    /// Could not be read: the error.
    Unreadable(String),
}

/// What Cordon's stack is in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CordonThere {
    /// The stack, with its CloudFormation status.
    Deployed(String),
    Missing,
    Unreadable(String),
}

/// What a region's two answers mean for the rollout.
pub fn verdict(guard_duty: &GuardDutyThere, cordon: &CordonThere) -> &'static str {
    use CordonThere as C;
    use GuardDutyThere as G;
    match (guard_duty, cordon) {
        (G::Unreadable(_), _) | (_, C::Unreadable(_)) => "unknown",
        // A stack being deleted, or whose creation failed, contains nothing.
        (G::Enabled, C::Deployed(status)) if !usable(status) => "missing",
        (G::Enabled, C::Deployed(_)) => "covered",
        (G::Enabled, C::Missing) => "missing",
        (G::Suspended | G::Off, C::Deployed(_)) => "idle",
        (G::Suspended | G::Off, C::Missing) => "none",
    }
}

/// Whether a stack in this CloudFormation status has Cordon's resources in place: created,
/// or updated (or being updated) after that, whether the update held or rolled back.
fn usable(status: &str) -> bool {
    matches!(
        status,
        "CREATE_COMPLETE"
            | "UPDATE_COMPLETE"
            | "UPDATE_IN_PROGRESS"
            | "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"
            | "UPDATE_ROLLBACK_COMPLETE"
            | "UPDATE_ROLLBACK_IN_PROGRESS"
            | "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"
            | "UPDATE_ROLLBACK_FAILED"
            | "IMPORT_COMPLETE"
            | "IMPORT_ROLLBACK_COMPLETE"
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionStanding {
    pub region: String,
    pub guard_duty: GuardDutyThere,
    pub cordon: CordonThere,
    /// `covered`, `missing` (GuardDuty on, no working stack), `idle` (a stack, GuardDuty
    /// off), `none`, or `unknown`.
    pub verdict: &'static str,
}

fn shown(error: impl std::fmt::Display) -> String {
    error.to_string().chars().take(300).collect()
}

async fn guard_duty_in(sdk: &SdkConfig) -> GuardDutyThere {
    let client = aws_sdk_guardduty::Client::new(sdk);
    let detectors = match client.list_detectors().send().await {
        Ok(listed) => listed.detector_ids().to_vec(),
        Err(e) => {
            return GuardDutyThere::Unreadable(shown(
                aws_sdk_guardduty::error::DisplayErrorContext(&e),
            ))
        }
    };
    let Some(detector) = detectors.first() else {
        return GuardDutyThere::Off;
    };
    match client.get_detector().detector_id(detector).send().await {
        Ok(got) if got.status().map(|s| s.as_str()) == Some("ENABLED") => GuardDutyThere::Enabled,
        Ok(_) => GuardDutyThere::Suspended,
        Err(e) => {
            GuardDutyThere::Unreadable(shown(aws_sdk_guardduty::error::DisplayErrorContext(&e)))
        }
    }
}

async fn cordon_in(sdk: &SdkConfig, stack_name: &str) -> CordonThere {
    let client = aws_sdk_cloudformation::Client::new(sdk);
    match client.describe_stacks().stack_name(stack_name).send().await {
        Ok(described) => match described.stacks().first() {
            Some(stack) => CordonThere::Deployed(
                stack
                    .stack_status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            ),
            None => CordonThere::Missing,
        },
        // CloudFormation answers a stack it does not have with a ValidationError.
        Err(e)
            if e.as_service_error()
                .and_then(aws_sdk_cloudformation::error::ProvideErrorMetadata::message)
                .is_some_and(|m| m.contains("does not exist")) =>
        {
            CordonThere::Missing
        }
        Err(e) => CordonThere::Unreadable(shown(
            aws_sdk_cloudformation::error::DisplayErrorContext(&e),
        )),
    }
}

/// Every region enabled for the account (EC2's `DescribeRegions`), each with GuardDuty's and
/// Cordon's standing there, in region order.
pub async fn standings(sdk: &SdkConfig, stack_name: &str) -> Result<Vec<RegionStanding>, String> {
    let regions = aws_sdk_ec2::Client::new(sdk)
        .describe_regions()
        .send()
        .await
        .map_err(|e| shown(aws_sdk_ec2::error::DisplayErrorContext(&e)))?;
    let mut names: Vec<String> = regions
        .regions()
        .iter()
        .filter_map(|r| r.region_name().map(String::from))
        .collect();
    names.sort();
    let mut standings = Vec::new();
    for region in names {
        let there = sdk.to_builder().region(Region::new(region.clone())).build();
        let (guard_duty, cordon) =
            tokio::join!(guard_duty_in(&there), cordon_in(&there, stack_name));
        standings.push(RegionStanding {
            verdict: verdict(&guard_duty, &cordon),
            region,
            guard_duty,
            cordon,
        });
    }
    Ok(standings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_where_guardduty_runs_needs_a_working_stack() {
        use CordonThere as C;
        use GuardDutyThere as G;
        let deployed = |s: &str| C::Deployed(s.into());
        let cases = [
            (G::Enabled, deployed("CREATE_COMPLETE"), "covered"),
            (G::Enabled, deployed("UPDATE_ROLLBACK_COMPLETE"), "covered"),
            (G::Enabled, deployed("ROLLBACK_COMPLETE"), "missing"),
            (G::Enabled, deployed("DELETE_IN_PROGRESS"), "missing"),
            (G::Enabled, deployed("REVIEW_IN_PROGRESS"), "missing"),
            (G::Enabled, deployed("CREATE_IN_PROGRESS"), "missing"),
            (G::Enabled, C::Missing, "missing"),
            (G::Suspended, deployed("CREATE_COMPLETE"), "idle"),
            (G::Off, C::Missing, "none"),
            (G::Unreadable("x".into()), C::Missing, "unknown"),
            (G::Enabled, C::Unreadable("x".into()), "unknown"),
        ];
        for (guard_duty, cordon, expected) in cases {
            assert_eq!(
                verdict(&guard_duty, &cordon),
                expected,
                "{guard_duty:?} {cordon:?}"
            );
        }
    }
}
