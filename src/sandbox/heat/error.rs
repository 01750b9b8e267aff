//! `HeatError`: every failure the engine reports, worded as Heat words it.
//!
//! Clients (the `openstack` CLI, the factory's own publish step, operators reading a screen) compare
//! these texts with what a real cloud says, so `Display` is Heat's message, byte for byte where the
//! Heat source was available (heat/common/exception.py, heat/engine/*). `error_type` gives Heat's
//! exception class for the `error.type` field of the API's fault body.

/// Heat's `HeatExceptionWithPath` rendering: `<error>: <path>: <message>`, parts omitted when empty;
/// path items that are digits become `[n]`, the others are joined with dots.
pub fn with_path(error: &str, path: &[String], message: &str) -> String {
    let mut joined = String::new();
    for item in path {
        if !item.is_empty() && item.chars().all(|c| c.is_ascii_digit()) {
            joined.push_str(&format!("[{item}]"));
        } else if joined.is_empty() {
            joined.push_str(item);
        } else {
            joined.push('.');
            joined.push_str(item);
        }
    }
    let mut out = String::new();
    if !error.is_empty() {
        out.push_str(error);
        out.push_str(": ");
    }
    if !joined.is_empty() {
        out.push_str(&joined);
        out.push_str(": ");
    }
    out.push_str(message);
    out
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum HeatError {
    /// The text is neither YAML nor JSON.
    #[error("Error parsing template [root stack] {0}")]
    Parse(String),
    #[error("Template format version not found.")]
    VersionNotFound,
    #[error("The template is not a JSON object or YAML mapping.")]
    NotAMapping,
    #[error("The template version is invalid: {0}")]
    InvalidTemplateVersion(String),
    #[error("The template section is invalid: {0}")]
    InvalidTemplateSection(String),
    #[error("The Parameter ({0}) was not provided.")]
    UserParameterMissing(String),
    #[error("The Parameter ({0}) was not defined in template.")]
    UnknownUserParameter(String),
    #[error("The Resource Type ({0}) could not be found.")]
    ResourceTypeNotFound(String),
    #[error("The specified reference \"{resource}\" (in {key}) is incorrect.")]
    InvalidTemplateReference { resource: String, key: String },
    #[error("The Referenced Attribute ({resource} {key}) is incorrect.")]
    InvalidTemplateAttribute { resource: String, key: String },
    #[error("Circular Dependency Found: {0}")]
    CircularDependency(String),
    /// Heat's `StackValidationFailed`.
    #[error("{}", with_path(.error, .path, .message))]
    StackValidationFailed {
        error: String,
        path: Vec<String>,
        message: String,
    },
    /// Heat's `InvalidSchemaError` (a parameter declaration that cannot be understood).
    #[error("{0}")]
    InvalidSchema(String),
    /// A Python `TypeError`/`ValueError`/`KeyError` raised by an intrinsic function, with its text.
    #[error("{message}")]
    Function { kind: &'static str, message: String },
    /// Something Heat accepts but this engine does not implement (conditions, some functions).
    #[error("{0}")]
    Unsupported(String),
}

impl HeatError {
    /// A `StackValidationFailed` without error label.
    pub fn validation(path: Vec<String>, message: impl Into<String>) -> Self {
        HeatError::StackValidationFailed {
            error: String::new(),
            path,
            message: message.into(),
        }
    }

    /// A `StackValidationFailed` carrying only a message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::validation(Vec::new(), message)
    }

    pub(crate) fn type_error(message: impl Into<String>) -> Self {
        HeatError::Function {
            kind: "TypeError",
            message: message.into(),
        }
    }

    pub(crate) fn value_error(message: impl Into<String>) -> Self {
        HeatError::Function {
            kind: "ValueError",
            message: message.into(),
        }
    }

    /// Heat's exception class name, as the API reports it in `error.type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            HeatError::Parse(_) | HeatError::VersionNotFound | HeatError::NotAMapping => {
                "ValueError"
            }
            HeatError::InvalidTemplateVersion(_) => "InvalidTemplateVersion",
            HeatError::InvalidTemplateSection(_) => "InvalidTemplateSection",
            HeatError::UserParameterMissing(_) => "UserParameterMissing",
            HeatError::UnknownUserParameter(_) => "UnknownUserParameter",
            HeatError::ResourceTypeNotFound(_) => "StackValidationFailed",
            HeatError::InvalidTemplateReference { .. } => "InvalidTemplateReference",
            HeatError::InvalidTemplateAttribute { .. } => "InvalidTemplateAttribute",
            HeatError::CircularDependency(_) => "CircularDependencyException",
            HeatError::StackValidationFailed { .. } => "StackValidationFailed",
            HeatError::InvalidSchema(_) => "InvalidSchemaError",
            HeatError::Function { kind, .. } => kind,
            HeatError::Unsupported(_) => "NotSupported",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_heat() {
        let path = ["resources", "server", "properties", "networks", "0"].map(String::from);
        assert_eq!(
            with_path("Property error", &path, "Unknown Property foo"),
            "Property error: resources.server.properties.networks[0]: Unknown Property foo"
        );
        assert_eq!(with_path("", &[], "plain"), "plain");
        let err = HeatError::InvalidTemplateReference {
            resource: "net".into(),
            key: "server.Properties".into(),
        };
        assert_eq!(
            err.to_string(),
            "The specified reference \"net\" (in server.Properties) is incorrect."
        );
    }
}
