//! The one error of the pure core: an input that breaks a rule, naming the field.

/// An input rejected by validation. `field` is the request field's name (for
/// `google.rpc.BadRequest`); `reason` never contains the rejected value, since that value may
/// be a coordinate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ValidationError {
    /// The request field, as written in the proto (for example `location.latitude`).
    pub field: String,
    /// Why it was rejected, without the value itself.
    pub reason: String,
}

impl ValidationError {
    /// A rejection of `field` for `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same rejection with the field name prefixed (`location` + `latitude`).
    pub fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}
