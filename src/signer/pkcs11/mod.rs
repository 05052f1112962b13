//! PKCS#11 backend (HSMs, smartcards, YubiKey PIV through ykcs11): being written for issue 3.
