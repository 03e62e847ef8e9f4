//! bfly-compiler
