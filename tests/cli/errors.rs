//! Inputs that must fail with one clear `error:` line, for runs that need a key or a
//! certificate made at test time. The whole text of each is `tests/cmd/generated/*.stderr`;
//! the cases that need no key material are trycmd cases in `tests/cmd/args/`
//! (`assertion-key-missing`, `assertion-key-garbage-*`, `assertion-lifetime-0-before-key`,
//! `assertion-no-key`) and `tests/cmd/{pkcs11,no-pkcs11}/` (the module path).

use super::*;

#[test]
fn bad_inputs_fail_clearly() {
    let (_d, p) = setup();
    let base = ["assertion", "--tenant", TENANT, "--client-id", CLIENT];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        base.iter().copied().chain(extra.iter().copied()).collect()
    };
    openssl(
        &p,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec.pem",
        ],
    );
    openssl(
        &p,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
            "small.pem",
        ],
    );
    ok(&p, &["key", "generate", "--key", "other.pem"]);
    let r = redactions(&p, &[("", "c.pem")]);
    let cases: &[(&[&str], &str)] = &[
        (
            &with(&["--key", "ec.pem", "--cert", "c.pem"]),
            "assertion-key-ec",
        ),
        (
            &with(&["--key", "small.pem", "--cert", "c.pem"]),
            "assertion-key-rsa-1024",
        ),
        (
            &with(&["--key", "other.pem", "--cert", "c.pem"]),
            "assertion-key-other",
        ),
        (
            &with(&["--key", "c.pem", "--cert", "c.pem"]),
            "assertion-key-is-cert",
        ),
        (
            &with(&["--key", "k.pem", "--cert", "k.pem"]),
            "assertion-cert-is-key",
        ),
        (
            &with(&["--key", "k.pem", "--cert", "missing.pem"]),
            "assertion-cert-missing",
        ),
        (&with(&["--key", "k.pem"]), "assertion-no-cert"),
        (
            &with(&["--key", "k.pem", "--cert", "c.pem", "--lifetime", "7200"]),
            "assertion-lifetime-7200",
        ),
        (
            &with(&[
                "--key",
                "k.pem",
                "--cert",
                "c.pem",
                "--authority-host",
                "http://login.example.com",
            ]),
            "assertion-authority-host-http",
        ),
        (
            &[
                "assertion",
                "--key",
                "k.pem",
                "--cert",
                "c.pem",
                "--client-id",
                CLIENT,
            ],
            "assertion-no-tenant",
        ),
        (
            &[
                "assertion",
                "--key",
                "k.pem",
                "--cert",
                "c.pem",
                "--tenant",
                "common",
                "--client-id",
                CLIENT,
            ],
            "assertion-tenant-common",
        ),
        (
            &[
                "assertion",
                "--key",
                "k.pem",
                "--cert",
                "c.pem",
                "--tenant",
                TENANT,
            ],
            "assertion-no-client-id",
        ),
        (
            &["cert", "create", "--key", "k.pem", "--subject", "my-app"],
            "cert-create-subject-not-key-value",
        ),
        (
            &[
                "cert",
                "create",
                "--key",
                "k.pem",
                "--subject",
                "CN=x",
                "--store",
            ],
            "cert-create-store-key-file",
        ),
    ];
    for (args, name) in cases {
        fails(&p, args, name, &r);
    }
}

#[test]
fn expired_certificate_is_refused_before_signing() {
    let (_d, p) = setup();
    let pkcs8 = std::fs::read_to_string(p.join("k.pem")).unwrap();
    let signer = certassert::signer::SoftwareSigner::from_file(&p.join("k.pem"), None).unwrap();
    let old = certassert::encoding::unix_now() - 10 * 86_400;
    let cert = certassert::cert::create_self_signed(
        &signer,
        certassert::Algorithm::Rs256,
        "CN=old",
        1,
        old,
    )
    .unwrap();
    std::fs::write(p.join("old.pem"), cert.to_pem()).unwrap();
    assert!(!pkcs8.is_empty());
    fails(
        &p,
        &[
            "assertion",
            "--key",
            "k.pem",
            "--cert",
            "old.pem",
            "--tenant",
            TENANT,
            "--client-id",
            CLIENT,
        ],
        "assertion-cert-expired",
        &redactions(&p, &[("", "old.pem")]),
    );
    // `cert show` still shows it, and says so.
    let show = ok(&p, &["cert", "show", "--cert", "old.pem"]);
    snapshot(
        &show,
        "cert-show-expired.stdout",
        &redactions(&p, &[("", "old.pem")]),
    );
}
