//! Signing with a loaded TPM key. RS256 is TPM2_Sign with RSASSA-SHA256 over a host-side
//! SHA-256 digest and a null hash-check ticket. PS256 is TPM2_Sign with RSAPSS, but
//! TPMs may pick the largest salt the key allows and RFC 7518 verifiers demand exactly 32
//! bytes, so every PSS signature is verified with a strict 32-byte salt before it leaves;
//! when the TPM's is refused, the padding is done on the host (EMSA-PSS, salt 32) and
//! the TPM only applies the private key through TPM2_RSA_Decrypt, if the key allows it.

use super::context::{boxed, failed, is_auth_failure, tpm_code, tss, TssResult, RC_LOCKOUT};
use super::TpmError;
use crate::signer::{Algorithm, Error};
use aws_lc_rs::digest;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, RsaSchemeAlgorithm};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Data, Digest, HashScheme, HashcheckTicket, Public, PublicKeyRsa, RsaDecryptionScheme,
    Signature, SignatureScheme,
};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use tss_esapi::Context;

/// What a TPM RSA key can do for us, read from its public area.
#[derive(Debug, Clone)]
pub(crate) struct KeyInfo {
    /// SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
    /// Modulus length in bytes.
    pub modulus_len: usize,
    /// Modulus length in bits.
    pub bits: usize,
    /// Algorithms offered, most preferred first.
    pub algorithms: Vec<Algorithm>,
    /// TPM2_Sign with RSAPSS is allowed by the key's scheme.
    pub tpm_pss: bool,
    /// TPM2_RSA_Decrypt with the null scheme is allowed (unrestricted decrypt key).
    pub raw_decrypt: bool,
    /// The public key parsed once for the PS256 check (RSASSA-PSS, SHA-256, salt 32).
    pub pss_check: aws_lc_rs::signature::ParsedPublicKey,
}

impl KeyInfo {
    /// Read the key's public area.
    ///
    /// # Errors
    /// The key is not RSA, is under 2048 bits, cannot sign external data, or its scheme
    /// allows neither RS256 nor PS256.
    pub(crate) fn from_public(public: &Public, what: &str) -> Result<Self, Error> {
        let Public::Rsa {
            object_attributes,
            parameters,
            unique,
            ..
        } = public
        else {
            return Err(TpmError::NotRsa {
                what: what.to_string(),
            }
            .into());
        };
        let bits = crate::public_key::unsigned_bits(unique.value());
        if bits < 2048 {
            return Err(TpmError::KeyTooSmall {
                what: what.to_string(),
                bits,
            }
            .into());
        }
        let e = match parameters.exponent().value() {
            0 => 65_537,
            e => e,
        };
        let restricted = object_attributes.restricted();
        let sign = object_attributes.sign_encrypt() && !restricted;
        let raw_decrypt = object_attributes.decrypt() && !restricted;
        if object_attributes.sign_encrypt() && restricted {
            return Err(failed(
                what,
                "is a restricted signing key (an attestation key), which signs only TPM-generated data; use an unrestricted signing key",
            ));
        }
        let scheme = parameters.rsa_scheme();
        let (rs256, tpm_pss) = if !sign {
            (false, false)
        } else {
            match scheme.algorithm() {
                RsaSchemeAlgorithm::Null => (true, true),
                RsaSchemeAlgorithm::RsaSsa => (scheme_hash_is_sha256(public), false),
                RsaSchemeAlgorithm::RsaPss => (false, scheme_hash_is_sha256(public)),
                _ => (false, false),
            }
        };
        let mut algorithms = Vec::new();
        if rs256 {
            algorithms.push(Algorithm::Rs256);
        }
        if tpm_pss || raw_decrypt {
            algorithms.push(Algorithm::Ps256);
        }
        if algorithms.is_empty() {
            return Err(failed(
                what,
                "cannot sign: it is not a signing key, or its fixed scheme is neither RSASSA-SHA256 nor RSAPSS-SHA256",
            ));
        }
        let spki = rsa_spki(unique.value(), e)
            .map_err(|e| failed(what, format!("its public key is not usable: {e}")))?;
        let pss_check = aws_lc_rs::signature::ParsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
            &spki,
        )
        .map_err(|e| failed(what, format!("its public key is not usable: {e}")))?;
        Ok(Self {
            spki,
            pss_check,
            modulus_len: bits.div_ceil(8),
            bits,
            algorithms,
            tpm_pss,
            raw_decrypt,
        })
    }
}

fn scheme_hash_is_sha256(public: &Public) -> bool {
    let Public::Rsa { parameters, .. } = public else {
        return false;
    };
    use tss_esapi::structures::RsaScheme;
    match parameters.rsa_scheme() {
        RsaScheme::RsaSsa(h) | RsaScheme::RsaPss(h) => {
            h.hashing_algorithm() == HashingAlgorithm::Sha256
        }
        _ => false,
    }
}

/// SubjectPublicKeyInfo DER for an RSA modulus (unsigned big-endian) and exponent.
fn rsa_spki(n: &[u8], e: u32) -> Result<Vec<u8>, crate::public_key::Error> {
    crate::public_key::RsaPublicKey::new(n, &e.to_be_bytes())?.to_spki_der()
}

fn null_ticket() -> TssResult<HashcheckTicket> {
    HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    })
}

fn sha256(message: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, message);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn left_pad(mut value: Vec<u8>, len: usize) -> Vec<u8> {
    if value.len() < len {
        let mut padded = vec![0u8; len - value.len()];
        padded.append(&mut value);
        value = padded;
    }
    value
}

/// TPM2_Sign over SHA-256(message), RSASSA or RSAPSS.
pub(crate) fn tpm_sign(
    ctx: &mut Context,
    key: KeyHandle,
    info: &KeyInfo,
    alg: Algorithm,
    message: &[u8],
) -> TssResult<Vec<u8>> {
    let digest = Digest::try_from(sha256(message).to_vec())?;
    let hash = HashScheme::new(HashingAlgorithm::Sha256);
    let scheme = match alg {
        Algorithm::Rs256 => SignatureScheme::RsaSsa { hash_scheme: hash },
        Algorithm::Ps256 => SignatureScheme::RsaPss { hash_scheme: hash },
    };
    let ticket = null_ticket()?;
    let signature = ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.sign(key, digest, scheme, ticket)
    })?;
    let value = match signature {
        Signature::RsaSsa(s) | Signature::RsaPss(s) => s.signature().value().to_vec(),
        _ => {
            return Err(tss_esapi::Error::WrapperError(
                tss_esapi::WrapperErrorKind::WrongValueFromTpm,
            ))
        }
    };
    Ok(left_pad(value, info.modulus_len))
}

/// EMSA-PSS-ENCODE (RFC 8017 §9.1.1) with SHA-256, MGF1-SHA-256 and a 32-byte salt,
/// returned as a `k`-byte integer ready for the raw RSA private operation.
pub(crate) fn emsa_pss_sha256(m_hash: &[u8; 32], salt: &[u8; 32], mod_bits: usize) -> Vec<u8> {
    const H_LEN: usize = 32;
    let em_bits = mod_bits - 1;
    let em_len = em_bits.div_ceil(8);
    let mut m_prime = Vec::with_capacity(8 + 2 * H_LEN);
    m_prime.extend_from_slice(&[0u8; 8]);
    m_prime.extend_from_slice(m_hash);
    m_prime.extend_from_slice(salt);
    let h = sha256(&m_prime);
    let db_len = em_len - H_LEN - 1;
    let mut db = vec![0u8; db_len];
    db[db_len - H_LEN - 1] = 0x01;
    db[db_len - H_LEN..].copy_from_slice(salt);
    // MGF1-SHA-256
    let mut counter = 0u32;
    let mut offset = 0;
    while offset < db_len {
        let mut input = h.to_vec();
        input.extend_from_slice(&counter.to_be_bytes());
        for (d, m) in db[offset..].iter_mut().zip(sha256(&input)) {
            *d ^= m;
        }
        offset += H_LEN;
        counter += 1;
    }
    let unused = 8 * em_len - em_bits;
    db[0] &= 0xff >> unused;
    let mut em = db;
    em.extend_from_slice(&h);
    em.push(0xbc);
    left_pad(em, mod_bits.div_ceil(8))
}

/// PS256 by host-side EMSA-PSS (salt 32) and TPM2_RSA_Decrypt (the raw private-key
/// operation) on the encoded message.
pub(crate) fn host_pss(
    ctx: &mut Context,
    key: KeyHandle,
    info: &KeyInfo,
    message: &[u8],
) -> TssResult<Vec<u8>> {
    let mut salt = [0u8; 32];
    aws_lc_rs::rand::fill(&mut salt)
        .map_err(|_| tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::InternalError))?;
    let em = emsa_pss_sha256(&sha256(message), &salt, info.bits);
    let input = PublicKeyRsa::try_from(em)?;
    let out = ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.rsa_decrypt(key, input, RsaDecryptionScheme::Null, Data::default())
    })?;
    Ok(left_pad(out.value().to_vec(), info.modulus_len))
}

/// Why a signature was not produced: the raw TSS error (so the caller can decide to
/// reconnect) or a final answer.
#[derive(Debug)]
pub(crate) enum SignFailure {
    /// The TSS failed; the caller may reconnect and retry.
    Tss(tss_esapi::Error),
    /// Nothing to retry.
    Final(Error),
}

impl From<tss_esapi::Error> for SignFailure {
    fn from(e: tss_esapi::Error) -> Self {
        Self::Tss(e)
    }
}

/// Sign `message` with `alg`, checking PS256 output with a strict 32-byte salt.
/// `force_host_pss` skips TPM2_Sign for PS256 (used to exercise the fallback).
pub(crate) fn sign(
    ctx: &mut Context,
    key: KeyHandle,
    info: &KeyInfo,
    tpm_pss_refused: &mut bool,
    alg: Algorithm,
    message: &[u8],
    force_host_pss: bool,
) -> Result<Vec<u8>, SignFailure> {
    match alg {
        Algorithm::Rs256 if info.algorithms.contains(&Algorithm::Rs256) => {
            Ok(tpm_sign(ctx, key, info, alg, message)?)
        }
        Algorithm::Ps256 if info.algorithms.contains(&Algorithm::Ps256) => {
            if info.tpm_pss && !*tpm_pss_refused && !force_host_pss {
                let sig = tpm_sign(ctx, key, info, alg, message)?;
                if info.pss_check.verify_sig(message, &sig).is_ok() {
                    return Ok(sig);
                }
                // The TPM's salt is not 32 bytes; do not ask it again.
                *tpm_pss_refused = true;
            }
            if !info.raw_decrypt {
                return Err(SignFailure::Final(
                    TpmError::NoRfc7518Ps256 {
                        reason: "its PSS salt is not 32 bytes and the key does not allow TPM2_RSA_Decrypt",
                    }
                    .into(),
                ));
            }
            let sig = host_pss(ctx, key, info, message)?;
            info.pss_check.verify_sig(message, &sig).map_err(|_| {
                SignFailure::Final(
                    TpmError::NoRfc7518Ps256 {
                        reason: "the host-side PSS signature does not verify",
                    }
                    .into(),
                )
            })?;
            Ok(sig)
        }
        _ => Err(SignFailure::Final(Error::AlgorithmUnavailable { alg })),
    }
}

/// A final error for a TSS failure while signing with the key described by `what`.
/// `password_given` says whether the reference had an `auth-source=`.
pub(crate) fn sign_error(
    what: &str,
    alg: Algorithm,
    e: tss_esapi::Error,
    password_given: bool,
) -> Error {
    if is_auth_failure(&e) {
        return TpmError::WrongAuth {
            what: what.to_string(),
            auth_given: password_given,
            source: boxed(e),
        }
        .into();
    }
    if tpm_code(&e) == Some(RC_LOCKOUT) {
        return TpmError::Lockout {
            what: what.to_string(),
            source: boxed(e),
        }
        .into();
    }
    tss(format!("{alg} signature with the {what} failed"), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emsa_pss_layout() {
        let em = emsa_pss_sha256(&[7u8; 32], &[9u8; 32], 2048);
        assert_eq!(em.len(), 256);
        assert_eq!(em[255], 0xbc);
        assert_eq!(em[0] & 0x80, 0, "top bit cleared for emBits = 2047");
        let odd = emsa_pss_sha256(&[7u8; 32], &[9u8; 32], 2049);
        assert_eq!(odd.len(), 257);
        assert_eq!(
            odd[0], 0,
            "emLen is one byte shorter than k when modBits ≡ 1 mod 8"
        );
    }

    /// The PS256 check must refuse what some TPMs produce (PSS with the largest salt)
    /// and accept salt 32: signatures made by the openssl CLI, checked as `sign` checks.
    #[test]
    fn pss_check_is_strict_about_the_salt() {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl CLI");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        run(&["genpkey", "-algorithm", "RSA", "-out", "k.pem"]);
        std::fs::write(dir.path().join("m"), b"header.claims").unwrap();
        let spki = run(&["pkey", "-in", "k.pem", "-pubout", "-outform", "DER"]);
        let check = aws_lc_rs::signature::ParsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
            &spki,
        )
        .unwrap();
        let sign = |salt: &str| {
            run(&[
                "dgst",
                "-sha256",
                "-sign",
                "k.pem",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                &format!("rsa_pss_saltlen:{salt}"),
                "m",
            ])
        };
        assert!(check.verify_sig(b"header.claims", &sign("32")).is_ok());
        assert!(
            check.verify_sig(b"header.claims", &sign("max")).is_err(),
            "max salt accepted"
        );
        assert!(
            check.verify_sig(b"header.claims", &sign("20")).is_err(),
            "salt 20 accepted"
        );
    }

    #[test]
    fn spki_is_read_back_as_the_same_numbers() {
        let mut n = vec![0xc5u8; 256];
        n[255] = 0x01;
        let spki = rsa_spki(&n, 65_537).unwrap();
        let key = crate::public_key::RsaPublicKey::from_spki_der(&spki).unwrap();
        assert_eq!(key.modulus(), &n[..]);
        assert_eq!(key.exponent(), &[0x01, 0x00, 0x01]);
        assert!(rsa_spki(&[0, 0], 65_537).is_err(), "a zero modulus");
    }
}
