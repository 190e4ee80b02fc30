//! Containment measures: each one thing Cordon does to an instance, of one shape. A measure
//! records the original state it will change (before changing it), applies its change,
//! reports what is true afterwards, and restores exactly what it recorded, leaving alone (and
//! reporting) what someone else changed meanwhile. Each declares the IAM actions it needs per
//! phase, so that a test can check the template's roles against the code.
//!
//! The network measures (security groups, network ACLs) live in `isolate`, `nacl`, `capture`
//! and `restore`, from before this shape; the registry below names them too, so the state
//! machine, the template and the tests see every measure the same way.

pub mod auto_scaling;
pub mod credentials;
pub mod evidence;
pub mod load_balancers;

use serde::{Deserialize, Serialize};

/// How a measure's branch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureStatus {
    /// Everything it set out to do is done.
    Done,
    /// Some of it; `errors` says what not.
    Partial,
    /// Nothing to do for this instance (not in an Auto Scaling group, ...).
    NotApplicable,
    /// Report-only mode: nothing was done; `notes` say what would have been.
    ReportOnly,
}

/// The phases a measure acts in, each by its own function and role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Records the original state (capture-state, or the measure's own step before it changes
    /// anything).
    Capture,
    /// Contains (the measure's branch of the Contain state).
    Apply,
    /// Gives back what was recorded (the restore function).
    Restore,
}

/// What the workflow, the template and the tests know of one measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    /// The key of its report in the containment (`$.containment.<id>`) and of its record.
    pub id: &'static str,
    /// Its branch's task state in `statemachine/quarantine.asl.json`.
    pub state: &'static str,
    /// What the emails and the page call it.
    pub title: &'static str,
    /// The IAM actions it calls, per phase (exact names, as the fakes log them).
    pub actions: &'static [(Phase, &'static str)],
}

/// Every measure, in the order the Contain state's branches run them.
pub const MEASURES: [Measure; 6] = [
    Measure {
        id: "isolation",
        state: "IsolateSecurityGroups",
        title: "security groups",
        actions: &[
            (Phase::Capture, "ec2:DescribeInstances"),
            (Phase::Capture, "ec2:DescribeSecurityGroups"),
            (Phase::Capture, "ec2:DescribeInstanceAttribute"),
            (Phase::Capture, "ec2:CreateTags"),
            (Phase::Apply, "ec2:DescribeInstances"),
            (Phase::Apply, "ec2:DescribeSecurityGroups"),
            (Phase::Apply, "ec2:CreateSecurityGroup"),
            (Phase::Apply, "ec2:AuthorizeSecurityGroupIngress"),
            (Phase::Apply, "ec2:AuthorizeSecurityGroupEgress"),
            (Phase::Apply, "ec2:RevokeSecurityGroupIngress"),
            (Phase::Apply, "ec2:RevokeSecurityGroupEgress"),
            (Phase::Apply, "ec2:ModifyNetworkInterfaceAttribute"),
            (Phase::Apply, "ec2:ModifyInstanceAttribute"),
            (Phase::Restore, "ec2:ModifyNetworkInterfaceAttribute"),
            (Phase::Restore, "ec2:ModifyInstanceAttribute"),
            (Phase::Restore, "ec2:DeleteTags"),
        ],
    },
    Measure {
        id: "nacl",
        state: "BlockNetworkAcl",
        title: "network ACLs",
        actions: &[
            (Phase::Apply, "ec2:DescribeNetworkAcls"),
            (Phase::Apply, "ec2:DescribeVpcs"),
            (Phase::Apply, "ec2:DescribeSubnets"),
            (Phase::Apply, "ec2:CreateNetworkAclEntry"),
            (Phase::Apply, "ec2:CreateTags"),
            (Phase::Restore, "ec2:DescribeNetworkAcls"),
            (Phase::Restore, "ec2:DeleteNetworkAclEntry"),
            (Phase::Restore, "ec2:DeleteTags"),
        ],
    },
    auto_scaling::MEASURE,
    credentials::MEASURE,
    evidence::MEASURE,
    load_balancers::MEASURE,
];
