//! Key references and secret sources: every parser a `--key` value or a `…-source=`
//! attribute goes through, then everything printed about the result (`Display`, the
//! warnings, the error chain).
#![no_main]

use certassert::keyref::pkcs11::Pkcs11Uri;
use certassert::keyref::tpm::TpmUri;
use certassert::keyref::KeyRef;
use certassert::secret::SecretSource;
use libfuzzer_sys::fuzz_target;
use std::fmt::Write as _;

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let _ = write!(text, ": {cause}");
        next = cause.source();
    }
    text
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<KeyRef>() {
        Ok(key) => {
            let _ = (
                key.to_string(),
                format!("{key:?}"),
                key.warnings(),
                key.backend(),
            );
        }
        Err(e) => {
            let _ = chain(&e);
        }
    }
    match Pkcs11Uri::parse(text) {
        Ok(uri) => {
            let _ = (uri.to_string(), uri.selects_token(), uri.hex_id_hint());
        }
        Err(e) => {
            let _ = chain(&e);
        }
    }
    if let Err(e) = Pkcs11Uri::parse_piv(text) {
        let _ = chain(&e);
    }
    match TpmUri::parse(text) {
        Ok(uri) => {
            let _ = (uri.to_string(), uri.describe_key());
        }
        Err(e) => {
            let _ = chain(&e);
        }
    }
    match text.parse::<SecretSource>() {
        Ok(source) => {
            let _ = (format!("{source:?}"), source.is_literal());
        }
        Err(e) => {
            let _ = chain(&e);
        }
    }
});
