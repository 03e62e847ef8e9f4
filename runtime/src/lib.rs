//! bfly-runtime: sessions that run compiled graphs. Depends on `ir` and `targets`, never on the
//! compiler, so a phone app can embed the runtime alone.

pub mod adapter;
pub mod artifact;
pub mod checkpoint;
pub mod data;
pub mod engine;
pub mod fsutil;
pub mod plot;
pub mod progress;
pub mod rng;
pub mod sample;
pub mod session;
pub mod tokenizer;
pub mod train;

pub use engine::{BackendChoice, Engine, LoadReport};
pub use session::InferenceSession;
pub use tokenizer::ByteTokenizer;
pub use train::Trainer;
