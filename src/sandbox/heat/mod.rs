//! The sandbox cloud's Heat: HOT templates parsed, validated, previewed, created and deleted the
//! way OpenStack Heat does it, with Heat's own error messages.
//!
//! This is a library without HTTP: the sandbox's orchestration API parses request bodies, calls
//! these functions and serialises what they return. Physical resources are made by a `Backend`
//! (the sandbox's compute, network, volume and object services); OS::Heat::* resources are
//! computed here. It must not reach the screen, the engine or the network itself.
//!
//! ```text
//! Template::parse(text)                      -> Template            (400 on Err)
//! validate(&t, &params)                      -> POST /validate body (lenient, as Heat)
//! validate_strict(&t, &params)               -> same body, with everything create checks
//! preview(&t, &params, name)                 -> POST /stacks/preview body
//! create_stack(&id, &t, &params, &backend, on_event).await -> StackRecord (Err: nothing created)
//! delete_stack(&mut record, &backend, on_event).await      -> record updated, idempotent
//! ```

mod builtins;
mod computed;
mod error;
mod functions;
mod graph;
mod load;
mod params;
mod properties;
mod py;
mod stack;
mod template;
mod types;
mod validate;

#[cfg(test)]
mod tests;

pub use error::HeatError;
pub use stack::{
    Backend, BackendError, CreateRequest, Created, Event, OutputValue, ResourceRecord,
    StackIdentity, StackRecord, check_supported, create_stack, delete_stack,
};
pub use template::{DeletionPolicy, Template};
pub use validate::{preview, validate, validate_strict};

/// The resource types the engine knows (for `GET /resource_types`), computed ones included.
pub fn resource_types() -> Vec<&'static str> {
    types::TYPES.iter().map(|t| t.name).collect()
}

/// The resource types the engine computes itself; the others are the backend's.
pub fn computed_types() -> Vec<&'static str> {
    types::TYPES
        .iter()
        .filter(|t| t.computed)
        .map(|t| t.name)
        .collect()
}

/// `GET /template_versions`: every HOT version with its release-name alias.
pub fn template_versions() -> serde_json::Value {
    template::versions()
}
