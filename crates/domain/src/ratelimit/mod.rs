//! Rate limiting: policies, limit classes, the GCRA rule and the `RateLimiter` port.
//!
//! A [`RatePolicy`] such as `10/minute` allows `count` requests at once (burst = count) and then
//! one more every `period / count`. The rule is the generic cell rate algorithm ([`gcra`], as in
//! redis-cell and the `governor` crate): per key only one number is stored, the *theoretical
//! arrival time* (TAT), in integer microseconds since the Unix epoch. Adapters keep that number
//! per key and apply [`gcra::decide`] atomically; the Redis adapter runs the same maths in Lua.

mod class;
mod decision;
pub mod gcra;
mod limiter;
mod policy;

pub use class::LimitClass;
pub use decision::RateDecision;
pub use limiter::RateLimiter;
pub use policy::{MAX_COUNT, Period, PolicyParseError, PolicySetting, RatePolicy};
