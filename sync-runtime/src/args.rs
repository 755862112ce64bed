//! Decoding a mutation's arguments into a typed struct, with errors that name the field.

use serde::de::DeserializeOwned;

use crate::error::MutationError;
use crate::mutation::Mutation;

/// Decodes `mutation.args` into `T`; a mismatch is an `invalid_args` failure naming the mutation
/// and the field.
///
/// ```
/// use serde::Deserialize;
/// use sync_runtime::{Mutation, decode_args};
///
/// #[derive(Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Rename { id: String, title: String }
///
/// let m = Mutation::new("todo/rename", serde_json::json!({"id": "a", "title": 5}));
/// let error = decode_args::<Rename>(&m).err().unwrap();
/// assert_eq!(error.code(), Some("invalid_args"));
/// assert!(error.to_string().contains("`title`"), "{error}");
/// ```
pub fn decode_args<T: DeserializeOwned>(mutation: &Mutation) -> Result<T, MutationError> {
    // Decoding again with the path tracked is only worth it for arguments that do not fit.
    if let Ok(args) = T::deserialize(&mutation.args) {
        return Ok(args);
    }
    serde_path_to_error::deserialize(&mutation.args).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." {
            MutationError::invalid_args(format!("`{}`: {inner}", mutation.name))
        } else {
            MutationError::invalid_args(format!(
                "`{}`: invalid argument `{path}`: {inner}",
                mutation.name
            ))
        }
    })
}
