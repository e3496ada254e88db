//! Events: attendance scans and certificates, each issued exactly once.
