//! Events, participants, attendances and certificates in memory.
