//! [`Pkcs11Signer`]: the [`Signer`] over a token key. RS256 uses `CKM_SHA256_RSA_PKCS`,
//! PS256 `CKM_SHA256_RSA_PKCS_PSS` (salt 32); a token without them gets `CKM_RSA_PKCS`
//! over a DigestInfo, or `CKM_RSA_PKCS_PSS` over a digest, computed on the host. Keys with
//! CKA_ALWAYS_AUTHENTICATE (PIV slot 9c) sign as C_SignInit → C_Login(CONTEXT_SPECIFIC)
//! → C_SignUpdate → C_SignFinal, which the one-shot C_Sign cannot do.

use super::objects::{self, FoundKey};
use super::token::{Loss, Token};
use super::{id_text, Pkcs11Error};
use crate::keyref::Pkcs11Uri;
use crate::public_key::{self, RsaPublicKey};
use crate::secret::Callbacks;
use crate::signer::{Algorithm, Error, Signer};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::Session;

/// DER prefix of a SHA-256 DigestInfo (RFC 8017 §9.2 note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// How one algorithm is produced on this token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// The token hashes (CKM_SHA256_RSA_PKCS / CKM_SHA256_RSA_PKCS_PSS).
    TokenHashes,
    /// The host hashes; the token does raw PKCS#1 v1.5 / PSS over the digest.
    HostHashes,
}

/// A private key in a PKCS#11 token.
///
/// Held open by a long-running process, it outlasts its token's troubles: a session the
/// token dropped is replaced, a login it forgot is made again with the PIN that worked
/// (once, however many threads noticed), and a token pulled out and put back is opened
/// again at the next signature (the same token, by serial number; one login). While it
/// is away, signatures fail with [`Pkcs11Error::TokenAbsent`]. A PIN the token refused
/// is never presented again.
#[derive(Debug)]
pub struct Pkcs11Signer {
    pub(super) token: Token,
    pub(super) key: FoundKey,
    /// The key's object handle and the token generation it was found in; found again in
    /// each new generation (handles of private objects die with the login).
    handle: std::sync::RwLock<(u64, cryptoki::object::ObjectHandle)>,
    pub(super) spki: Vec<u8>,
    cert: Option<Vec<u8>>,
    algorithms: Vec<Algorithm>,
    rs256: Route,
    ps256: Option<Route>,
    /// The reference the key was opened by (its `Display` is redacted), for messages
    /// and, for `piv:` references, the slot.
    pub(super) uri: Pkcs11Uri,
}

impl Pkcs11Signer {
    /// Open the key a `pkcs11:` URI or `piv:` slot names. A PIN that no `pin-source=`
    /// supplies is asked for through `callbacks`, once; a wrong one is never retried.
    ///
    /// # Errors
    /// See [`Pkcs11Error`]: module, token, PIN, key lookup (an empty PIV slot says how to
    /// fill it), or a certificate stored with the key that does not belong to it.
    pub fn open(uri: &Pkcs11Uri, callbacks: &dyn Callbacks) -> Result<Self, Pkcs11Error> {
        let token = Token::open(uri, false, callbacks)?;
        let key = objects::find_key(&token, uri)?;
        Self::from_found(token, key, uri)
    }

    pub(super) fn from_found(
        token: Token,
        key: FoundKey,
        uri: &Pkcs11Uri,
    ) -> Result<Self, Pkcs11Error> {
        let (spki, certs) = token.with_keeper(|s| {
            Ok::<_, Pkcs11Error>((
                objects::public_key(s, &key)?,
                objects::certificates_with_id(s, &key.id)?,
            ))
        })?;
        let bits = RsaPublicKey::from_spki_der(&spki).map_or(0, |k| k.bits());
        if bits < 2048 {
            return Err(Pkcs11Error::KeyTooSmall {
                reference: uri.to_string(),
                bits,
            });
        }
        let cert = match certs.as_slice() {
            [] => None,
            _ => match certs.iter().find(|(_, der)| cert_matches(der, &spki)) {
                Some((_, der)) => Some(der.clone()),
                None => {
                    return Err(Pkcs11Error::CertificateMismatch {
                        reference: uri.to_string(),
                        id: id_text(&key.id),
                    })
                }
            },
        };
        let mechanisms = token.mechanisms()?;
        let has = |m: MechanismType| mechanisms.contains(&m);
        let rs256 = if has(MechanismType::SHA256_RSA_PKCS) {
            Route::TokenHashes
        } else if has(MechanismType::RSA_PKCS) {
            Route::HostHashes
        } else {
            return Err(Pkcs11Error::Key(format!(
                "token \"{}\" offers neither CKM_SHA256_RSA_PKCS nor CKM_RSA_PKCS, so it cannot make an RS256 signature",
                token.label
            )));
        };
        let ps256 = if has(MechanismType::SHA256_RSA_PKCS_PSS) {
            Some(Route::TokenHashes)
        } else if has(MechanismType::RSA_PKCS_PSS) {
            Some(Route::HostHashes)
        } else {
            None
        };
        let mut algorithms = vec![Algorithm::Rs256];
        if ps256.is_some() {
            algorithms.push(Algorithm::Ps256);
        }
        let generation = token.generation();
        Ok(Self {
            token,
            handle: std::sync::RwLock::new((generation, key.handle)),
            key,
            spki,
            cert,
            algorithms,
            rs256,
            ps256,
            uri: uri.clone(),
        })
    }

    /// The key's CKA_ID.
    pub fn id(&self) -> &[u8] {
        &self.key.id
    }

    /// The key's CKA_LABEL.
    pub fn label(&self) -> &str {
        &self.key.label
    }

    /// Whether the key needs a context-specific login for every signature.
    pub fn always_authenticate(&self) -> bool {
        self.key.always_authenticate
    }

    fn mechanism(
        &self,
        alg: Algorithm,
        message: &[u8],
    ) -> Result<(Mechanism<'static>, Vec<u8>), Error> {
        let pss = PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: 32.into(),
        };
        let digest = || aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message);
        Ok(match (alg, self.rs256, self.ps256) {
            (Algorithm::Rs256, Route::TokenHashes, _) => {
                (Mechanism::Sha256RsaPkcs, message.to_vec())
            }
            (Algorithm::Rs256, Route::HostHashes, _) => {
                let mut data = SHA256_DIGEST_INFO.to_vec();
                data.extend_from_slice(digest().as_ref());
                (Mechanism::RsaPkcs, data)
            }
            (Algorithm::Ps256, _, Some(Route::TokenHashes)) => {
                (Mechanism::Sha256RsaPkcsPss(pss), message.to_vec())
            }
            (Algorithm::Ps256, _, Some(Route::HostHashes)) => {
                (Mechanism::RsaPkcsPss(pss), digest().as_ref().to_vec())
            }
            (Algorithm::Ps256, _, None) => return Err(Error::AlgorithmUnavailable { alg }),
        })
    }

    fn sign_once(
        &self,
        generation: u64,
        session: &Session,
        mechanism: &Mechanism,
        data: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        let handle = self.handle(generation).map_err(Failure::Login)?;
        if !self.key.always_authenticate {
            return session.sign(mechanism, handle, data).map_err(Failure::Ck);
        }
        session.sign_init(mechanism, handle).map_err(Failure::Ck)?;
        self.token.context_login(session).map_err(Failure::Login)?;
        session.sign_update(data).map_err(Failure::Ck)?;
        session.sign_final().map_err(Failure::Ck)
    }
}

impl Pkcs11Signer {
    /// The key's handle in token generation `generation`, found again if it was found
    /// in an earlier one.
    fn handle(&self, generation: u64) -> Result<cryptoki::object::ObjectHandle, Pkcs11Error> {
        let (found_in, handle) = *self.handle.read().unwrap_or_else(|p| p.into_inner());
        if found_in == generation {
            return Ok(handle);
        }
        let mut template = vec![
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(self.key.id.clone()),
        ];
        if !self.key.label.is_empty() {
            template.push(Attribute::Label(self.key.label.as_bytes().to_vec()));
        }
        let found = self.token.with_keeper(|s| {
            s.find_objects(&template).map_err(Pkcs11Error::call(
                "searching for the key again after logging in again",
            ))
        })?;
        match found.as_slice() {
            [one] => {
                *self.handle.write().unwrap_or_else(|p| p.into_inner()) = (generation, *one);
                Ok(*one)
            }
            _ => Err(Pkcs11Error::Key(format!(
                "{}: the key is no longer on token \"{}\" (id={})",
                self.uri,
                self.token.label,
                id_text(&self.key.id)
            ))),
        }
    }
}

enum Failure {
    Ck(CkError),
    Login(Pkcs11Error),
}

fn cert_matches(der: &[u8], spki: &[u8]) -> bool {
    public_key::certificate_spki(der).is_ok_and(|c| public_key::same_rsa_key(c, spki))
}

impl Signer for Pkcs11Signer {
    fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// Sign on a pooled session. What the token loses is recovered once per signature
    /// each: a lost session is replaced, a lost login is made again (one C_Login, shared
    /// by every thread that saw the same loss), a removed token is opened again (one
    /// login) — or, while it is away, [`Pkcs11Error::TokenAbsent`]. A dead session is
    /// closed, never used again.
    fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, Error> {
        let (mechanism, data) = self.mechanism(alg, message)?;
        let (mut logged_in_again, mut new_session, mut reopened) = (false, false, false);
        let mut tried_again = false;
        loop {
            let (generation, session) = self.token.session()?;
            let e = match self.sign_once(generation, &session, &mechanism, &data) {
                Ok(signature) => {
                    self.token.give_back(generation, session);
                    return Ok(signature);
                }
                // The keeper met the removal while finding the key again: it is closed
                // already; open the token again, once.
                Err(Failure::Login(Pkcs11Error::TokenAbsent { .. })) if !reopened => {
                    reopened = true;
                    continue;
                }
                Err(Failure::Login(e)) => return Err(e.into()),
                Err(Failure::Ck(e)) => e,
            };
            // A failed operation may leave the session mid-operation: it is closed, not
            // pooled, whatever happens next.
            drop(session);
            match Loss::of(&e) {
                // The token forgot the login (a card reset, another library's C_Logout):
                // log in again with the PIN that worked; the key is found again.
                Loss::Login if !logged_in_again => {
                    logged_in_again = true;
                    self.token.relogin(generation)?;
                }
                Loss::Session if !new_session => {
                    new_session = true;
                    self.token.session_lost(generation);
                }
                // Removed (and perhaps back already): open it again, once.
                Loss::Token if !reopened => {
                    reopened = true;
                    self.token.lost(generation);
                }
                Loss::Token => return Err(self.token.absent(Some(e)).into()),
                // SoftHSM2 answers CKR_GENERAL_ERROR to a C_SignInit that races a login on
                // another session (the token's key is swapped under it): once more, on a
                // new session; a second one is the token's answer.
                Loss::None
                    if !tried_again && matches!(e, CkError::Pkcs11(RvError::GeneralError, _)) =>
                {
                    tried_again = true;
                }
                _ => {
                    let hint = match &e {
                        CkError::Pkcs11(RvError::DeviceError | RvError::DeviceMemory, _) => {
                            " (the device reported an error; the next signature tries again on a new session)"
                        }
                        CkError::Pkcs11(RvError::KeyFunctionNotPermitted, _) => {
                            " (the key's attributes forbid signing)"
                        }
                        _ => "",
                    };
                    return Err(Pkcs11Error::Sign {
                        alg,
                        reference: self.uri.to_string(),
                        token: self.token.label.clone(),
                        hint,
                        source: Box::new(e),
                    }
                    .into());
                }
            }
        }
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn certificate_der(&self) -> Option<&[u8]> {
        self.cert.as_deref()
    }

    fn store_certificate(&self, cert_der: &[u8]) -> Result<(), Error> {
        self.store(cert_der).map_err(Error::from)
    }
}
