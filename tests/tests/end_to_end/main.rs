//! Every end-to-end test of Cordon on moto, in one test binary.
//!
//! One binary instead of one per file: each test binary links the whole AWS SDK, so fifteen
//! of them cost gigabytes of disk and minutes of linking on a two-core CI machine. Each module
//! is one subject; nextest still runs every test in a process of its own.

mod all_measures;
mod approval_security;
mod auto_scaling;
mod browser;
mod containment;
mod credentials;
mod cross_account;
mod custom_action;
mod definition;
mod emulator;
mod event_pattern;
mod evidence;
mod iam;
mod iam_calls;
mod lifecycle;
mod load_balancers;
mod metrics;
mod operations;
mod parameters;
mod sign_in;
mod workflow;
