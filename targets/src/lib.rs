//! bfly-targets

pub mod reference;
