//! The token file for WorkloadIdentityCredential: `assertion --out FILE [--every SECS]`.
