//! kubectl: `token --format exec-credential`.
