//! Personal data: field-level encryption (the `Cipher` port), key rings and masking.
