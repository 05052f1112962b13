//! Listing a TPM's persistent keys (`signer::list`): every handle in the persistent
//! range with its public area; RSA keys that can sign are the ones a `tpm:handle=`
//! reference can use.

use super::context::{connect, open_persistent, tss};
use crate::keyref::{escape, TpmUri};
use crate::signer::list::{Device, ListedKey};
use crate::signer::Error;
use tss_esapi::constants::CapabilityType;
use tss_esapi::handles::TpmHandle;
use tss_esapi::structures::{CapabilityData, Public};

/// The first persistent handle (TPM 2.0 Part 2, 7.1: 0x81xxxxxx).
const PERSISTENT_FIRST: u32 = 0x8100_0000;
/// At most this many handles are read (a TPM holds a handful).
const MAX_HANDLES: u32 = 256;

/// The persistent keys of the TPM `uri` reaches.
pub(crate) fn persistent(uri: &TpmUri) -> Result<Vec<Device>, Error> {
    let mut ctx = connect(&uri.tcti)?;
    let (data, _more) = ctx
        .execute_without_session(|c| {
            c.get_capability(CapabilityType::Handles, PERSISTENT_FIRST, MAX_HANDLES)
        })
        .map_err(|e| tss("listing the persistent handles", e))?;
    let handles: Vec<u32> = match data {
        CapabilityData::Handles(list) => list
            .iter()
            .filter_map(|h| match h {
                TpmHandle::Persistent(p) => Some(u32::from(*p)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let query = if uri.tcti_explicit {
        // ':', '=' and ',' are the TCTI's own syntax and fine in a query value.
        let tcti = escape(&uri.tcti)
            .to_string()
            .replace("%3A", ":")
            .replace("%3D", "=")
            .replace("%2C", ",");
        format!("?tcti={tcti}")
    } else {
        String::new()
    };
    let mut keys = Vec::new();
    for handle in handles {
        let Ok((_, public)) = open_persistent(&mut ctx, handle) else {
            continue;
        };
        let (algorithm, bits, unusable) = match &public {
            Public::Rsa {
                object_attributes,
                parameters,
                ..
            } => {
                let bits = u16::from(parameters.key_bits()) as usize;
                let unusable = (object_attributes.restricted()
                    || !object_attributes.sign_encrypt())
                .then(|| "not a signing key (a storage or restricted key)".to_string());
                ("RSA", Some(bits), unusable)
            }
            Public::Ecc { .. } => (
                "EC",
                None,
                Some("Entra ID accepts RSA keys only".to_string()),
            ),
            _ => ("other", None, Some("not an RSA key".to_string())),
        };
        keys.push(ListedKey {
            reference: format!("tpm:handle={handle:#010x}{query}"),
            label: None,
            algorithm: algorithm.to_string(),
            bits,
            private_key: true,
            certificate: None,
            unusable,
        });
    }
    Ok(vec![Device {
        name: format!("TPM at \"{}\"", uri.tcti),
        keys,
        note: Some(
            "key files (tpm:key=PATH) live outside the TPM and are not listed; the certificate \
             of a TPM key is kept in a file (--cert)"
                .into(),
        ),
    }])
}
