//! bfly-runtime
