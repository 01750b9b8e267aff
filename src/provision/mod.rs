//! Provisioning builder servers: SSH readiness and `ansible-playbook` runs with streamed output.
//!
//! Knows nothing of clouds or screens: it gets an address, a key and a playbook, and reports what
//! happens as `ProvisionEvent`s while it happens.

pub mod ansible;
pub mod hygiene;
pub mod ssh;

pub use ansible::{PlaybookRun, ProvisionError, ProvisionEvent, run_playbook};
