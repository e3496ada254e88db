//! Competitions: registration with a seat capacity that is never oversold.
