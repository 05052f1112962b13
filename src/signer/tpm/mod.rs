//! TPM 2.0 backend (persistent handles, TSS2 key files): being written for issue 4.
