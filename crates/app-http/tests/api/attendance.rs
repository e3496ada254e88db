//! Events over HTTP: exactly-once scans and certificates.
