//! The tamper-evident audit log: entries, the hash chain and the `AuditLog` port.
