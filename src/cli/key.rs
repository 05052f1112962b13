//! `certassert key generate`.

use super::{write_new, KeyArg, KeyError, Result};
use certassert::keyref::KeyRef;
use clap::{Args, Subcommand};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Generate an RSA key pair where --key says (a key file is written 0600 and never overwritten)
    #[command(
        after_help = "Examples:\n  certassert key generate --key app.key.pem\n  certassert key generate --key app.key.pem --bits 3072"
    )]
    Generate(GenerateArgs),
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    key: KeyArg,
    /// RSA modulus size; Entra ID requires at least 2048
    #[arg(long, default_value_t = 2048, value_parser = parse_bits)]
    bits: usize,
    /// Object label for keys made in a token (pkcs11:, tpm:); not used for key files
    #[arg(long)]
    label: Option<String>,
}

fn parse_bits(s: &str) -> std::result::Result<usize, String> {
    match s {
        "2048" | "3072" | "4096" => Ok(s.parse().expect("a listed number")),
        _ => Err(format!(
            "{s}: choose 2048, 3072 or 4096 (Entra ID requires at least 2048)"
        )),
    }
}

pub fn run(cmd: KeyCommand) -> Result<ExitCode> {
    let KeyCommand::Generate(args) = cmd;
    let profile = args.key.profile()?;
    let keyref = args.key.keyref(profile.as_ref())?;
    let path = match &keyref {
        KeyRef::File {
            path,
            password: None,
        } => path.clone(),
        KeyRef::File {
            password: Some(_), ..
        } => {
            return Err(
                "key generate writes an unencrypted PKCS#8 file protected by its mode (0600); \
                        drop the ?password-… part, or keep the key in hardware (pkcs11:, tpm:)"
                    .into(),
            )
        }
        other => {
            let signer = super::generate_key(other, args.bits, args.label.as_deref())?;
            let spki = signer.public_key_der();
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki);
            eprintln!(
                "made a {}-bit RSA key in {} (public key SHA-256 {})\nnext: certassert cert create {} --subject CN=my-app --out app.cert.pem",
                args.bits,
                other.backend(),
                certassert::encoding::hex(digest.as_ref(), false),
                match (&args.key.key, &profile) {
                    (Some(key), _) => format!("--key '{key}'"),
                    (None, Some(p)) if super::env("CERTASSERT_KEY").is_none() => format!("--profile '{}'", p.name),
                    _ => "--key \"$CERTASSERT_KEY\"".to_string(),
                },
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    if args.label.is_some() {
        super::warn("--label names objects in a token; a key file has no label, so it is ignored");
    }
    let pkcs8 = certassert::signer::generate_software_key(args.bits).map_err(KeyError::from)?;
    let pem = zeroize::Zeroizing::new(certassert::public_key::pem::encode("PRIVATE KEY", &pkcs8));
    write_new(&path, pem.as_bytes(), 0o600, None)?;
    eprintln!(
        "wrote a {}-bit RSA key to {} (PKCS#8, mode 0600)\nnext: certassert cert create --key {} --subject CN=my-app --out app.cert.pem",
        args.bits,
        path.display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
