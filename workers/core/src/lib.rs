//! Cordon's domain: everything that decides how a compromised EC2 instance is contained and
//! given back. Decisions are pure functions; effects go through the ports: [`ec2::Ec2`] and
//! [`kms::Kms`].

pub mod approval;
pub mod aws;
pub mod claim;
pub mod cleanup;
pub mod config;
pub mod custom_action;
pub mod decision;
pub mod ec2;
pub mod error;
pub mod finding;
pub mod kms;
pub mod lifecycle;
pub mod logging;
pub mod measures;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod partition;
pub mod policy;
pub mod record;
pub mod report_only;
pub mod restore;
pub mod seal;
pub mod session;
pub mod steps;
pub mod subscription;
pub mod workflow;

pub use error::{CordonError, Result, StepError};
pub mod capture;
pub mod isolate;
pub mod nacl;

#[cfg(test)]
mod critical_path;
#[cfg(test)]
mod fake;
#[cfg(test)]
mod hostile;
