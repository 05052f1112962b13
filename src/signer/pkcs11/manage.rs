//! Key and certificate management on a token: generating an RSA key pair that can never
//! leave it (sensitive, non-extractable), and storing a certificate object beside its
//! key under the same CKA_ID so that later opens find it.

use super::objects::{self, FoundKey};
use super::sign::Pkcs11Signer;
use super::token::Token;
use super::{id_text, uri_escape, Pkcs11Error};
use crate::keyref::pkcs11::piv_labels;
use crate::keyref::Pkcs11Uri;
use crate::secret::Callbacks;
use crate::signer::Error;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, CertificateType, ObjectClass};

/// Generate an RSA key pair of `bits` (2048, 3072 or 4096) in the token a `pkcs11:` URI
/// names: CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE=false, CKA_SIGN; the
/// label from `object=` (or `label`), the id from `id=` or 8 random bytes. A PIN no
/// `pin-source=` supplies is asked for through `callbacks`. Returns the opened key.
///
/// # Errors
/// The size is not offered ([`Error::UnsupportedKeySize`]), no label was given, a key
/// with that label or id exists already (nothing is overwritten), the token cannot
/// generate RSA keys, or generation failed.
pub fn generate(
    uri: &Pkcs11Uri,
    bits: usize,
    label: Option<&str>,
    callbacks: &dyn Callbacks,
) -> Result<Pkcs11Signer, Error> {
    let label = match (uri.object.as_deref(), label) {
        (Some(a), Some(b)) if a != b => {
            return Err(Pkcs11Error::LabelConflict {
                reference: uri.to_string(),
                in_uri: a.to_string(),
                given: b.to_string(),
            }
            .into())
        }
        (Some(a), _) | (None, Some(a)) => a.to_string(),
        (None, None) => {
            return Err(Pkcs11Error::LabelMissing {
                reference: uri.to_string(),
            }
            .into())
        }
    };
    if !matches!(bits, 2048 | 3072 | 4096) {
        return Err(Error::UnsupportedKeySize { bits });
    }
    let id = uri
        .id
        .clone()
        .unwrap_or_else(|| crate::encoding::random::<8>().to_vec());
    let token = Token::open(uri, true, callbacks)?;
    if !token
        .mechanisms()?
        .contains(&MechanismType::RSA_PKCS_KEY_PAIR_GEN)
    {
        return Err(Pkcs11Error::Key(format!(
            "token \"{}\" cannot generate RSA key pairs (no CKM_RSA_PKCS_KEY_PAIR_GEN)",
            token.label
        ))
        .into());
    }
    let handle = token.with_keeper(|s| {
        for (what, attr) in [
            ("labelled", Attribute::Label(label.as_bytes().to_vec())),
            ("with id", Attribute::Id(id.clone())),
        ] {
            let existing = s
                .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY), attr])
                .map_err(Pkcs11Error::call("searching the token for existing keys"))?;
            if !existing.is_empty() {
                let value = if what == "labelled" {
                    label.clone()
                } else {
                    id_text(&id)
                };
                return Err(Pkcs11Error::Key(format!(
                    "token \"{}\" already holds a private key {what} {value}; nothing was generated (keys are never overwritten): choose another object=/id=, or delete the old key first; {}",
                    token.label,
                    objects::list_keys(s)
                )));
            }
        }
        let modulus_bits = u64::try_from(bits).expect("2048..4096 fits").into();
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::ModulusBits(modulus_bits),
            Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
            .map(|(_, private)| private)
            .map_err(Pkcs11Error::call(format!(
                "generating an RSA-{bits} key pair on token \"{}\"",
                token.label
            )))
    })?;
    let key = FoundKey {
        handle,
        label,
        id,
        always_authenticate: false,
    };
    Ok(Pkcs11Signer::from_found(token, key, uri)?)
}

impl Pkcs11Signer {
    /// The URI path that names this key exactly (token label, object label and id).
    pub fn uri_path(&self) -> String {
        format!(
            "pkcs11:token={};object={};id={}",
            uri_escape(&self.token.label),
            uri_escape(&self.key.label),
            id_text(&self.key.id)
        )
    }

    /// Store `cert_der` on the token beside this key: CKO_CERTIFICATE, CKC_X_509, with
    /// the key's CKA_ID and label (for PIV slots, ykcs11's certificate label).
    ///
    /// # Errors
    /// The certificate is for another key, a different certificate already sits under
    /// this id (it is not replaced), or the token refused to create the object.
    pub fn store(&self, cert_der: &[u8]) -> Result<(), Pkcs11Error> {
        let names = crate::public_key::certificate_fields(cert_der).map_err(|_| {
            Pkcs11Error::Key("the certificate to store is not a parsable X.509 certificate".into())
        })?;
        if !crate::public_key::same_rsa_key(names.spki, &self.spki) {
            return Err(Pkcs11Error::Key(format!(
                "the certificate is for another key than {}; nothing was stored",
                self.uri
            )));
        }
        let existing = self
            .token
            .with_keeper(|s| objects::certificates_with_id(s, &self.key.id))?;
        if existing.iter().any(|(_, der)| der == cert_der) {
            return Ok(());
        }
        if !existing.is_empty() {
            return Err(Pkcs11Error::Key(format!(
                "token \"{}\" already holds a different certificate with id={}; it was left in place. Remove it first (pkcs11-tool --module MODULE --login --delete-object --type cert --id {}), then store again",
                self.token.label,
                id_text(&self.key.id),
                crate::encoding::hex(&self.key.id, false)
            )));
        }
        let label = match &self.uri.piv_slot {
            Some(slot) => piv_labels(slot).1,
            None => self.key.label.clone(),
        };
        let session =
            self.token
                .ctx
                .open_rw_session(self.token.slot)
                .map_err(Pkcs11Error::call(format!(
                    "opening a read-write session on token \"{}\" (is it write-protected?)",
                    self.token.label
                )))?;
        session
            .create_object(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Modifiable(true),
                Attribute::Label(label.into_bytes()),
                Attribute::Id(self.key.id.clone()),
                Attribute::Subject(names.subject.to_vec()),
                Attribute::Issuer(names.issuer.to_vec()),
                Attribute::SerialNumber(names.serial.to_vec()),
                Attribute::Value(cert_der.to_vec()),
            ])
            .map_err(Pkcs11Error::call(format!(
                "storing the certificate on token \"{}\"",
                self.token.label
            )))?;
        Ok(())
    }
}

/// Initialise the first uninitialised token of `module` with `label`, an SO PIN and a
/// user PIN: how a throwaway SoftHSM2 token (the demo's, a test's) comes to exist. An
/// initialised token is never touched.
///
/// # Errors
/// The module cannot be loaded, it has no uninitialised token, or initialisation failed.
pub fn init_token(
    module: &std::path::Path,
    label: &str,
    so_pin: &crate::secret::Secret,
    user_pin: &crate::secret::Secret,
) -> Result<(), Pkcs11Error> {
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    let ctx = super::module::load(module)?;
    let slots = ctx
        .get_slots_with_token()
        .map_err(Pkcs11Error::call("listing the slots with a token"))?;
    let free = slots
        .into_iter()
        .find(|s| ctx.get_token_info(*s).is_ok_and(|i| !i.token_initialized()))
        .ok_or_else(|| Pkcs11Error::NoFreeToken {
            module: module.to_path_buf(),
        })?;
    let so = AuthPin::from(so_pin.expose());
    ctx.init_token(free, &so, label)
        .map_err(Pkcs11Error::call(format!("initialising token \"{label}\"")))?;
    // Initialising re-numbers SoftHSM2's slots: find the token again by its label.
    let slot = ctx
        .get_slots_with_token()
        .map_err(Pkcs11Error::call("listing the slots with a token"))?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|i| i.label().trim_end() == label)
        })
        .ok_or_else(|| Pkcs11Error::TokenVanished {
            token: label.to_string(),
        })?;
    let session = ctx
        .open_rw_session(slot)
        .map_err(Pkcs11Error::call(format!(
            "opening a session on token \"{label}\""
        )))?;
    session
        .login(UserType::So, Some(&so))
        .map_err(Pkcs11Error::call("logging in as security officer"))?;
    session
        .init_pin(&AuthPin::from(user_pin.expose()))
        .map_err(Pkcs11Error::call("setting the user PIN"))?;
    session
        .logout()
        .map_err(Pkcs11Error::call("logging the security officer out"))?;
    Ok(())
}
