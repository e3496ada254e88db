//! Competitions and registrations in memory.
