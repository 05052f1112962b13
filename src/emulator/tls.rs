//! The emulator's `--tls`: a throwaway certificate authority and a loopback server
//! certificate, issued through the same path as every certificate certassert makes
//! (`cert::issue`), so the emulator's HTTPS needs no other X.509 code.

use crate::cert::issue::{self, Issue};
use crate::cert::{self, parse_subject, Certificate};
use crate::signer::{Algorithm, Signer};
use picky_asn1_x509::{Extension, KeyIdentifier, KeyUsage};

/// A throwaway TLS authority for a loopback server (the emulator's `--tls`): a CA
/// certificate self-signed by `ca_signer` (CA:true, keyCertSign) and a server certificate
/// for `server_signer`'s key, issued by that CA, valid for `localhost`, `127.0.0.1` and
/// `::1` (serverAuth). Both are valid from one minute before `now` for `days` days; the
/// clients trust the CA, never the server certificate itself. Returns `(ca, server)`.
///
/// # Errors
/// [`cert::Error::Days`] (outside 1–36500), or a backend failing to sign
/// ([`cert::Error::Sign`]).
pub fn create_loopback_tls(
    ca_signer: &dyn Signer,
    server_signer: &dyn Signer,
    days: u32,
    now: i64,
) -> Result<(Certificate, Certificate), cert::Error> {
    use picky_asn1::restricted_string::IA5String;
    use picky_asn1::wrapper::{Asn1SequenceOf, Ia5StringAsn1, OctetStringAsn1};
    use picky_asn1_x509::name::GeneralName;
    issue::check_days(days)?;
    let ca_name = parse_subject("CN=certassert emulator CA")?;
    let ca_ski = issue::key_identifier(ca_signer.public_key_der());
    let mut ca_usage = KeyUsage::new(7);
    ca_usage.set_key_cert_sign(true);
    ca_usage.set_crl_sign(true);
    let ca = issue::issue(&Issue {
        signer: ca_signer,
        alg: Algorithm::Rs256,
        issuer: ca_name.clone(),
        subject: ca_name.clone(),
        spki: issue::signer_spki(ca_signer)?,
        extensions: vec![
            Extension::new_basic_constraints(true, 0),
            Extension::new_key_usage(ca_usage),
            Extension::new_subject_key_identifier(ca_ski.clone()),
        ],
        days,
        now,
    })?;
    let mut usage = KeyUsage::new(3);
    usage.set_digital_signature(true);
    usage.set_key_encipherment(true);
    let dns = IA5String::from_string("localhost".into()).map_err(|e| cert::Error::Encode {
        what: "subjectAltName",
        detail: e.to_string(),
    })?;
    let mut ipv6_loopback = vec![0u8; 16];
    ipv6_loopback[15] = 1;
    let names = Asn1SequenceOf(vec![
        GeneralName::DnsName(Ia5StringAsn1::from(dns)),
        GeneralName::IpAddress(OctetStringAsn1::from(vec![127, 0, 0, 1])),
        GeneralName::IpAddress(OctetStringAsn1::from(ipv6_loopback)),
    ]);
    let server = issue::issue(&Issue {
        signer: ca_signer,
        alg: Algorithm::Rs256,
        issuer: ca_name,
        subject: parse_subject("CN=localhost")?,
        spki: issue::signer_spki(server_signer)?,
        extensions: vec![
            Extension::new_basic_constraints(false, None),
            Extension::new_key_usage(usage),
            Extension::new_extended_key_usage(vec![picky_asn1_x509::oids::kp_server_auth()]),
            Extension::new_subject_alt_name(names).into_non_critical(),
            Extension::new_subject_key_identifier(issue::key_identifier(
                server_signer.public_key_der(),
            )),
            Extension::new_authority_key_identifier(KeyIdentifier::from(ca_ski), None, None),
        ],
        days,
        now,
    })?;
    Ok((ca, server))
}
