//! RFC 4514 distinguished names: parsing the subject a user types (`CN=my-app,O=Contoso`
//! or OpenSSL's `/O=Contoso/CN=my-app`) into an X.509 `Name`, and formatting a `Name` back
//! as RFC 4514 text, most specific RDN first.

use picky_asn1::wrapper::PrintableStringAsn1;
use picky_asn1_x509::{
    AttributeTypeAndValue, AttributeTypeAndValueParameters, DirectoryString, Name,
};

/// What is wrong with a subject string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectError {
    /// Nothing but separators and spaces.
    #[error("the subject is empty; give at least a common name such as CN=my-app")]
    Empty,
    /// A part without `=`.
    #[error("\"{0}\" is not KEY=VALUE (e.g. CN=my-app)")]
    NotKeyValue(String),
    /// `KEY=` with nothing after it.
    #[error("\"{0}\" has an empty value")]
    EmptyValue(String),
    /// An attribute name certassert does not encode.
    #[error(
        "unknown attribute \"{0}\"; use CN, O, OU, L, ST, C, STREET, SN, GN, serialNumber or E"
    )]
    UnknownAttribute(String),
    /// A country that is not two letters.
    #[error("country \"{0}\" must be a two-letter code such as US")]
    Country(String),
    /// An e-mail address with non-ASCII characters (IA5String).
    #[error("e-mail address \"{0}\" must be ASCII")]
    Email(String),
}

/// RFC 4514 string of a Name: RDNs most specific first, `\`, `,` and `+` escaped.
pub fn format_name(name: &Name) -> String {
    let mut parts = Vec::new();
    for rdn in name.0 .0.iter().rev() {
        for atv in &rdn.0 {
            use AttributeTypeAndValueParameters as P;
            let (key, value) = match &atv.value {
                P::CommonName(v) => ("CN", v.to_string()),
                P::Surname(v) => ("SN", v.to_string()),
                P::SerialNumber(v) => ("serialNumber", v.to_string()),
                P::CountryName(v) => ("C", v.to_string()),
                P::LocalityName(v) => ("L", v.to_string()),
                P::StateOrProvinceName(v) => ("ST", v.to_string()),
                P::StreetName(v) => ("STREET", v.to_string()),
                P::OrganizationName(v) => ("O", v.to_string()),
                P::OrganizationalUnitName(v) => ("OU", v.to_string()),
                P::EmailAddress(v) => ("E", String::from_utf8_lossy(v.as_bytes()).into_owned()),
                P::GivenName(v) => ("GN", v.to_string()),
                P::Phone(v) => ("telephoneNumber", v.to_string()),
                P::Custom(_) => {
                    let oid: String = atv.ty.0.clone().into();
                    parts.push(format!("{oid}=#…"));
                    continue;
                }
            };
            let escaped = value
                .replace('\\', "\\\\")
                .replace(',', "\\,")
                .replace('+', "\\+");
            parts.push(format!("{key}={escaped}"));
        }
    }
    parts.join(",")
}

/// Parse a subject: RFC 4514 (`CN=my-app,O=Contoso`, most specific first, `\,` escapes)
/// or OpenSSL's slash form (`/O=Contoso/CN=my-app`, in encoding order).
///
/// # Errors
/// [`SubjectError`]: empty subject, a part without `=`, an empty value, an unknown
/// attribute, a country that is not two letters, or a non-ASCII e-mail address.
pub fn parse_name(subject: &str) -> Result<Name, SubjectError> {
    let trimmed = subject.trim();
    let mut parts: Vec<String> = if let Some(rest) = trimmed.strip_prefix('/') {
        rest.split('/').map(str::to_string).collect()
    } else {
        let mut parts = split_unescaped(trimmed);
        parts.reverse(); // RFC 4514 lists the last RDN first
        parts
    };
    parts.retain(|p| !p.trim().is_empty());
    if parts.is_empty() {
        return Err(SubjectError::Empty);
    }
    let mut name = Name::new();
    for part in parts {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| SubjectError::NotKeyValue(part.clone()))?;
        let value = value.trim().to_string();
        if value.is_empty() {
            return Err(SubjectError::EmptyValue(key.trim().to_string()));
        }
        use picky_asn1_x509::NameAttr as A;
        let attr = match key.trim().to_ascii_uppercase().as_str() {
            "CN" => A::CommonName,
            "O" => A::OrganizationName,
            "OU" => A::OrganizationalUnitName,
            "L" => A::LocalityName,
            "ST" | "S" => A::StateOrProvinceName,
            "STREET" => A::StreetName,
            "SN" | "SURNAME" => A::Surname,
            "GN" | "G" | "GIVENNAME" => A::GivenName,
            "SERIALNUMBER" => A::SerialNumber,
            "E" | "EMAIL" | "EMAILADDRESS" => {
                name.add_email(
                    picky_asn1::restricted_string::IA5String::from_string(value.clone())
                        .map_err(|_| SubjectError::Email(value.clone()))?,
                );
                continue;
            }
            "C" => {
                let printable =
                    picky_asn1::restricted_string::PrintableString::from_string(value.clone())
                        .ok()
                        .filter(|_| {
                            value.len() == 2 && value.chars().all(|c| c.is_ascii_alphabetic())
                        })
                        .ok_or_else(|| SubjectError::Country(value.clone()))?;
                let atv = AttributeTypeAndValue::new_country_name(
                    DirectoryString::PrintableString(PrintableStringAsn1::from(printable)),
                );
                name.0 .0.push(picky_asn1::wrapper::Asn1SetOf(vec![atv]));
                continue;
            }
            other => return Err(SubjectError::UnknownAttribute(other.to_string())),
        };
        name.add_attr(attr, value);
    }
    Ok(name)
}

fn split_unescaped(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    parts.last_mut().expect("non-empty").push(next);
                }
            }
            ',' | ';' => parts.push(String::new()),
            c => parts.last_mut().expect("non-empty").push(c),
        }
    }
    parts.into_iter().map(|p| p.trim().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_in_both_notations_encode_the_same() {
        let a = parse_name("CN=my-app, O=Contoso\\, Ltd, C=US").unwrap();
        let b = parse_name("/C=US/O=Contoso, Ltd/CN=my-app").unwrap();
        assert_eq!(a, b);
        assert_eq!(format_name(&a), "CN=my-app,O=Contoso\\, Ltd,C=US");
    }

    #[test]
    fn subject_errors_say_what_is_wrong() {
        for (bad, expected) in [
            ("", SubjectError::Empty),
            (" , ", SubjectError::Empty),
            ("my-app", SubjectError::NotKeyValue("my-app".into())),
            ("CN=", SubjectError::EmptyValue("CN".into())),
            ("XX=1", SubjectError::UnknownAttribute("XX".into())),
            ("CN=a,C=USA", SubjectError::Country("USA".into())),
            ("E=é@x", SubjectError::Email("é@x".into())),
        ] {
            assert_eq!(parse_name(bad).unwrap_err(), expected, "{bad}");
        }
        for (bad, needle) in [
            ("", "empty"),
            ("my-app", "KEY=VALUE"),
            ("CN=", "empty value"),
            ("XX=1", "unknown attribute \"XX\""),
            ("CN=a,C=USA", "two-letter"),
        ] {
            let e = parse_name(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
            assert!(!e.contains("--"), "no CLI flag in a library message: {e}");
        }
    }
}
