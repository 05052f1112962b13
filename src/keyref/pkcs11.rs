//! `pkcs11:` (RFC 7512) and `piv:SLOT` key references parsed into a [`Pkcs11Uri`]: which
//! module, which token, which object, and where the PIN comes from. A `piv:` reference
//! becomes the same structure with ykcs11's CKA_ID for the slot and
//! [`piv_slot`](Pkcs11Uri::piv_slot) set. Parsing only: nothing here loads a module.

use super::{
    decode_text, escape, parse_source, percent_decode, query_pairs, set_once, shown_name,
    split_query, without_query, KeyRefError,
};
use crate::secret::SecretSource;
use std::fmt;

/// The object class a URI asks for (`type=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    /// `type=private`: a private key.
    Private,
    /// `type=public`: a public key.
    Public,
    /// `type=cert`: a certificate.
    Cert,
    /// `type=secret-key`: a symmetric key.
    SecretKey,
    /// `type=data`: a data object.
    Data,
}

impl ObjectType {
    /// The RFC 7512 spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Public => "public",
            Self::Cert => "cert",
            Self::SecretKey => "secret-key",
            Self::Data => "data",
        }
    }
}

/// A parsed `pkcs11:` or `piv:` reference: the selection attributes of RFC 7512 and its
/// query. Its `Display` prints the selecting attributes (never the query, which may hold
/// a PIN); `piv:` references print as `piv:SLOT`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pkcs11Uri {
    /// Token label (`token=`).
    pub token: Option<String>,
    /// Token manufacturer (`manufacturer=`).
    pub manufacturer: Option<String>,
    /// Token serial number (`serial=`).
    pub serial: Option<String>,
    /// Token model (`model=`).
    pub model: Option<String>,
    /// Slot id (`slot-id=`, decimal).
    pub slot_id: Option<u64>,
    /// Object label (`object=`).
    pub object: Option<String>,
    /// Object CKA_ID (`id=`, percent-encoded bytes).
    pub id: Option<Vec<u8>>,
    /// `id=` as written, for the smallstep-style hint (`id=02` meaning `id=%02`).
    pub id_text: Option<String>,
    /// `type=`.
    pub object_type: Option<ObjectType>,
    /// `module-path=`.
    pub module_path: Option<String>,
    /// `module-name=`.
    pub module_name: Option<String>,
    /// `pin-source=` or `pin-value=`.
    pub pin: Option<SecretSource>,
    /// Set for `piv:` references: the slot as written, lower case (9a, 9c, …).
    pub piv_slot: Option<String>,
}

impl std::str::FromStr for Pkcs11Uri {
    type Err = KeyRefError;

    /// Parse `pkcs11:…` or `piv:…`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("piv:") {
            Self::parse_piv(s)
        } else {
            Self::parse(s)
        }
    }
}

impl Pkcs11Uri {
    /// Parse an RFC 7512 `pkcs11:` URI.
    ///
    /// # Errors
    /// An unknown attribute, a repeated one, malformed percent-encoding, or a value of the
    /// wrong form; the error names the attribute.
    pub fn parse(uri: &str) -> Result<Self, KeyRefError> {
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| bad(uri, "a PKCS#11 URI starts with pkcs11:"))?;
        let (path, query) = split_query(rest);
        let mut out = Self::default();
        for pair in path.split(';').filter(|p| !p.is_empty()) {
            let (attr, raw) = pair.split_once('=').ok_or_else(|| {
                bad(
                    uri,
                    &format!("\"{}\" is not attribute=value", shown_name(pair)),
                )
            })?;
            let value = || decode_text(uri, attr, raw);
            match attr {
                "token" => set_once(uri, attr, &mut out.token, value()?)?,
                "manufacturer" => set_once(uri, attr, &mut out.manufacturer, value()?)?,
                "serial" => set_once(uri, attr, &mut out.serial, value()?)?,
                "model" => set_once(uri, attr, &mut out.model, value()?)?,
                "slot-id" => {
                    let id = value()?.parse::<u64>().map_err(|_| {
                        bad(uri, &format!("slot-id=\"{raw}\" is not a decimal number"))
                    })?;
                    set_once(uri, attr, &mut out.slot_id, id)?;
                }
                "object" => set_once(uri, attr, &mut out.object, value()?)?,
                "id" => {
                    let bytes = percent_decode(raw).ok_or_else(|| {
                        bad(uri, &format!("id=\"{raw}\" is not valid percent-encoding (write each byte as %XX, e.g. id=%01)"))
                    })?;
                    set_once(uri, attr, &mut out.id, bytes)?;
                    out.id_text = Some(raw.to_string());
                }
                "type" => {
                    let t = match value()?.as_str() {
                        "private" => ObjectType::Private,
                        "public" => ObjectType::Public,
                        "cert" => ObjectType::Cert,
                        "secret-key" => ObjectType::SecretKey,
                        "data" => ObjectType::Data,
                        other => {
                            return Err(bad(
                                uri,
                                &format!("type=\"{other}\" is not one of private, public, cert, secret-key, data"),
                            ))
                        }
                    };
                    set_once(uri, attr, &mut out.object_type, t)?;
                }
                // RFC 7512 attributes that select a library, not a token: accepted, unused.
                "library-manufacturer"
                | "library-description"
                | "library-version"
                | "slot-description"
                | "slot-manufacturer" => {}
                other => {
                    return Err(KeyRefError::UnknownAttribute {
                        reference: without_query(uri),
                        part: "path",
                        attr: shown_name(other),
                        known:
                            "known: token, manufacturer, serial, model, slot-id, object, id, type",
                    })
                }
            }
        }
        out.parse_query(uri, query)?;
        Ok(out)
    }

    /// Parse a `piv:SLOT[?module-path=…&pin-source=…]` reference: the YubiKey PIV slot
    /// becomes ykcs11's CKA_ID (9a→1, 9c→2, 9d→3, 9e→4, 82…95→5…24).
    ///
    /// # Errors
    /// An unknown slot or query attribute.
    pub fn parse_piv(uri: &str) -> Result<Self, KeyRefError> {
        let rest = uri
            .strip_prefix("piv:")
            .ok_or_else(|| bad(uri, "a PIV reference starts with piv:"))?;
        let (slot, query) = split_query(rest);
        let slot = slot.to_ascii_lowercase();
        let id = piv_slot_id(&slot).ok_or_else(|| {
            bad(
                uri,
                &format!("\"{slot}\" is not a PIV slot: use 9a (authentication), 9c (digital signature), 9d (key management), 9e (card authentication) or a retired slot 82…95"),
            )
        })?;
        let mut out = Self {
            id: Some(vec![id]),
            id_text: Some(format!("%{id:02x}")),
            object_type: Some(ObjectType::Private),
            piv_slot: Some(slot),
            ..Self::default()
        };
        out.parse_query(uri, query)?;
        Ok(out)
    }

    fn parse_query(&mut self, uri: &str, query: Option<&str>) -> Result<(), KeyRefError> {
        for (attr, raw) in query_pairs(query) {
            let value = decode_text(uri, attr, raw)?;
            match attr {
                "module-path" => set_once(uri, attr, &mut self.module_path, value)?,
                "module-name" => set_once(uri, attr, &mut self.module_name, value)?,
                "pin-source" => {
                    let source = parse_source(uri, "pin-source", &value)?;
                    set_once(uri, "the PIN", &mut self.pin, source)?;
                }
                "pin-value" => set_once(uri, "the PIN", &mut self.pin, SecretSource::Value(value))?,
                // Accepted by RFC 7512; certassert has nothing to do with them.
                "module-version" => {}
                // Token attributes in the query are how piv: references narrow the card.
                "token" | "serial" if self.piv_slot.is_some() => {
                    let field = if attr == "token" {
                        &mut self.token
                    } else {
                        &mut self.serial
                    };
                    set_once(uri, attr, field, value)?;
                }
                other => {
                    return Err(KeyRefError::UnknownAttribute {
                        reference: without_query(uri),
                        part: "query",
                        attr: shown_name(other),
                        known: "known: module-path, module-name, pin-source, pin-value",
                    })
                }
            }
        }
        Ok(())
    }

    /// Whether any token-selecting attribute is present.
    pub fn selects_token(&self) -> bool {
        self.token.is_some()
            || self.manufacturer.is_some()
            || self.serial.is_some()
            || self.model.is_some()
            || self.slot_id.is_some()
    }

    /// The smallstep-style reading of `id=` when it was written as bare hex (`id=02`):
    /// the bytes the user probably meant, for a hint.
    pub fn hex_id_hint(&self) -> Option<String> {
        let text = self.id_text.as_deref()?;
        if text.contains('%') || text.len() % 2 != 0 || text.is_empty() {
            return None;
        }
        crate::encoding::hex_decode(text)?;
        let rfc: String = text
            .as_bytes()
            .chunks(2)
            .map(|c| format!("%{}", String::from_utf8_lossy(c)))
            .collect();
        Some(rfc)
    }
}

/// The selecting attributes in RFC 7512 order (`pkcs11:token=T;object=L;id=%01`), or
/// `piv:SLOT`; never the query.
impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(slot) = &self.piv_slot {
            return write!(f, "piv:{slot}");
        }
        f.write_str("pkcs11:")?;
        let mut sep = "";
        let mut attr = |f: &mut fmt::Formatter<'_>, name: &str, value: &dyn fmt::Display| {
            let r = write!(f, "{sep}{name}={value}");
            sep = ";";
            r
        };
        for (name, value) in [
            ("token", &self.token),
            ("manufacturer", &self.manufacturer),
            ("serial", &self.serial),
            ("model", &self.model),
        ] {
            if let Some(v) = value {
                attr(f, name, &escape(v))?;
            }
        }
        if let Some(id) = self.slot_id {
            attr(f, "slot-id", &id)?;
        }
        if let Some(v) = &self.object {
            attr(f, "object", &escape(v))?;
        }
        match (&self.id_text, &self.id) {
            (Some(text), _) => attr(f, "id", text)?,
            (None, Some(id)) => attr(f, "id", &id_text(id))?,
            (None, None) => {}
        }
        if let Some(t) = self.object_type {
            attr(f, "type", &t.as_str())?;
        }
        Ok(())
    }
}

/// `%01%ff` as RFC 7512 writes bytes.
pub fn id_text(id: &[u8]) -> String {
    id.iter().map(|b| format!("%{b:02x}")).collect()
}

/// ykcs11's CKA_ID for a PIV slot.
pub fn piv_slot_id(slot: &str) -> Option<u8> {
    match slot {
        "9a" => Some(1),
        "9c" => Some(2),
        "9d" => Some(3),
        "9e" => Some(4),
        _ => {
            let n = u8::from_str_radix(slot, 16).ok()?;
            (0x82..=0x95).contains(&n).then(|| n - 0x82 + 5)
        }
    }
}

/// ykcs11's labels for the private key and certificate in a PIV slot.
pub fn piv_labels(slot: &str) -> (String, String) {
    let name = match slot {
        "9a" => "PIV Authentication".to_string(),
        "9c" => "Digital Signature".to_string(),
        "9d" => "Key Management".to_string(),
        "9e" => "Card Authentication".to_string(),
        other => {
            let n = u8::from_str_radix(other, 16).unwrap_or(0x82);
            format!("Retired Key {}", n.saturating_sub(0x81))
        }
    };
    (
        format!("Private key for {name}"),
        format!("X.509 Certificate for {name}"),
    )
}

fn bad(uri: &str, detail: &str) -> KeyRefError {
    KeyRefError::BadValue {
        reference: without_query(uri),
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7512_path_and_query() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=My%20HSM;manufacturer=SoftHSM%20project;serial=abc;model=SoftHSM%20v2;slot-id=3;object=app;id=%01%ff;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("My HSM"));
        assert_eq!(u.manufacturer.as_deref(), Some("SoftHSM project"));
        assert_eq!(u.serial.as_deref(), Some("abc"));
        assert_eq!(u.model.as_deref(), Some("SoftHSM v2"));
        assert_eq!(u.slot_id, Some(3));
        assert_eq!(u.object.as_deref(), Some("app"));
        assert_eq!(u.id.as_deref(), Some(&[1u8, 0xff][..]));
        assert_eq!(u.object_type, Some(ObjectType::Private));
        assert_eq!(
            u.module_path.as_deref(),
            Some("/usr/lib/softhsm/libsofthsm2.so")
        );
        assert_eq!(u.pin, Some(SecretSource::File("/run/pin".into())));
        assert!(u.selects_token());
        assert_eq!(u.hex_id_hint(), None);
        assert_eq!(
            u.to_string(),
            "pkcs11:token=My%20HSM;manufacturer=SoftHSM%20project;serial=abc;model=SoftHSM%20v2;slot-id=3;object=app;id=%01%ff;type=private"
        );
        let u = Pkcs11Uri::parse("pkcs11:object=a?pin-value=4242").unwrap();
        assert_eq!(u.to_string(), "pkcs11:object=a");
        assert!(!format!("{u:?}").contains("4242"));
    }

    #[test]
    fn smallstep_hex_id_gets_a_hint() {
        let u = Pkcs11Uri::parse("pkcs11:id=02").unwrap();
        assert_eq!(u.id.as_deref(), Some(&b"02"[..]));
        assert_eq!(u.hex_id_hint().as_deref(), Some("%02"));
        let u = Pkcs11Uri::parse("pkcs11:id=a1b2").unwrap();
        assert_eq!(u.hex_id_hint().as_deref(), Some("%a1%b2"));
        assert_eq!(
            Pkcs11Uri::parse("pkcs11:id=app").unwrap().hex_id_hint(),
            None
        );
    }

    #[test]
    fn errors_name_the_attribute() {
        let e = |s: &str| Pkcs11Uri::parse(s).unwrap_err().to_string();
        assert!(e("pkcs11:tokn=x").contains("unknown path attribute \"tokn\""));
        assert!(e("pkcs11:object=a;object=b").contains("object is given twice"));
        assert!(e("pkcs11:id=%zz").contains("percent-encoding"));
        assert!(e("pkcs11:slot-id=x").contains("slot-id"));
        assert!(e("pkcs11:object=a?pin-source=hunter2").contains("pin-source"));
        assert!(e("pkcs11:object=a?pin-source=env:A&pin-value=1").contains("twice"));
        assert!(e("pkcs11:object=a?pin=1").contains("unknown query attribute \"pin\""));
        // A PIN never shows in an error.
        assert!(!e("pkcs11:bogus=1?pin-value=424242").contains("424242"));
    }

    #[test]
    fn piv_slots_map_to_ykcs11_ids() {
        for (slot, id) in [
            ("9a", 1),
            ("9c", 2),
            ("9d", 3),
            ("9e", 4),
            ("82", 5),
            ("95", 24),
        ] {
            let u = Pkcs11Uri::parse_piv(&format!("piv:{slot}")).unwrap();
            assert_eq!(u.id, Some(vec![id]), "{slot}");
        }
        let u = Pkcs11Uri::parse_piv("piv:9C?module-path=/x.so&pin-source=env:PIN").unwrap();
        assert_eq!(u.id, Some(vec![2]));
        assert_eq!(u.piv_slot.as_deref(), Some("9c"));
        assert_eq!(u.pin, Some(SecretSource::Env("PIN".into())));
        assert!(Pkcs11Uri::parse_piv("piv:9b")
            .unwrap_err()
            .to_string()
            .contains("9c (digital signature)"));
        assert!(Pkcs11Uri::parse_piv("piv:96").is_err());
        assert_eq!(piv_labels("9c").0, "Private key for Digital Signature");
        assert_eq!(
            piv_labels("9c").1,
            "X.509 Certificate for Digital Signature"
        );
        assert_eq!(piv_labels("82").0, "Private key for Retired Key 1");
        assert_eq!(piv_labels("95").1, "X.509 Certificate for Retired Key 20");
    }
}
