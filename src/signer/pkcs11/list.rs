//! Listing a module's tokens and the keys on them (`signer::list`): public objects with
//! a read-only session and no login, and, for the token a reference names with a
//! `pin-source=`, its private keys through one login (the same PIN rules as opening a key).

use super::token::Token;
use super::{id_text, module, uri_escape, Pkcs11Error};
use crate::cert::Certificate;
use crate::keyref::Pkcs11Uri;
use crate::secret::Callbacks;
use crate::signer::list::{Device, ListedKey};
use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::slot::{Slot, TokenInfo};
use std::path::Path;

/// Every initialised token of the module at `path`, without logging in.
pub(crate) fn module(path: &Path) -> Result<Vec<Device>, Pkcs11Error> {
    list(path, None)
}

/// Every token of the module `uri` names; the token it selects is logged in first when
/// the reference has a `pin-source=`.
pub(crate) fn reference(
    uri: &Pkcs11Uri,
    callbacks: &dyn Callbacks,
) -> Result<Vec<Device>, Pkcs11Error> {
    let path = module::resolve(uri)?;
    let token = match uri.pin {
        Some(_) => Some(Token::open(uri, false, callbacks)?),
        None => None,
    };
    list(&path, token.as_ref())
}

fn list(path: &Path, logged_in: Option<&Token>) -> Result<Vec<Device>, Pkcs11Error> {
    let ctx = module::load(path)?;
    let slots = ctx
        .get_slots_with_token()
        .map_err(Pkcs11Error::call("listing the slots with a token"))?;
    let mut devices = Vec::new();
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        if !info.token_initialized() {
            continue;
        }
        let token = info.label().trim_end().to_string();
        let prefix = format!("pkcs11:token={}", uri_escape(&token));
        // RFC 7512 lets a query value hold '/' as it is: the path stays readable.
        let query = format!(
            "?module-path={}",
            uri_escape(&path.display().to_string()).replace("%2F", "/")
        );
        let (keys, note) = match logged_in.filter(|t| t.slot == slot) {
            Some(t) => (t.with_keeper(|s| keys(s, &prefix, &query))?, None),
            None => {
                let session = ctx
                    .open_ro_session(slot)
                    .map_err(Pkcs11Error::call(format!(
                        "opening a session on token \"{token}\""
                    )))?;
                let keys = keys(&session, &prefix, &query)?;
                let note = info.login_required().then(|| {
                    "private keys that need a login are not shown (the public key or certificate \
                     stands in for each): list with a reference to this token that has pin-source="
                        .to_string()
                });
                (keys, note)
            }
        };
        devices.push(Device {
            name: name(slot, &info),
            keys,
            note,
        });
    }
    Ok(devices)
}

fn name(slot: Slot, info: &TokenInfo) -> String {
    format!(
        "token \"{}\" ({} {}, serial {}, slot {})",
        info.label().trim_end(),
        info.manufacturer_id().trim_end(),
        info.model().trim_end(),
        info.serial_number().trim_end(),
        slot.id()
    )
}

/// One object's label, CKA_ID, key type and modulus size.
struct Object {
    label: String,
    id: Vec<u8>,
    algorithm: String,
    bits: Option<usize>,
}

fn read(s: &Session, handle: ObjectHandle) -> Object {
    let attrs = s
        .get_attributes(
            handle,
            &[
                AttributeType::Label,
                AttributeType::Id,
                AttributeType::KeyType,
                AttributeType::Modulus,
            ],
        )
        .unwrap_or_default();
    let mut object = Object {
        label: String::new(),
        id: Vec::new(),
        algorithm: "?".into(),
        bits: None,
    };
    for a in attrs {
        match a {
            Attribute::Label(l) => object.label = String::from_utf8_lossy(&l).into_owned(),
            Attribute::Id(i) => object.id = i,
            Attribute::KeyType(t) => {
                object.algorithm = t.to_string().trim_start_matches("CKK_").to_string();
            }
            Attribute::Modulus(m) if !m.is_empty() => {
                object.bits = Some(crate::public_key::unsigned_bits(&m));
            }
            _ => {}
        }
    }
    object
}

fn find(s: &Session, class: ObjectClass) -> Result<Vec<ObjectHandle>, Pkcs11Error> {
    s.find_objects(&[Attribute::Class(class)])
        .map_err(Pkcs11Error::call("listing the token's objects"))
}

/// The keys visible in `s`: each private key, then each public key or certificate whose
/// CKA_ID no private key shown has (its private half needs a login, or is elsewhere).
fn keys(s: &Session, prefix: &str, query: &str) -> Result<Vec<ListedKey>, Pkcs11Error> {
    let certificates: Vec<(Vec<u8>, Certificate)> = find(s, ObjectClass::CERTIFICATE)?
        .into_iter()
        .filter_map(|h| {
            let attrs = s
                .get_attributes(
                    h,
                    &[
                        AttributeType::Id,
                        AttributeType::CertificateType,
                        AttributeType::Value,
                    ],
                )
                .ok()?;
            let (mut id, mut x509, mut der) = (Vec::new(), false, None);
            for a in attrs {
                match a {
                    Attribute::Id(i) => id = i,
                    Attribute::CertificateType(t) => x509 = t == CertificateType::X_509,
                    Attribute::Value(v) => der = Some(v),
                    _ => {}
                }
            }
            let cert = Certificate::from_der(der.filter(|_| x509)?).ok()?;
            Some((id, cert))
        })
        .collect();
    let certificate_for = |id: &[u8]| {
        certificates
            .iter()
            .find(|(cid, _)| !id.is_empty() && cid == id)
            .map(|(_, c)| c.clone())
    };
    let mut objects: Vec<(Object, bool)> = Vec::new();
    for h in find(s, ObjectClass::PRIVATE_KEY)? {
        objects.push((read(s, h), true));
    }
    for h in find(s, ObjectClass::PUBLIC_KEY)? {
        let object = read(s, h);
        let known = !object.id.is_empty() && objects.iter().any(|(o, _)| o.id == object.id);
        if !known {
            objects.push((object, false));
        }
    }
    // A certificate whose key shows no object at all (a private key behind the login).
    for (id, cert) in &certificates {
        if !id.is_empty() && !objects.iter().any(|(o, _)| &o.id == id) {
            objects.push((
                Object {
                    label: String::new(),
                    id: id.clone(),
                    algorithm: if cert.rsa_bits().is_some() {
                        "RSA"
                    } else {
                        "?"
                    }
                    .into(),
                    bits: cert.rsa_bits(),
                },
                false,
            ));
        }
    }
    // Tokens return objects in no particular order: list them by CKA_ID, then label.
    objects.sort_by(|(a, _), (b, _)| (&a.id, &a.label).cmp(&(&b.id, &b.label)));
    Ok(objects
        .into_iter()
        .map(|(object, private_key)| {
            let mut reference = String::from(prefix);
            if !object.label.is_empty() {
                reference.push_str(&format!(";object={}", uri_escape(&object.label)));
            }
            if !object.id.is_empty() {
                reference.push_str(&format!(";id={}", id_text(&object.id)));
            }
            reference.push_str(query);
            let unusable = (object.algorithm != "RSA" && object.algorithm != "?")
                .then(|| "Entra ID accepts RSA keys only".to_string());
            ListedKey {
                reference,
                unusable,
                certificate: certificate_for(&object.id),
                label: Some(object.label).filter(|l| !l.is_empty()),
                algorithm: object.algorithm,
                bits: object.bits,
                private_key,
            }
        })
        .collect())
}
