//! Making keys in the TPM: RSA under the standard storage primary, written as a TSS2 key
//! file (`tpm:key=PATH`) or made persistent with TPM2_EvictControl (`tpm:handle=0x81…`).
//! The attributes are tpm2-openssl's for `openssl genpkey -provider tpm2 -algorithm RSA`
//! (sign and decrypt, null scheme), so RS256, PS256 and the PS256 fallback all work.

use super::context::{boxed, create_standard_primary, failed, flush, tpm_code, tss, RC_HANDLE};
use super::keyfile::{TssKey, RH_OWNER};
use super::TpmError;
use crate::keyref::{KeyLocation, TpmUri};
use crate::secret::Secret;
use crate::signer::Error;
use std::path::Path;
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::handles::{ObjectHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Provision;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Auth, Public, PublicBuilder, PublicKeyRsa, PublicRsaParametersBuilder, RsaExponent, RsaScheme,
    SymmetricDefinitionObject,
};
use tss_esapi::traits::Marshall as _;
use tss_esapi::Context;

/// Refuse a key file path that exists (keys are never overwritten) or whose directory
/// does not, before any TPM work is done.
///
/// # Errors
/// The path exists or its directory is missing.
pub(crate) fn check_new_file(path: &Path) -> Result<(), Error> {
    if path.exists() {
        return Err(TpmError::FileExists {
            path: path.to_path_buf(),
        }
        .into());
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        if !dir.is_dir() {
            return Err(TpmError::NoDirectory {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
            }
            .into());
        }
    }
    Ok(())
}

fn key_template(bits: usize) -> Result<Public, Error> {
    let key_bits = match bits {
        2048 => RsaKeyBits::Rsa2048,
        3072 => RsaKeyBits::Rsa3072,
        4096 => RsaKeyBits::Rsa4096,
        _ => return Err(Error::UnsupportedKeySize { bits }),
    };
    let fail = |e: tss_esapi::Error| tss("TPM key template", e);
    let attributes = ObjectAttributesBuilder::new()
        .with_user_with_auth(true)
        .with_sign_encrypt(true)
        .with_decrypt(true)
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .build()
        .map_err(fail)?;
    let parameters = PublicRsaParametersBuilder::new()
        .with_symmetric(SymmetricDefinitionObject::Null)
        .with_scheme(RsaScheme::Null)
        .with_key_bits(key_bits)
        .with_exponent(RsaExponent::default())
        .with_is_signing_key(true)
        .with_is_decryption_key(true)
        .with_restricted(false)
        .build()
        .map_err(fail)?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Rsa)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_rsa_parameters(parameters)
        .with_rsa_unique_identifier(PublicKeyRsa::default())
        .build()
        .map_err(fail)
}

/// Make the key `uri` names. For a key file, returns its contents (already written);
/// for a handle, `None` (the key is persisted there).
///
/// # Errors
/// The handle is taken, the file exists, the TPM refuses the key size, or a password is wrong.
pub(crate) fn generate(
    ctx: &mut Context,
    uri: &TpmUri,
    bits: usize,
    auth: Option<&Secret>,
    owner_auth: Option<&Secret>,
) -> Result<Option<TssKey>, Error> {
    let template = key_template(bits)?;
    if let KeyLocation::Handle(handle) = uri.key {
        ensure_free(ctx, handle)?;
    }
    let user_auth = auth
        .map(|s| Auth::try_from(s.expose().as_bytes().to_vec()))
        .transpose()
        .map_err(|_| failed("the key password", "is longer than 32 bytes"))?;
    let primary = create_standard_primary(ctx, owner_auth)?;
    let created = ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.create(primary, template, user_auth, None, None, None)
    });
    let created = match created {
        Ok(c) => c,
        Err(e) => {
            flush(ctx, primary);
            return Err(match tpm_code(&e) {
                Some(0x084 | 0x0c4 | 0x2c4 | 0x087 | 0x0c7) => TpmError::KeySizeRefused {
                    bits,
                    source: boxed(e),
                }
                .into(),
                _ => tss(format!("the TPM could not create a {bits}-bit RSA key"), e),
            });
        }
    };
    match uri.key {
        KeyLocation::File(ref path) => {
            flush(ctx, primary);
            let tss = to_tss(&created.out_public, &created.out_private, auth.is_none())?;
            write_key_file(path, &tss)?;
            Ok(Some(tss))
        }
        KeyLocation::Handle(handle) => {
            let loaded = ctx.execute_with_session(Some(AuthSession::Password), |c| {
                c.load(
                    primary,
                    created.out_private.clone(),
                    created.out_public.clone(),
                )
            });
            flush(ctx, primary);
            let key = loaded.map_err(|e| tss("loading the new key failed", e))?;
            let persistent = PersistentTpmHandle::new(handle)
                .map(Persistent::Persistent)
                .map_err(|e| tss(format!("persistent handle {handle:#010x}"), e));
            let evicted = persistent.and_then(|p| {
                ctx.execute_with_session(Some(AuthSession::Password), |c| {
                    c.evict_control(Provision::Owner, ObjectHandle::from(key), p)
                })
                .map_err(|e| {
                    tss(
                        format!("making the key persistent at {handle:#010x} failed"),
                        e,
                    )
                })
            });
            flush(ctx, key);
            let mut persisted = evicted?;
            let _ = ctx.tr_close(&mut persisted);
            Ok(None)
        }
    }
}

/// Refuse an occupied persistent handle.
fn ensure_free(ctx: &mut Context, handle: u32) -> Result<(), Error> {
    let tpm_handle = PersistentTpmHandle::new(handle)
        .map(TpmHandle::Persistent)
        .map_err(|e| tss(format!("persistent handle {handle:#010x}"), e))?;
    match ctx.execute_without_session(|c| c.tr_from_tpm_public(tpm_handle)) {
        Ok(mut object) => {
            let _ = ctx.tr_close(&mut object);
            Err(TpmError::HandleOccupied { handle }.into())
        }
        Err(e) if tpm_code(&e) == Some(RC_HANDLE) => Ok(()),
        Err(e) => Err(tss(format!("checking persistent handle {handle:#010x}"), e)),
    }
}

fn to_tss(
    public: &Public,
    private: &tss_esapi::structures::Private,
    empty_auth: bool,
) -> Result<TssKey, Error> {
    let public = public
        .marshall()
        .map_err(|e| tss("encoding the public part of the new key", e))?;
    let sized = |body: &[u8]| -> Result<Vec<u8>, Error> {
        let len = u16::try_from(body.len())
            .map_err(|_| failed("the new key", "a TPM blob is larger than 64 KiB"))?;
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(body);
        Ok(out)
    };
    Ok(TssKey {
        empty_auth,
        parent: RH_OWNER,
        public: sized(&public)?,
        private: sized(private.value())?,
    })
}

fn write_key_file(path: &Path, tss: &TssKey) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(tss.to_pem().as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}
