//! Contract suites of the identity ports.
