//! Contract suite of the `AuditLog` port.
