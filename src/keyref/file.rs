//! The `file:` form: `file:PATH`, `file:///abs/path`, `file://localhost/abs/path`, with an
//! optional `?password-source=…` (or the discouraged `password-value=`) for encrypted
//! PKCS#8 and PKCS#12 files. A plain path without `file:` is taken literally elsewhere.

use super::{
    decode_text, parse_source, query_pairs, set_once, shown_name, split_query, KeyRef, KeyRefError,
};
use crate::secret::SecretSource;
use std::path::PathBuf;

/// Parse what follows `file:`.
pub(super) fn parse(rest: &str) -> Result<KeyRef, KeyRefError> {
    let (path, query) = split_query(rest);
    let path = path
        .strip_prefix("//localhost")
        .or_else(|| path.strip_prefix("//"))
        .unwrap_or(path);
    let reference = format!("file:{path}");
    let path_text = decode_text(&reference, "the path", path)?;
    let reference = format!("file:{path_text}");
    let mut password = None;
    for (attr, raw) in query_pairs(query) {
        let value = decode_text(&reference, attr, raw)?;
        let source = match attr {
            "password-source" => parse_source(&reference, "password-source", &value)?,
            "password-value" => SecretSource::Value(value),
            other => {
                return Err(KeyRefError::UnknownAttribute {
                    reference,
                    part: "query",
                    attr: shown_name(other),
                    known: "file: keys take password-source= or password-value=",
                })
            }
        };
        set_once(&reference, "the password", &mut password, source)?;
    }
    Ok(KeyRef::File {
        path: PathBuf::from(path_text),
        password,
    })
}
