//! Finding objects on the token: the private key a URI names (with a listing of the keys
//! present when none or several match), its public key as SubjectPublicKeyInfo, and the
//! certificate stored beside it under the same CKA_ID.

use super::token::Token;
use super::{id_text, uri_escape, Pkcs11Error};
use crate::keyref::{ObjectType, Pkcs11Uri};
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::Session;

/// The private key the URI selects and what we learned about it.
#[derive(Debug, Clone)]
pub struct FoundKey {
    pub handle: ObjectHandle,
    pub label: String,
    pub id: Vec<u8>,
    pub always_authenticate: bool,
}

/// Find exactly one RSA private key matching `object=` / `id=`.
///
/// # Errors
/// None or several match (the message lists the keys present), or the key is not RSA.
pub fn find_key(token: &Token, uri: &Pkcs11Uri) -> Result<FoundKey, Pkcs11Error> {
    if let Some(t) = uri.object_type.filter(|t| *t != ObjectType::Private) {
        return Err(Pkcs11Error::Key(format!(
            "{uri} selects type={} objects, but signing needs the private key: use type=private or drop type=",
            t.as_str()
        )));
    }
    token.with_keeper(|s| {
        let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        if let Some(label) = &uri.object {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &uri.id {
            template.push(Attribute::Id(id.clone()));
        }
        let found = s
            .find_objects(&template)
            .map_err(Pkcs11Error::call("searching the token for the private key"))?;
        match found.as_slice() {
            [one] => describe_key(s, *one, uri),
            [] => Err(match &uri.piv_slot {
                Some(slot) => Pkcs11Error::EmptyPivSlot {
                    slot: slot.clone(),
                    label: crate::keyref::pkcs11::piv_labels(slot).0,
                },
                None => Pkcs11Error::NoKey {
                    token: token.label.clone(),
                    reference: uri.to_string(),
                    hint: uri.hex_id_hint()
                        .map(|rfc| format!(" (RFC 7512 writes CKA_ID bytes percent-encoded: did you mean id={rfc}?)"))
                        .unwrap_or_default(),
                    listing: list_keys(s),
                },
            }),
            many => Err(Pkcs11Error::Key(format!(
                "{} private keys on token \"{}\" match {uri}; add object= or id= to choose one; {}",
                many.len(),
                token.label,
                list_keys(s)
            ))),
        }
    })
}

fn describe_key(
    s: &Session,
    handle: ObjectHandle,
    uri: &Pkcs11Uri,
) -> Result<FoundKey, Pkcs11Error> {
    let attrs = s
        .get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::Label,
                AttributeType::Id,
                AttributeType::AlwaysAuthenticate,
                AttributeType::Sign,
            ],
        )
        .map_err(Pkcs11Error::call("reading the private key's attributes"))?;
    let mut key = FoundKey {
        handle,
        label: String::new(),
        id: Vec::new(),
        always_authenticate: false,
    };
    let mut key_type = None;
    let mut can_sign = true;
    for a in attrs {
        match a {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::Label(l) => key.label = String::from_utf8_lossy(&l).into_owned(),
            Attribute::Id(id) => key.id = id,
            Attribute::AlwaysAuthenticate(b) => key.always_authenticate = b,
            Attribute::Sign(b) => can_sign = b,
            _ => {}
        }
    }
    match key_type {
        Some(KeyType::RSA) | None => {}
        Some(other) => {
            return Err(Pkcs11Error::NotRsa {
                reference: uri.to_string(),
                kind: other.to_string(),
            })
        }
    }
    if !can_sign {
        return Err(Pkcs11Error::Key(format!(
            "{uri}: the key has CKA_SIGN=false, so the token will not sign with it; use a key made for signing"
        )));
    }
    Ok(key)
}

/// "keys present: object=…;id=… (RSA 2048)", for error messages.
pub fn list_keys(s: &Session) -> String {
    let Ok(handles) = s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)]) else {
        return "the private keys could not be listed".into();
    };
    if handles.is_empty() {
        return "the token holds no private key yet (generate one there, named by object=NAME)"
            .into();
    }
    let mut lines = Vec::new();
    for h in handles {
        let attrs = s
            .get_attributes(
                h,
                &[
                    AttributeType::Label,
                    AttributeType::Id,
                    AttributeType::KeyType,
                    AttributeType::Modulus,
                ],
            )
            .unwrap_or_default();
        let (mut label, mut id, mut kind, mut bits) =
            (String::new(), Vec::new(), String::from("?"), 0);
        for a in attrs {
            match a {
                Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
                Attribute::Id(i) => id = i,
                Attribute::KeyType(t) => {
                    kind = t.to_string().trim_start_matches("CKK_").to_string()
                }
                Attribute::Modulus(m) => bits = crate::public_key::unsigned_bits(&m),
                _ => {}
            }
        }
        let size = if bits > 0 {
            format!(" {bits}")
        } else {
            String::new()
        };
        lines.push(format!(
            "object={};id={} ({kind}{size})",
            uri_escape(&label),
            id_text(&id)
        ));
    }
    format!("private keys present:\n  {}", lines.join("\n  "))
}

/// The key's public half as SubjectPublicKeyInfo DER: from the private key's modulus and
/// exponent, else from the public-key object with the same CKA_ID.
///
/// # Errors
/// Neither object exposes the public numbers.
pub fn public_key(s: &Session, key: &FoundKey) -> Result<Vec<u8>, Pkcs11Error> {
    if let Some(spki) = rsa_numbers(s, key.handle) {
        return Ok(spki);
    }
    if !key.id.is_empty() {
        let found = s
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(key.id.clone()),
            ])
            .map_err(Pkcs11Error::call("searching for the public key"))?;
        if let Some(spki) = found.into_iter().find_map(|h| rsa_numbers(s, h)) {
            return Ok(spki);
        }
    }
    Err(Pkcs11Error::Key(format!(
        "the token shows neither the modulus of key \"{}\" nor a public-key object with id={}; store the public key or certificate beside it",
        key.label,
        id_text(&key.id)
    )))
}

fn rsa_numbers(s: &Session, handle: ObjectHandle) -> Option<Vec<u8>> {
    let attrs = s
        .get_attributes(
            handle,
            &[AttributeType::Modulus, AttributeType::PublicExponent],
        )
        .ok()?;
    let (mut n, mut e) = (None, None);
    for a in attrs {
        match a {
            Attribute::Modulus(m) if !m.is_empty() => n = Some(m),
            Attribute::PublicExponent(x) if !x.is_empty() => e = Some(x),
            _ => {}
        }
    }
    crate::public_key::RsaPublicKey::new(&n?, &e?)
        .and_then(|key| key.to_spki_der())
        .ok()
}

/// Certificates on the token stored with `id` (CKA_CLASS certificate, X.509), as DER.
pub fn certificates_with_id(
    s: &Session,
    id: &[u8],
) -> Result<Vec<(ObjectHandle, Vec<u8>)>, Pkcs11Error> {
    if id.is_empty() {
        return Ok(Vec::new());
    }
    let handles = s
        .find_objects(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Id(id.to_vec()),
        ])
        .map_err(Pkcs11Error::call(
            "searching for the certificate stored with the key",
        ))?;
    let mut out = Vec::new();
    for h in handles {
        let attrs = s
            .get_attributes(h, &[AttributeType::Value])
            .map_err(Pkcs11Error::call("reading a certificate object"))?;
        if let Some(Attribute::Value(der)) = attrs.into_iter().next() {
            out.push((h, der));
        }
    }
    Ok(out)
}
