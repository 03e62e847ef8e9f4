//! bfly-grammar
