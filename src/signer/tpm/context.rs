//! The connection to the TPM: opening an ESYS context on a TCTI, the standard storage
//! primary (the one tpm2-openssl builds), loading a key from a persistent handle or a
//! TSS2 file, and turning TSS response codes into messages a person can act on.
//!
//! Commands that need no authorization run without sessions: with libtss2 3.2.1,
//! `Esys_TR_FromTPMPublic` under a password session crashes.

use super::keyfile::{TssKey, RH_OWNER};
use super::TpmError;
use crate::keyref::{KeyLocation, TpmUri};
use crate::secret::Secret;
use crate::signer::Error;
use std::sync::Once;
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::{CapabilityType, Tss2ResponseCode};
use tss_esapi::handles::{KeyHandle, ObjectHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Auth, CapabilityData, EccPoint, Private, Public, PublicBuilder, PublicEccParametersBuilder,
    PublicKeyRsa, PublicRsaParametersBuilder, RsaExponent, SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::UnMarshall as _;
use tss_esapi::Context;

/// A TSS failure with the raw response code kept.
pub(crate) type TssResult<T> = Result<T, tss_esapi::Error>;

/// Turn libtss2's log output off unless the user asked for it with `TSS2_LOG`.
pub(crate) fn quiet_tss_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TSS2_LOG").is_none() {
            // Read by libtss2 at its first log call, which comes after this.
            std::env::set_var("TSS2_LOG", "all+none");
        }
    });
}

/// The raw `TSS2_RC` of a TSS error, if it is one.
pub(crate) fn raw_rc(e: &tss_esapi::Error) -> Option<u32> {
    match e {
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::FormatZero(rc)) => Some(rc.0),
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::FormatOne(rc)) => Some(rc.0),
        _ => None,
    }
}

const LAYER_TPM: u32 = 0;
const LAYER_ESYS: u32 = 7;
const LAYER_SYS: u32 = 8;
const LAYER_TCTI: u32 = 10;
const LAYER_RESMGR_TPM: u32 = 12;

/// The TPM's own code (format-one codes reduced to their base), for TPM-layer errors.
pub(crate) fn tpm_code(e: &tss_esapi::Error) -> Option<u32> {
    let rc = raw_rc(e)?;
    let layer = rc >> 16;
    if layer != LAYER_TPM && layer != LAYER_RESMGR_TPM {
        return None;
    }
    let rc = rc & 0xffff;
    Some(if rc & 0x80 != 0 {
        0x80 | (rc & 0x3f)
    } else {
        rc
    })
}

/// TPM_RC_HANDLE: the handle does not name a loaded or persistent object.
pub(crate) const RC_HANDLE: u32 = 0x08b;
/// TPM_RC_AUTH_FAIL: the authorization HMAC / password was wrong (counts toward lockout).
pub(crate) const RC_AUTH_FAIL: u32 = 0x08e;
/// TPM_RC_BAD_AUTH: wrong authorization for an object with noDA.
pub(crate) const RC_BAD_AUTH: u32 = 0x0a2;
/// TPM_RC_LOCKOUT: dictionary-attack lockout.
pub(crate) const RC_LOCKOUT: u32 = 0x921;
/// TPM_RC_REFERENCE_H0: the handle references an object that is gone.
pub(crate) const RC_REFERENCE_H0: u32 = 0x910;
/// TPM_RC_INITIALIZE: the TPM has not been started.
pub(crate) const RC_INITIALIZE: u32 = 0x100;

/// Whether the error means the connection to the TPM broke (swtpm restarted, socket
/// closed), so that reconnecting may help.
pub(crate) fn is_connection_error(e: &tss_esapi::Error) -> bool {
    let Some(rc) = raw_rc(e) else { return false };
    let (layer, base) = (rc >> 16, rc & 0xffff);
    match layer {
        LAYER_TCTI => true,
        LAYER_ESYS | LAYER_SYS => matches!(base, 7 | 8 | 9 | 10 | 17 | 19),
        _ => tpm_code(e) == Some(RC_INITIALIZE),
    }
}

/// Whether the error means our loaded key vanished (the TPM restarted behind a resource
/// manager), so that reloading it may help.
pub(crate) fn is_key_gone(e: &tss_esapi::Error) -> bool {
    matches!(tpm_code(e), Some(RC_HANDLE | RC_REFERENCE_H0))
}

/// TPM_RC_OBJECT_MEMORY: no free transient object slot.
pub(crate) const RC_OBJECT_MEMORY: u32 = 0x902;

/// Whether the TPM is out of transient object slots.
pub(crate) fn is_object_memory(e: &tss_esapi::Error) -> bool {
    tpm_code(e) == Some(RC_OBJECT_MEMORY)
}

/// Whether the TPM rejected a password.
pub(crate) fn is_auth_failure(e: &tss_esapi::Error) -> bool {
    matches!(tpm_code(e), Some(RC_AUTH_FAIL | RC_BAD_AUTH))
}

/// A short description of a TSS error with its code in hex, as tpm2-tools prints it.
pub(crate) fn describe(e: &tss_esapi::Error) -> String {
    let Some(rc) = raw_rc(e) else {
        return format!("tss-esapi: {e}");
    };
    let layer = rc >> 16;
    let base = rc & 0xffff;
    let text = match layer {
        LAYER_TPM | LAYER_RESMGR_TPM => match tpm_code(e).unwrap_or(base) {
            RC_HANDLE => "TPM_RC_HANDLE: no object at that handle".into(),
            RC_AUTH_FAIL => "TPM_RC_AUTH_FAIL: authorization failed".into(),
            RC_BAD_AUTH => "TPM_RC_BAD_AUTH: authorization failed".into(),
            RC_LOCKOUT => "TPM_RC_LOCKOUT: the TPM is in dictionary-attack lockout".into(),
            RC_INITIALIZE => "TPM_RC_INITIALIZE: the TPM has not been started".into(),
            RC_REFERENCE_H0 => "TPM_RC_REFERENCE_H0: the object is no longer loaded".into(),
            0x082 => "TPM_RC_ATTRIBUTES: the key's attributes do not allow this".into(),
            0x092 => "TPM_RC_SCHEME: the key does not allow this signature scheme".into(),
            0x084 => "TPM_RC_VALUE: a value is out of range".into(),
            0x085 => "TPM_RC_HIERARCHY: the hierarchy is disabled".into(),
            0x09c => "TPM_RC_KEY: the key is not usable".into(),
            0x09f => "TPM_RC_INTEGRITY: the key blob does not belong to this TPM or parent".into(),
            RC_OBJECT_MEMORY => "TPM_RC_OBJECT_MEMORY: the TPM has no free object slot: other processes may be holding its transient slots (or, on a TPM without a resource manager, a process killed while it held a key left its object loaded); `tpm2_getcap handles-transient` lists them and `tpm2_flushcontext -t` clears them once nothing is using them".into(),
            0x14c => "TPM_RC_NV_DEFINED: the handle is in use".into(),
            0x16b => "TPM_RC_NV_SPACE: no room for another persistent object".into(),
            code => format!("TPM error {:#x} ({e})", code),
        },
        LAYER_TCTI => match base {
            10 => "TCTI I/O error: the connection to the TPM failed or was closed".into(),
            21 | 2 => "TCTI not supported or not installed".into(),
            11 => "bad TCTI configuration".into(),
            _ => "TCTI error".into(),
        },
        LAYER_ESYS => "ESYS error".into(),
        LAYER_SYS => "SYS error".into(),
        _ => "TSS error".into(),
    };
    format!("{text} (rc {rc:#x})")
}

/// A `tss_esapi::Error` as certassert reports it: its `Display` is the TPM response code
/// with its name, as tpm2-tools prints it (`TPM_RC_HANDLE: … (rc 0x18b)`), where
/// tss-esapi's own text would be the specification's long description. It is the source
/// of [`TpmError`]'s TSS variants; [`TssError::tss`] (or [`TpmError::tss`]) gives the
/// original error.
#[derive(Debug)]
pub struct TssError(tss_esapi::Error);

impl TssError {
    /// The original tss-esapi error.
    pub fn tss(&self) -> &tss_esapi::Error {
        &self.0
    }
}

impl std::fmt::Display for TssError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&describe(&self.0))
    }
}

impl std::error::Error for TssError {}

/// `e`, boxed as a [`TpmError`] source.
pub(crate) fn boxed(e: tss_esapi::Error) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(TssError(e))
}

/// A TSS failure while doing `what`.
pub(crate) fn tss(what: impl Into<String>, e: tss_esapi::Error) -> Error {
    tss_advice(what, e, "")
}

/// A TSS failure while doing `what`, with advice (`; …`) after the response code.
pub(crate) fn tss_advice(what: impl Into<String>, e: tss_esapi::Error, advice: &str) -> Error {
    TpmError::Tss {
        what: what.into(),
        source: boxed(e),
        advice: advice.to_string(),
    }
    .into()
}

/// A TPM problem that is not a TSS error.
pub(crate) fn failed(what: impl Into<String>, detail: impl Into<String>) -> Error {
    TpmError::Failed {
        what: what.into(),
        detail: detail.into(),
    }
    .into()
}

/// Open an ESYS context on `tcti`.
///
/// # Errors
/// The TCTI string is not understood, its library is missing, or the TPM cannot be reached.
pub(crate) fn connect(tcti: &str) -> Result<Context, Error> {
    quiet_tss_logs();
    let name_conf: TctiNameConf = tcti.parse().map_err(|_| TpmError::BadTcti {
        tcti: tcti.to_string(),
    })?;
    Context::new(name_conf).map_err(|e| {
        TpmError::Connect {
            tcti: tcti.to_string(),
            source: boxed(e),
        }
        .into()
    })
}

/// Open an ESYS context for `uri`: on the TCTI it names, or — when nothing named one
/// ([`TpmUri::tcti_search`]) — on the first of tpm2-tss's default search
/// ([`DEFAULT_SEARCH`](crate::keyref::tpm::DEFAULT_SEARCH)) that answers, which then
/// becomes `uri.tcti` (so reconnecting, and every later message, use the one chosen).
///
/// # Errors
/// As [`connect`]; when the search finds nothing, [`TpmError::NoTpmFound`] says what was
/// tried and why each was passed over.
pub(crate) fn connect_uri(uri: &mut TpmUri) -> Result<Context, Error> {
    if !uri.tcti_search {
        return connect(&uri.tcti);
    }
    let (ctx, chosen) = search(&crate::keyref::tpm::DEFAULT_SEARCH, |tcti| {
        if let Some(device) = tcti.strip_prefix("device:") {
            if !std::path::Path::new(device).exists() {
                return Err("no such device".to_string());
            }
        }
        connect(tcti).map_err(|e| match e {
            Error::Tpm(TpmError::Connect { source, .. }) => source.to_string(),
            other => other.to_string(),
        })
    })?;
    uri.tcti = chosen;
    uri.tcti_search = false;
    Ok(ctx)
}

/// The first of `candidates` that `connect` reaches, and its name; else
/// [`TpmError::NoTpmFound`] with each candidate and why it failed, in order.
pub(crate) fn search<C>(
    candidates: &[&str],
    mut connect: impl FnMut(&str) -> Result<C, String>,
) -> Result<(C, String), Error> {
    let mut tried = Vec::new();
    for tcti in candidates {
        match connect(tcti) {
            Ok(c) => return Ok((c, (*tcti).to_string())),
            Err(why) => tried.push(((*tcti).to_string(), why)),
        }
    }
    Err(TpmError::NoTpmFound { tried }.into())
}

/// Flush a transient object, ignoring failure (the connection may be gone, and then so is
/// the object on a TPM that was restarted).
pub(crate) fn flush(ctx: &mut Context, handle: impl Into<ObjectHandle>) {
    let handle = handle.into();
    let _ = ctx.execute_without_session(|c| c.flush_context(handle));
}

/// The public template of the standard storage primary, exactly as tpm2-openssl's
/// (`tpm2-provider-pkey.c`): ECC NIST P-256 when the TPM implements ECC, else RSA 2048;
/// restricted decrypt, AES-128-CFB, fixedTPM/fixedParent, sensitiveDataOrigin,
/// userWithAuth, noDA, SHA-256 name, empty unique and empty authPolicy.
fn standard_primary_template(ecc: bool) -> TssResult<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_user_with_auth(true)
        .with_restricted(true)
        .with_decrypt(true)
        .with_no_da(true)
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .build()?;
    let builder = PublicBuilder::new()
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes);
    if ecc {
        builder
            .with_public_algorithm(PublicAlgorithm::Ecc)
            .with_ecc_parameters(
                PublicEccParametersBuilder::new_restricted_decryption_key(
                    SymmetricDefinitionObject::AES_128_CFB,
                    EccCurve::NistP256,
                )
                .build()?,
            )
            .with_ecc_unique_identifier(EccPoint::default())
            .build()
    } else {
        builder
            .with_public_algorithm(PublicAlgorithm::Rsa)
            .with_rsa_parameters(
                PublicRsaParametersBuilder::new_restricted_decryption_key(
                    SymmetricDefinitionObject::AES_128_CFB,
                    RsaKeyBits::Rsa2048,
                    RsaExponent::default(),
                )
                .build()?,
            )
            .with_rsa_unique_identifier(PublicKeyRsa::default())
            .build()
    }
}

/// Whether the TPM implements ECC (tpm2-openssl's choice of primary depends on it).
fn tpm_has_ecc(ctx: &mut Context) -> TssResult<bool> {
    const TPM2_ALG_ECC: u32 = 0x0023;
    let (data, _) = ctx.execute_without_session(|c| {
        c.get_capability(CapabilityType::Algorithms, TPM2_ALG_ECC, 1)
    })?;
    Ok(match data {
        CapabilityData::Algorithms(list) => list
            .iter()
            .any(|a| u16::from(a.algorithm_identifier()) == TPM2_ALG_ECC as u16),
        _ => false,
    })
}

/// Create the standard storage primary under the owner hierarchy (a transient object:
/// the caller flushes it).
///
/// # Errors
/// The owner hierarchy's password is wrong or the TPM is out of object slots.
pub(crate) fn create_standard_primary(
    ctx: &mut Context,
    owner_auth: Option<&Secret>,
) -> Result<KeyHandle, Error> {
    let what = "cannot create the standard storage primary key (owner hierarchy)";
    let ecc = tpm_has_ecc(ctx).map_err(|e| tss(what, e))?;
    let template = standard_primary_template(ecc).map_err(|e| tss(what, e))?;
    if let Some(secret) = owner_auth {
        let auth = Auth::try_from(secret.expose().as_bytes().to_vec())
            .map_err(|_| failed(what, "the owner password is too long"))?;
        ctx.tr_set_auth(ObjectHandle::Owner, auth)
            .map_err(|e| tss(what, e))?;
    }
    ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.create_primary(Hierarchy::Owner, template, None, None, None, None)
    })
    .map(|r| r.key_handle)
    .map_err(|e| {
        let hint = if is_auth_failure(&e) {
            "; the owner hierarchy has a password: pass it with ?parent-auth-source=env:VAR|file:PATH"
        } else {
            ""
        };
        tss_advice(what, e, hint)
    })
}

/// An object handle for a persistent handle, with its public area.
///
/// # Errors
/// Nothing is persisted there (the message says how to list what is), or the TPM failed.
pub(crate) fn open_persistent(
    ctx: &mut Context,
    handle: u32,
) -> Result<(KeyHandle, Public), Error> {
    let what = format!("persistent handle {handle:#010x}");
    let tpm_handle = PersistentTpmHandle::new(handle)
        .map(TpmHandle::Persistent)
        .map_err(|e| tss(&what, e))?;
    // No session: tr_from_tpm_public under a password session crashes libtss2 3.2.1.
    let object = ctx
        .execute_without_session(|c| c.tr_from_tpm_public(tpm_handle))
        .map_err(|e| {
            if tpm_code(&e) == Some(RC_HANDLE) {
                TpmError::NoPersistentKey {
                    handle,
                    source: boxed(e),
                }
                .into()
            } else {
                tss(&what, e)
            }
        })?;
    let key = KeyHandle::from(object);
    let public = ctx
        .execute_without_session(|c| c.read_public(key))
        .map(|(public, _, _)| public)
        .map_err(|e| tss(&what, e))?;
    Ok((key, public))
}

/// Set an object's password for the password sessions that use it.
pub(crate) fn set_auth(ctx: &mut Context, object: KeyHandle, secret: &Secret) -> Result<(), Error> {
    let auth = Auth::try_from(secret.expose().as_bytes().to_vec()).map_err(|_| {
        failed(
            "the TPM key password",
            "is too long (the TPM takes at most 32 bytes for a SHA-256 key)",
        )
    })?;
    ctx.tr_set_auth(object.into(), auth)
        .map_err(|e| tss("setting the TPM key password", e))
}

/// A key that is loaded (or opened) and ready to sign.
#[derive(Debug)]
pub(crate) struct LoadedKey {
    /// Its ESYS handle.
    pub handle: KeyHandle,
    /// Whether it is a transient object we must flush.
    pub transient: bool,
    /// Its public area.
    pub public: Public,
}

/// Load the key `uri` names: open its persistent handle, or load its TSS2 file under
/// its parent (the standard primary, created and flushed again here, or a persistent
/// parent). Nothing is left loaded on failure.
///
/// # Errors
/// The handle is empty, the blob does not belong to this TPM, a password is wrong.
pub(crate) fn load_key(
    ctx: &mut Context,
    uri: &TpmUri,
    file: Option<&TssKey>,
    auth: Option<&Secret>,
    parent_auth: Option<&Secret>,
) -> Result<LoadedKey, Error> {
    let loaded = match (&uri.key, file) {
        (KeyLocation::Handle(handle), _) => {
            let (handle, public) = open_persistent(ctx, *handle)?;
            LoadedKey {
                handle,
                transient: false,
                public,
            }
        }
        (KeyLocation::File(path), Some(tss)) => load_blob(ctx, path, tss, parent_auth)?,
        (KeyLocation::File(path), None) => {
            return Err(failed(
                format!("{}", path.display()),
                "internal: key file not read",
            ))
        }
    };
    if let Some(secret) = auth {
        if let Err(e) = set_auth(ctx, loaded.handle, secret) {
            if loaded.transient {
                flush(ctx, loaded.handle);
            }
            return Err(e);
        }
    }
    Ok(loaded)
}

fn load_blob(
    ctx: &mut Context,
    path: &std::path::Path,
    tss: &TssKey,
    parent_auth: Option<&Secret>,
) -> Result<LoadedKey, Error> {
    let what = format!("cannot load the TSS2 key {}", path.display());
    let public = Public::unmarshall(tss.public_area())
        .map_err(|e| tss_advice(&what, e, "; its public part is malformed"))?;
    let private = Private::try_from(tss.private_area().to_vec())
        .map_err(|_| failed(&what, "its private part is too large"))?;
    let (parent, parent_transient) = if tss.parent == RH_OWNER {
        (create_standard_primary(ctx, parent_auth)?, true)
    } else if tss.parent >> 24 == 0x81 {
        let (parent, _) = open_persistent(ctx, tss.parent)?;
        if let Some(secret) = parent_auth {
            set_auth(ctx, parent, secret)?;
        }
        (parent, false)
    } else {
        return Err(failed(
            &what,
            format!(
                "its parent {:#010x} is neither the owner hierarchy (0x40000001) nor a persistent key",
                tss.parent
            ),
        ));
    };
    let result = ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.load(parent, private, public.clone())
    });
    if parent_transient {
        flush(ctx, parent);
    } else {
        let mut object = ObjectHandle::from(parent);
        let _ = ctx.tr_close(&mut object);
    }
    let handle = result.map_err(|e| {
        let hint = match tpm_code(&e) {
            Some(0x09f | 0x09c) => {
                "; the key was made on another TPM or under another parent"
            }
            _ if is_auth_failure(&e) => {
                "; the parent key has a password: pass it with ?parent-auth-source=env:VAR|file:PATH"
            }
            _ => "",
        };
        tss_advice(&what, e, hint)
    })?;
    Ok(LoadedKey {
        handle,
        transient: true,
        public,
    })
}

#[cfg(test)]
mod search_tests {
    use super::*;

    #[test]
    fn the_first_that_answers_is_chosen_in_tpm2_tss_order() {
        let mut asked = Vec::new();
        let (got, chosen) = search(&crate::keyref::tpm::DEFAULT_SEARCH, |t| {
            asked.push(t.to_string());
            if t == "device:/dev/tpmrm0" {
                Ok(7)
            } else {
                Err("not here".to_string())
            }
        })
        .unwrap();
        assert_eq!((got, chosen.as_str()), (7, "device:/dev/tpmrm0"));
        assert_eq!(
            asked,
            ["tabrmd", "device:/dev/tpmrm0"],
            "stops at the first"
        );
    }

    #[test]
    fn when_none_answers_the_error_lists_each_and_why() {
        let e = search::<()>(&crate::keyref::tpm::DEFAULT_SEARCH, |t| {
            Err(format!("{} is away", t.len()))
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("tabrmd (6 is away), device:/dev/tpmrm0 (18 is away), device:/dev/tpm0 (16 is away)"),
            "{e}"
        );
        assert!(
            e.contains("TPM2TOOLS_TCTI") && e.contains("TPM2OPENSSL_TCTI"),
            "{e}"
        );
    }
}
